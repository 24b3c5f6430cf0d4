//! The text renderer: a header per flow, one line per hop, a verdict per flow at the end.
use std::{io::Write, net::IpAddr};

use super::{Out, Render};
use crate::{
    bpf::Ready,
    correlate::flows::{
        Decision, Distribution, DropHop, FlowKey, FlowSummary, Hop, HopKind, NextHopUse, PathDir,
        RouteHop,
    },
    discover::Role,
    events::{fmt_mac, fmt_tcp_flags, proto_name},
    netns::changes::Change,
    netns::kernel_state::NextHop,
};

const RT_TABLE_LOCAL: u32 = 255;

fn sockaddr(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(_) => format!("{ip}:{port}"),
        IpAddr::V6(_) => format!("[{ip}]:{port}"),
    }
}

fn opt_ip(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "?".to_string(), |i| i.to_string())
}

fn ms(ns: u64) -> String {
    format!("{:>9.3} ms", ns as f64 / 1e6)
}

pub(super) fn flow_title(k: &FlowKey) -> String {
    format!(
        "{} {} <-> {}",
        proto_name(k.proto),
        sockaddr(k.client, k.client_port),
        sockaddr(k.vip, k.vip_port)
    )
}

/// "decision: rule 32765 `from 20.0.0.1` -> table 1 [candidates], hash 0x.. (source) ->
/// predicted X, actual Y". Candidates only when they are new for the flow.
pub(super) fn decision_text(d: &Decision) -> String {
    let rule = d.rule.as_ref().map_or("no rule known".to_string(), |r| {
        format!("rule {} `{}`", r.priority, r.selector())
    });
    let table = d.table.map_or("?".to_string(), |t| t.to_string());
    let candidates = if d.candidates_changed {
        format!(" next-hops {}", candidates_text(&d.candidates))
    } else {
        String::new()
    };
    let choice = match (d.hash, d.agrees()) {
        (Some(h), Some(agree)) => format!(
            "hash {h:#010x} ({}) -> predicted {}, actual {} {}",
            d.source.label(),
            opt_ip(d.predicted),
            opt_ip(d.actual),
            if agree { "(agree)" } else { "(DIFFER)" }
        ),
        _ => format!("actual {}; {}", opt_ip(d.actual), d.source.label()),
    };
    format!("decision: {rule} -> table {table}{candidates}; {choice}")
}

/// "via conduit-a.-3150", or how the bridge flooded it.
fn via(n: &NextHopUse) -> String {
    match (&n.port, n.flooded) {
        (Some(p), false) => format!("via {p}"),
        (Some(p), true) => format!(
            "via {p} (flooded on every bridge port until the FDB learned {})",
            fmt_mac(&n.mac)
        ),
        (None, _) => format!(
            "flooded on every bridge port (the bridge FDB does not know {})",
            fmt_mac(&n.mac)
        ),
    }
}

pub(super) fn change_text(c: &Change) -> String {
    let sign = |added: &bool| if *added { "added" } else { "removed" };
    match c {
        Change::Route {
            table,
            before,
            after,
            ..
        } => format!(
            "table {table} next-hops {} -> {}",
            candidates_text(before),
            candidates_text(after)
        ),
        Change::Rule { added, rule } => format!(
            "rule {} `{}` lookup {} {}",
            rule.priority,
            rule.selector(),
            rule.table.map_or("?".into(), |t| t.to_string()),
            sign(added)
        ),
        Change::Link { added, name } => format!("interface {name} {}", sign(added)),
        Change::Neighbour { ip, before, after } => format!(
            "next-hop {ip} MAC {} -> {}",
            before.as_ref().map_or("none".into(), fmt_mac),
            after.as_ref().map_or("none".into(), fmt_mac)
        ),
        Change::Attached {
            added: true,
            ifname,
        } => format!("interface {ifname} appeared: attached"),
        Change::Attached {
            added: false,
            ifname,
        } => format!("interface {ifname} is gone: no longer traced"),
        Change::Netns {
            added: true,
            role,
            name,
        } => format!("{role} {name} appeared: attached"),
        Change::Netns {
            added: false,
            role,
            name,
        } => format!("{role} {name} is gone: detached"),
    }
}

