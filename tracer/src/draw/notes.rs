//! The words of the picture: the title and verdict of a flow, and the decisions written
//! where they were taken.
use std::net::{IpAddr, SocketAddr};

use super::records::{Decision, Drop, Flow, Route, Rule};

use super::flow::FlowView;

fn rule_text(rule: &Option<Rule>) -> String {
    match rule {
        Some(r) => format!("rule {} `{}`", r.priority, r.selector),
        None => "no matching rule known".into(),
    }
}

fn ip(ip: Option<IpAddr>) -> String {
    ip.map_or("?".into(), |ip| ip.to_string())
}

/// The load balancer's choice, from the frontend's lookup after it set the mark.
pub fn lb(r: &Route) -> Vec<String> {
    let mut how = Vec::new();
    if r.after_ingress {
        how.push("marked after ingress (NFQUEUE)".to_string());
    }
    if let Some(q) = r.queued_ns {
        how.push(format!("queued {:.3} ms", q as f64 / 1e6));
    }
    vec![
        format!(
            "load balancer: mark {:#x} -> {} -> table {}",
            r.mark,
            rule_text(&r.rule),
            r.table
        ),
        format!("target {} dev {}", r.gw, r.dev),
        how.join(", "),
    ]
    .into_iter()
    .filter(|l| !l.is_empty())
    .collect()
}

/// The proxy's ECMP choice.
pub fn ecmp(d: &Decision) -> Vec<String> {
    let candidates: Vec<String> = d
        .candidates
        .iter()
        .map(|c| {
            format!(
                "{} w{}{}",
                ip(c.gw),
                c.weight,
                if c.alive { "" } else { " (dead)" }
            )
        })
        .collect();
    let table = d.table.map_or("?".into(), |t| t.to_string());
    let hash = d
        .hash
        .map_or("hash unknown".into(), |h| format!("hash {h:#010x}"));
    let verdict = match d.agree {
        Some(true) => "agree",
        Some(false) => "DIFFER",
        None => "cannot tell",
    };
    vec![
        format!("ECMP: {} -> table {table}", rule_text(&d.rule)),
        format!("candidates: {}", candidates.join(", ")),
        format!(
            "{hash} ({}): predicted {}, taken {} ({verdict})",
            d.hash_source,
            ip(d.predicted),
            ip(d.actual)
        ),
    ]
}

pub fn drop(d: &Drop) -> String {
    format!("DROPPED {} in {}", d.reason, d.location)
}

/// The flow's 5-tuple (and nodes) as the picture's title.
pub fn title(v: &FlowView) -> String {
    let k = &v.key;
    let mut t = format!(
        "{} {} -> {}",
        k.proto,
        SocketAddr::new(k.client, k.client_port),
        SocketAddr::new(k.vip, k.vip_port)
    );
    if v.nodes.len() > 1 {
        t.push_str(&format!("  (nodes {})", v.nodes.join(", ")));
    }
    t
}

/// The verdict lines under the title: per summary, where the requests went and the replies.
pub fn verdict(v: &FlowView) -> Vec<String> {
    if v.summaries.is_empty() {
        return vec![
            "no summary yet: the flow had not ended when these records were written".into(),
        ];
    }
    let many = v.summaries.len() > 1;
    v.summaries.iter().flat_map(|f| summary(f, many)).collect()
}

fn summary(f: &Flow, name_it: bool) -> Vec<String> {
    let who = if name_it {
        format!("{}: ", f.netns)
    } else {
        String::new()
    };
    let p = &f.path;
    let mut request = Vec::new();
    if let Some(fe) = &p.frontend_in {
        request.push(format!("in by {} {}", fe.netns, fe.ifname));
    }
    for c in &p.lb {
        request.push(format!(
            "{} chose {} (mark {:#x})",
            c.netns, c.target_ip, c.mark
        ));
    }
    if let Some(t) = &p.target {
        request.push(format!("reached {} ({} packets)", t.netns, t.packets));
    }
    let e = &f.egress;
    let mut reply = vec![format!(
        "{} packets to next-hop {} via {}{}",
        e.packets,
        ip(e.nexthop),
        e.ifname.as_deref().unwrap_or("?"),
        if e.consistent { "" } else { " (INCONSISTENT)" }
    )];
    if let Some(out) = &p.frontend_out {
        reply.push(format!("out by {} {}", out.netns, out.ifname));
    }
    if p.asymmetric {
        reply.push("asymmetric".into());
    }
    let drops = match &f.drops.last {
        Some(d) if f.drops.packets > 0 => format!(
            "{} dropped (last: {} on {})",
            f.drops.packets, d.reason, d.ifname
        ),
        _ => "no drops".into(),
    };
    let mut lines = Vec::new();
    if !request.is_empty() {
        lines.push(format!("{who}requests: {}", request.join(", ")));
    }
    lines.push(format!("{who}replies: {}; {drops}", reply.join(", ")));
    lines
}
