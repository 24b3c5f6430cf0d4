//! The text renderer: a header per flow, one line per hop, a verdict per flow at the end.
use std::io::Write;

use super::{Out, Render};
use crate::{
    bpf::Ready,
    correlate::flows::{
        Distribution, DropHop, FlowKey, FlowSummary, Hop, HopKind, Overflow, PathDir, RouteHop,
    },
    discover::Role,
    events::{fmt_mac, fmt_tcp_flags, proto_name},
    netns::changes::Change,
};

/// The human view: a header per flow, one line per hop, a verdict per flow at the end.
pub(super) struct Text {
    multi: bool,
    headed: std::collections::HashSet<u32>,
    /// The node-wide hooks the last ready record printed (`ready` says them once a run).
    node_wide: Option<NodeWide>,
    out: Out,
}

impl Text {
    pub(super) fn new(multi: bool, out: Out) -> Text {
        Text {
            multi,
            headed: Default::default(),
            node_wide: None,
            out,
        }
    }

    fn head(&mut self, id: u32, k: &FlowKey) {
        if self.headed.insert(id) {
            say!(self.out, "flow #{id} {}", flow_title(k));
        }
    }

    /// The namespace column, when several are traced.
    fn at(&self, netns: &str) -> String {
        if self.multi {
            format!("{netns:<16} ")
        } else {
            String::new()
        }
    }
}

impl Render for Text {
    fn flush(&mut self) {
        let _ = self.out.flush();
    }

    fn ready(&mut self, r: &Ready) {
        for line in ready_lines(r, &mut self.node_wide) {
            say!(self.out, "{line}");
        }
        let _ = self.out.flush();
    }

    fn hop(&mut self, h: &Hop) {
        self.head(h.flow_id, &h.flow);
        let p = &h.packet;
        let arrow = match h.path {
            PathDir::Ingress => "to VIP  ",
            PathDir::Egress => "from VIP",
        };
        let flags = if p.proto == tracer_common::PROTO_TCP {
            fmt_tcp_flags(p.tcp_flags)
        } else {
            proto_name(p.proto).to_string()
        };
        let mut line = format!(
            "  #{} +{}  {}{:<16} {:<7} {arrow}  {:<8} {:>5} B  {} > {}",
            h.flow_id,
            ms(h.rel_ns),
            self.at(&h.netns),
            h.ifname,
            p.dir.as_str(),
            flags,
            p.len,
            sockaddr(p.src, p.sport),
            sockaddr(p.dst, p.dport),
        );
        if let Some(f) = p.frag {
            line += &format!(
                "  frag {:#x} +{}{}{}",
                f.id,
                f.offset,
                if f.more { " MF" } else { "" },
                if f.orphan { " (first not seen)" } else { "" }
            );
        }
        if p.vlan.tags > 0 {
            line += &format!("  vlan {}", p.vlan.ids_text());
        }
        if h.kind == HopKind::L3 && p.dir == crate::events::Dir::Egress && h.nexthop.is_some()
            || h.decision.is_some()
        {
            line += &format!("  next-hop {} ({})", opt_ip(h.nexthop), fmt_mac(&p.eth_dst));
            if h.nexthop_unknown {
                line += " not in the neighbour table";
            }
        }
        say!(self.out, "{line}");
        if let Some(d) = &h.decision {
            say!(
                self.out,
                "  #{} {:>12}  {}",
                h.flow_id,
                "",
                decision_text(d)
            );
        }
    }

    fn route(&mut self, r: &RouteHop) {
        let l = &r.lookup;
        if l.err == -libc::EAGAIN || (l.err != 0 && l.table == RT_TABLE_LOCAL) {
            return; // a table that did not match; the lookup goes on to the next rule
        }
        self.head(r.flow_id, &r.flow);
        let rule = r.rule.as_ref().map_or(String::new(), |rule| {
            format!(" via rule {} `{}`", rule.priority, rule.selector())
        });
        let lb = r.role == Role::Frontend && r.path == PathDir::Ingress && l.mark != 0;
        let result = if l.err != 0 {
            format!("failed: error {}", l.err)
        } else if l.table == RT_TABLE_LOCAL {
            "local delivery (the address is this pod's)".to_string()
        } else if lb {
            let by = if l.after_ingress {
                "set after the ingress hook: the load balancer's (NFQUEUE) verdict"
            } else {
                "already on the packet at the ingress hook"
            };
            let queued = r.queued_ns.map_or(String::new(), |q| {
                format!(", {} in the queue", ms(q).trim())
            });
            format!(
                "target {} dev {} (mark {:#x} {by}{queued})",
                l.gw, l.dev, l.mark
            )
        } else {
            format!(
                "first usable gw {} dev {} (the multipath hash picks afterwards)",
                l.gw, l.dev
            )
        };
        say!(
            self.out,
            "  #{} +{}  {}fib lookup table {}{rule}: {result}",
            r.flow_id,
            ms(r.rel_ns),
            self.at(&r.netns),
            l.table
        );
    }

