//! A flow's verdict at the end of a run: the proxy's routing, the whole path around it.
use std::io::Write;

use tracer_records::Inexact;

use crate::correlate::flows::FlowSummary;

use super::{phrases::*, Text};

impl Text {
    /// The tiers before and after the proxy: frontend in, the load balancer's choice, the
    /// target, the frontend the replies left by.
    fn whole_path(&mut self, s: &FlowSummary) {
        let p = &s.path;
        if let Some((fe, ifname)) = &p.frontend_in {
            say!(self.out, "  entered: frontend {fe} on {ifname}");
        }
        for (i, c) in p.lb.iter().enumerate() {
            let rule = c
                .rule
                .as_ref()
                .map_or("no fwmark rule found".to_string(), |r| {
                    format!("rule {} `{}`", r.priority, r.selector())
                });
            let by = if c.marked_after_ingress {
                "set by the load balancer's NFQUEUE verdict"
            } else {
                "already on the packet at the ingress hook"
            };
            let queued = c.queued_ns.map_or(String::new(), |q| {
                format!(", {} in the queue", ms(q).trim())
            });
            let head = if i == 0 {
                "load balancer".to_string()
            } else {
                format!(
                    "MOVED at +{}",
                    ms(c.ts_ns.saturating_sub(p.lb[0].ts_ns)).trim()
                )
            };
            say!(
                self.out,
                "  {head}: {} chose target {} dev {} (mark {:#x} {by}; {rule} -> table {}{queued})",
                c.netns,
                c.target_ip,
                c.dev,
                c.mark,
                c.table
            );
        }
        if let Some((tg, ifname)) = &p.target {
            let via = p
                .proxy_to_target
                .as_ref()
                .map_or(String::new(), |(px, port)| {
                    format!(", from {px} port {port}")
                });
            say!(
                self.out,
                "  target: {tg} on {ifname}, {} requests{via}",
                p.target_packets.max(p.target_records)
            );
        }
        if let Some((fe, ifname, nexthop)) = &p.frontend_out {
            let toward = nexthop.map_or(String::new(), |n| format!(" toward {n}"));
            let other = if p.asymmetric() {
                " (NOT the frontend the requests entered by: the gateway and the proxy chose differently)"
            } else {
                ""
            };
            say!(
                self.out,
                "  replies: left by frontend {fe} on {ifname}{toward}{other}"
            );
        }
    }

    pub(super) fn flow_summary(&mut self, s: &FlowSummary, netns: &str) {
        let proxy = if netns.is_empty() {
            "no proxy saw it".to_string()
        } else {
            format!("proxy {netns}")
        };
        say!(
            self.out,
            "flow #{} {} ({proxy})",
            s.flow_id,
            flow_title(&s.flow)
        );
        self.whole_path(s);
        if let Some(line) = not_exact_line(&s.inexact) {
            say!(self.out, "{line}");
        }
        match &s.ingress_port {
            Some(port) => say!(
                self.out,
                "  ingress: {} packets entered the proxy on {port}",
                s.ingress_packets
            ),
            None => say!(
                self.out,
                "  ingress: no packets toward the VIP seen entering the proxy"
            ),
        }
        if let Some(rule) = &s.rule {
            say!(
                self.out,
                "  routing: rule {} `{}` -> table {}, next-hops {}",
                rule.priority,
                rule.selector(),
                s.table.map_or("?".into(), |t| t.to_string()),
                candidates_text(&s.candidates)
            );
        } else {
            say!(
                self.out,
                "  routing: no `from {}` rule in the proxy",
                s.flow.vip
            );
        }
        let verdict = match (s.nexthop(), s.nexthops.len()) {
            (_, 0) => "no routed egress packet seen".to_string(),
            (Some(n), _) => {
                let where_ = match s.nexthop_in_route {
                    Some(true) => "one of the VIP table's next-hops".to_string(),
                    Some(false) => "NOT one of the VIP table's next-hops".to_string(),
                    None => "the VIP table's next-hops are unknown".to_string(),
                };
                format!(
                    "all {} egress packets went to next-hop {} {} ({where_})",
                    n.packets,
                    opt_ip(n.ip),
                    via(n)
                )
            }
            (None, k) => {
                let parts: Vec<String> = s
                    .nexthops
                    .iter()
                    .map(|n| {
                        format!(
                            "{} {} x{} from +{}",
                            opt_ip(n.ip),
                            via(n),
                            n.packets,
                            ms(n.first_rel_ns).trim()
                        )
                    })
                    .collect();
                format!(
                    "INCONSISTENT: egress moved over {k} next-hops: {}",
                    parts.join("; ")
                )
            }
        };
        let missing = (s.ingress_packets + s.egress_packets)
            .saturating_sub(s.ingress_records + s.egress_records);
        if s.counted && missing > 0 {
            say!(
                self.out,
                "  counts: exact, from the kernel; {} of {} ingress and {} of {} egress packets have a record ({missing} not shown: --records budget or records lost)",
                s.ingress_records,
                s.ingress_packets,
                s.egress_records,
                s.egress_packets
            );
        }
        let p = &s.predictions;
        if p.agree + p.disagree + p.unknown > 0 {
            say!(self.out,
                "  hash: predicted next-hop = actual for {} of {} routed packets, differed for {}, unknown for {}{}",
                p.agree,
                p.agree + p.disagree + p.unknown,
                p.disagree,
                p.unknown,
                p.source.as_ref().map_or(String::new(), |src| format!(" (hash: {src})")),
            );
        }
        if let Some((ifname, reason, location)) = &s.last_drop {
            say!(
                self.out,
                "  DROPPED: {} packets, the latest on {ifname}: {reason} at {location}",
                s.drops
            );
        }
        if let Some(f) = &s.fragments {
            let split = if f.split == 0 {
                "none split over next-hops".to_string()
            } else {
                let ids: Vec<String> = f.split_ids.iter().map(|i| format!("{i:#x}")).collect();
                format!("SPLIT over next-hops: {} (ids {})", f.split, ids.join(", "))
            };
            say!(
                self.out,
                "  fragments: {} routed fragment records of {} datagrams, {split}; {} fragments before their first (flow unknown)",
                f.routed,
                f.datagrams,
                f.orphans
            );
        }
        say!(self.out, "  verdict: {verdict}");
    }
}

/// Why a flow's own figures are not exact, in words; `None` when they are.
pub(super) fn not_exact_line(why: &[Inexact]) -> Option<String> {
    if why.is_empty() {
        return None;
    }
    let words: Vec<&str> = why.iter().map(|i| i.words()).collect();
    Some(format!(
        "  NOT EXACT: this flow's own figures may be short: {}",
        words.join("; ")
    ))
}