fn candidates_text(c: &[NextHop]) -> String {
    let list: Vec<String> = c
        .iter()
        .map(|n| {
            let mut t = opt_ip(n.gw);
            if n.weight != 1 {
                t += &format!(" weight {}", n.weight);
            }
            if !n.alive {
                t += " dead";
            }
            t
        })
        .collect();
    format!("[{}]", list.join(", "))
}

/// What a ready record holds that is not its namespace's own: the hooks of the node object
/// (everything but `tc:`), which serve every traced namespace, and those of them refused or
/// not used. The text view says them once a run, and again only when they differ.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct NodeWide {
    hooks: Vec<String>,
    refused: Vec<(String, String)>,
    unavailable: Vec<(String, String)>,
}

/// A hook on one namespace's interface (`tc:bridge0/ingress (tcx)`), not a node-wide one.
fn on_interface(hook: &str) -> bool {
    hook.starts_with("tc:")
}

/// The text lines of a ready record: its namespace's own hooks and notes, and the node-wide
/// hooks when `said` (the set printed last) is not the same; `said` becomes what this
/// record holds.
fn ready_lines(r: &Ready, said: &mut Option<NodeWide>) -> Vec<String> {
    let vips: Vec<String> = r.vips.iter().map(|v| v.to_string()).collect();
    let port = r.client_port.map_or("every client port".to_string(), |p| {
        format!("client port {p}")
    });
    let found = if r.vips_from == "discovery" {
        " (found by discovery)"
    } else {
        ""
    };
    let mut lines = vec![format!(
        "ready: {} {}, VIPs {}{found}, {port}",
        r.role,
        r.netns,
        vips.join(", ")
    )];
    let own = |(hook, _): &&(String, String)| on_interface(hook);
    let (mut own_hooks, mut node) = (Vec::new(), NodeWide::default());
    for hook in &r.hooks {
        if on_interface(hook) {
            own_hooks.push(hook.as_str());
        } else {
            node.hooks.push(hook.clone());
        }
    }
    node.refused = r.refused.iter().filter(|h| !own(h)).cloned().collect();
    node.unavailable = r.unavailable.iter().filter(|h| !own(h)).cloned().collect();
    if own_hooks.is_empty() {
        lines.push("  attached: none".into());
    } else {
        lines.push(format!("  attached: {}", own_hooks.join(", ")));
    }
    for (hook, why) in r.refused.iter().filter(own) {
        lines.push(format!("  REFUSED: {hook}: {why}"));
    }
    for (hook, why) in r.unavailable.iter().filter(own) {
        lines.push(format!("  not used: {hook}: {why}"));
    }
    if said.as_ref() != Some(&node) {
        let heading = if said.is_none() {
            "node-wide hooks (one set for every traced namespace):"
        } else {
            "node-wide hooks, changed (from here on):"
        };
        lines.push(format!("  {heading}"));
        if node.hooks.is_empty() {
            lines.push("    attached: none".into());
        } else {
            lines.push(format!("    attached: {}", node.hooks.join(", ")));
        }
        for (hook, why) in &node.refused {
            lines.push(format!("    REFUSED: {hook}: {why}"));
        }
        for (hook, why) in &node.unavailable {
            lines.push(format!("    not used: {hook}: {why}"));
        }
        *said = Some(node);
    }
    for note in &r.notes {
        lines.push(format!("  note: {note}"));
    }
    lines
}

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
        say!(self.out, "WARNING: {count} per-hop counters evicted (the counter map was full; raise --hop-entries): some flows' counts are short");
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
    }
}

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

    fn flow_summary(&mut self, s: &FlowSummary, netns: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(netns: &str, role: &'static str, tc: &[&str], node: &NodeWide) -> Ready {
        let mut r = Ready {
            netns: netns.into(),
            role,
            vips: vec!["20.0.0.1".parse().unwrap()],
            vips_from: "--vip",
            hooks: tc.iter().map(|h| h.to_string()).collect(),
            ..Default::default()
        };
        r.hooks.extend(node.hooks.iter().cloned());
        r.refused.extend(node.refused.iter().cloned());
        r.unavailable.extend(node.unavailable.iter().cloned());
        r
    }

    fn node() -> NodeWide {
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        NodeWide {
            hooks: vec![
                "raw_tracepoint:fib_table_lookup".into(),
                "raw_tracepoint:fib6_table_lookup".into(),
                "tracepoint:skb/kfree_skb".into(),
            ],
            refused: vec![pair("fexit:fib_multipath_hash", "permission denied")],
            unavailable: vec![pair(
                "kretprobe:fib_multipath_hash",
                "not needed: the fexit hook is attached",
            )],
        }
    }

    fn count(lines: &[String], needle: &str) -> usize {
        lines.iter().filter(|l| l.contains(needle)).count()
    }

    /// The whole path: the node-wide hooks once, under their heading, with the first ready
    /// record; later ones say their own `tc:` hooks and notes only.
    #[test]
    fn node_wide_hooks_are_said_once_a_run() {
        let mut said = None;
        let mut first = ready(
            "n-proxy-a",
            "proxy",
            &["tc:bridge0/ingress (tcx)", "tc:bridge0/egress (tcx)"],
            &node(),
        );
        first.notes.push("mounted bpffs".into());
        let lines = ready_lines(&first, &mut said);
        assert_eq!(
            lines,
            [
                "ready: proxy n-proxy-a, VIPs 20.0.0.1, every client port",
                "  attached: tc:bridge0/ingress (tcx), tc:bridge0/egress (tcx)",
                "  node-wide hooks (one set for every traced namespace):",
                "    attached: raw_tracepoint:fib_table_lookup, raw_tracepoint:fib6_table_lookup, tracepoint:skb/kfree_skb",
                "    REFUSED: fexit:fib_multipath_hash: permission denied",
                "    not used: kretprobe:fib_multipath_hash: not needed: the fexit hook is attached",
                "  note: mounted bpffs",
            ]
        );
        let mut all = lines;
        for (ns, role) in [
            ("n-lbfe-a", "frontend"),
            ("n-lbfe-b", "frontend"),
            ("n-target-a-1", "target"),
        ] {
            let mut r = ready(ns, role, &["tc:eth0/ingress (tcx)"], &node());
            r.notes.push(format!("own note of {ns}"));
            let lines = ready_lines(&r, &mut said);
            assert_eq!(
                lines,
                [
                    format!("ready: {role} {ns}, VIPs 20.0.0.1, every client port"),
                    "  attached: tc:eth0/ingress (tcx)".into(),
                    format!("  note: own note of {ns}"),
                ]
            );
            all.extend(lines);
        }
        for needle in [
            "node-wide hooks",
            "fib_table_lookup",
            "fib6_table_lookup",
            "kfree_skb",
            "REFUSED",
            "not used",
        ] {
            assert_eq!(count(&all, needle), 1, "{needle}: {all:#?}");
        }
    }

    /// A later namespace whose node-wide set differs gets it printed, marked changed; the
    /// JSON side keeps every hook in every record (the renderer here only reads `Ready`).
    #[test]
    fn a_different_node_wide_set_is_said_again() {
        let mut said = None;
        let first = ready("p", "proxy", &["tc:bridge0/ingress (tcx)"], &node());
        ready_lines(&first, &mut said);
        let mut other = node();
        other.unavailable.push((
            "tc programs shared by every namespace".into(),
            "not tried (--tc-programs per-namespace); loaded once per namespace instead".into(),
        ));
        let r = ready("t", "target", &["tc:eth0/ingress (tcx)"], &other);
        let lines = ready_lines(&r, &mut said);
        assert_eq!(count(&lines, "node-wide hooks, changed"), 1, "{lines:#?}");
        assert_eq!(count(&lines, "tc programs shared"), 1, "{lines:#?}");
        assert_eq!(count(&lines, "kfree_skb"), 1, "{lines:#?}");
        // The same set again: not repeated.
        let lines = ready_lines(&r, &mut said);
        assert_eq!(count(&lines, "node-wide"), 0, "{lines:#?}");
        // A record with no node-wide hooks at all (--hooks tc) still says so, once.
        let mut said = None;
        let bare = ready(
            "p",
            "proxy",
            &["tc:bridge0/ingress (tcx)"],
            &NodeWide::default(),
        );
        let lines = ready_lines(&bare, &mut said);
        assert!(
            lines.contains(&"    attached: none".to_string()),
            "{lines:#?}"
        );
    }
}