    fn lost(&mut self, count: u64, total: u64) {
        say!(self.out, "WARNING: {count} records lost (ring buffer full), {total} in all: hops are missing from this view");
    }

    fn evicted(&mut self, count: u64) {
        say!(self.out, "{}", hop_counters_line(count));
    }

    fn overflowed(&mut self, o: &Overflow) {
        for line in overflow_warnings(o) {
            say!(self.out, "{line}");
        }
    }

    fn dropped(&mut self, d: &DropHop) {
        self.head(d.flow_id, &d.flow);
        say!(
            self.out,
            "  #{} +{}  {}{:<16} DROPPED {:<8}  reason {} at {}  {} > {}",
            d.flow_id,
            ms(d.rel_ns),
            self.at(&d.netns),
            d.ifname,
            d.path.as_str(),
            d.reason,
            d.location,
            sockaddr(d.drop.src, d.drop.sport),
            sockaddr(d.drop.dst, d.drop.dport),
        );
    }

    fn change(&mut self, _ts_ns: u64, netns: &str, c: &Change) {
        say!(self.out, "change in {netns}: {}", change_text(c));
    }

    fn distribution(&mut self, d: &Distribution) {
        say!(
            self.out,
            "distribution of {} over {} flows:",
            d.vip,
            d.flows
        );
        for sh in &d.shares {
            say!(
                self.out,
                "  next-hop {:<15} via {:<16} {:>6} flows ({:>5.1} %) {:>8} packets",
                opt_ip(sh.nexthop),
                sh.ifname.as_deref().unwrap_or("?"),
                sh.flows,
                100.0 * sh.flows as f64 / d.flows.max(1) as f64,
                sh.packets
            );
        }
        let to_targets: u64 = d.targets.iter().map(|t| t.flows).sum();
        for t in &d.targets {
            let lb = match (t.target_ip, t.mark) {
                (Some(ip), Some(mark)) => format!("  (load balancer: {ip}, mark {mark:#x})"),
                _ => String::new(),
            };
            say!(
                self.out,
                "  target   {:<15} {:>6} flows ({:>5.1} %) {:>8} requests{lb}",
                t.netns,
                t.flows,
                100.0 * t.flows as f64 / to_targets.max(1) as f64,
                t.packets
            );
        }
        for t in &d.lb_tables {
            let slots: Vec<String> = t
                .active
                .iter()
                .map(|s| {
                    let flows = if s.flows == 0 {
                        "NO FLOW from it".to_string()
                    } else {
                        format!("{} flows from it", s.flows)
                    };
                    format!(
                        "{:#x} {:.1} % of the table, {flows}",
                        s.mark,
                        100.0 * f64::from(s.entries) / f64::from(t.m.max(1))
                    )
                })
                .collect();
            say!(
                self.out,
                "  load balancer {} in {} (M={}): {}",
                t.name,
                t.netns,
                t.m,
                slots.join("; ")
            );
            for mark in &t.not_in_table {
                say!(
                    self.out,
                    "  flows went to mark {mark:#x}, which {}'s table {} has no active target for",
                    t.netns,
                    t.name
                );
            }
        }
    }

    fn summary(&mut self, s: &FlowSummary, netns: &str) {
        self.flow_summary(s, netns);
        // Its header is not needed again: the set stays as small as the live flows.
        self.headed.remove(&s.flow_id);
    }
}

fn hop_counters_line(count: u64) -> String {
    format!("WARNING: {count} per-hop counters evicted (the counter map was full; raise --hop-entries): some flows' counts are short")
}

/// Every bound that left something out, in words (`tracer merge` says them the same way).
pub(crate) fn overflow_warnings(o: &Overflow) -> Vec<String> {
    let hop = (o.hop_counters > 0).then(|| hop_counters_line(o.hop_counters));
    hop.into_iter().chain(overflow_lines(o)).collect()
}

/// The bounds other than the per-hop counters that left something out, in words.
fn overflow_lines(o: &Overflow) -> Vec<String> {
    [
        (o.flows, "flows summarised early, the table of live flows being full (raise --max-flows)"),
        (o.totals_full, "packets not in the per-VIP totals (their map was full): the distribution is short by them"),
        (o.hash_samples, "kernel hash samples dropped (a flow's 8 waiting were not taken yet)"),
        (o.datagrams, "fragmented datagrams not followed for the split check (past 4096 in a flow)"),
        (o.queued, "requests in a load balancer's queue forgotten (past 32 in a flow): their queue time is unknown"),
        (o.lb_changes, "load balancer changes not kept (past 8 in a flow)"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("WARNING: {n} {what}"))
    .collect()
}

mod phrases;
mod ready;
mod summary;
#[cfg(test)]
mod tests;

use phrases::*;
pub(super) use phrases::{change_text, decision_text, flow_title};
use ready::{ready_lines, NodeWide};
