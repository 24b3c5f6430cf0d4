//! The wording the text view shares with the pcapng comments and the JSON change records:
//! addresses, a flow's title, a decision, a change.
use std::net::IpAddr;

use crate::{
    correlate::flows::{Decision, FlowKey, NextHopUse},
    events::{fmt_mac, proto_name},
    netns::changes::Change,
    netns::kernel_state::NextHop,
};

pub(super) const RT_TABLE_LOCAL: u32 = 255;

pub(super) fn sockaddr(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(_) => format!("{ip}:{port}"),
        IpAddr::V6(_) => format!("[{ip}]:{port}"),
    }
}

pub(super) fn opt_ip(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "?".to_string(), |i| i.to_string())
}

pub(super) fn ms(ns: u64) -> String {
    format!("{:>9.3} ms", ns as f64 / 1e6)
}

pub(in crate::output) fn flow_title(k: &FlowKey) -> String {
    format!(
        "{} {} <-> {}",
        proto_name(k.proto),
        sockaddr(k.client, k.client_port),
        sockaddr(k.vip, k.vip_port)
    )
}

/// "decision: rule 32765 `from 20.0.0.1` -> table 1 [candidates], hash 0x.. (source) ->
/// predicted X, actual Y". Candidates only when they are new for the flow.
pub(in crate::output) fn decision_text(d: &Decision) -> String {
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
pub(super) fn via(n: &NextHopUse) -> String {
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

pub(in crate::output) fn change_text(c: &Change) -> String {
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

pub(super) fn candidates_text(c: &[NextHop]) -> String {
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
