//! The text view of merged records: a line per node-level record, a line per record of a
//! flow's timeline.
use serde_json::Value;

use crate::output::stamp::rfc3339;

use super::{addr, Rec};

/// A lookup in a table that did not match (the lookup goes on to the next rule): the
/// tracer's text view leaves them out too; --json keeps them.
pub(super) fn unmatched_lookup(v: &Value) -> bool {
    v["type"] == "route"
        && (v["err"] == -(libc::EAGAIN as i64) || (v["err"] != 0 && v["table"] == 255))
}

pub(super) fn with_timeline(v: &Value, n: usize) -> Value {
    let mut v = v.clone();
    v["timeline"] = Value::from(n);
    v
}

pub(super) fn time_of_day(wall: i128) -> String {
    let t = rfc3339(wall);
    t.get(11..t.len() - 1).unwrap_or(&t).to_string()
}

pub(super) fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

/// A record that belongs to no flow: what a node traces, changes, losses.
pub(super) fn node_line(r: &Rec) -> String {
    let v = &r.value;
    match s(v, "type") {
        "ready" => format!(
            "node {}: ready {} {} (VIPs {})",
            r.node,
            s(v, "role"),
            s(v, "netns"),
            list(&v["vips"])
        ),
        "change" => format!(
            "{}  node {} {}: change: {}",
            time_of_day(r.key),
            r.node,
            s(v, "netns"),
            s(v, "text")
        ),
        "lost" => format!("node {}: WARNING: {} records lost", r.node, v["count"]),
        "evicted" => format!(
            "node {}: WARNING: {} per-hop counters evicted",
            r.node, v["count"]
        ),
        "distribution" => format!(
            "node {}: distribution of {}: {}",
            r.node,
            s(v, "vip"),
            v["nexthops"]
        ),
        other => format!("node {}: {other} {v}", r.node),
    }
}

pub(super) fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// One line of a timeline: when, where (node, netns, interface) and what.
pub(super) fn flow_line(n: usize, r: &Rec, start: i128) -> String {
    let v = &r.value;
    let at = if r.timed {
        format!(
            "{}  +{:>9.3} ms",
            time_of_day(r.key),
            (r.key - start) as f64 / 1e6
        )
    } else {
        format!("{:>18}  {:>12}", "", "")
    };
    let place = format!("{} {}", r.node, s(v, "netns"));
    let what = match s(v, "type") {
        "hop" => {
            let mut w = format!(
                "{:<16} {:<7} {}  {:<8} {:>5} B  {} > {}",
                s(v, "ifname"),
                s(v, "dir"),
                if s(v, "path") == "egress" {
                    "from VIP"
                } else {
                    "to VIP  "
                },
                if s(v, "proto") == "tcp" {
                    s(v, "tcp_flags")
                } else {
                    s(v, "proto")
                },
                v["len"],
                addr(s(v, "src"), v["sport"].as_u64().unwrap_or(0)),
                addr(s(v, "dst"), v["dport"].as_u64().unwrap_or(0)),
            );
            if let Some(nh) = v["nexthop"].as_str() {
                w += &format!("  next-hop {nh} ({})", s(v, "eth_dst"));
            }
            w
        }
        "route" => format!(
            "fib lookup table {}: first usable gw {} dev {}{}",
            v["table"],
            s(v, "gw"),
            s(v, "dev"),
            if v["err"] != 0 {
                format!(" (error {})", v["err"])
            } else {
                String::new()
            }
        ),
        "decision" => format!(
            "decision: table {}, hash {} ({}), predicted {}, actual {}",
            v["table"],
            v["hash"],
            s(v, "hash_source"),
            v["predicted"].as_str().unwrap_or("unknown"),
            v["actual"].as_str().unwrap_or("unknown")
        ),
        "drop" => format!(
            "DROPPED on {}: {} at {}",
            s(v, "ifname"),
            s(v, "reason"),
            s(v, "location")
        ),
        "flow" => {
            let e = &v["egress"];
            format!(
                "summary: ingress {} packets on {}; egress {} packets to next-hop {} via {}{}",
                v["ingress"]["packets"],
                s(&v["ingress"], "ifname"),
                e["packets"],
                e["nexthop"].as_str().unwrap_or("-"),
                e["ifname"].as_str().unwrap_or("-"),
                if e["consistent"] == false {
                    " INCONSISTENT"
                } else {
                    ""
                }
            )
        }
        other => format!("{other} {v}"),
    };
    format!("  #{n} {at}  {place:<28} {what}")
}
