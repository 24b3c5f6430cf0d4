//! The text view of merged records: a line per node-level record, a line per record of a
//! flow's timeline.
use std::fmt::Display;

use tracer_records::{self as records, Record};

use crate::correlate::flows::Overflow;
use crate::output::stamp::rfc3339;

use super::{addr, escape, Rec};

/// Writes a line of the text view, with the control characters the inputs put in it
/// escaped (they would reach the terminal).
pub(super) fn put(out: &mut impl std::io::Write, line: &str) -> std::io::Result<()> {
    writeln!(out, "{}", escape::text(line))
}

/// A lookup in a table that did not match (the lookup goes on to the next rule): the
/// tracer's text view leaves them out too; --json keeps them.
pub(super) fn unmatched_lookup(r: &Rec) -> bool {
    matches!(r.record(), Some(Record::Route(l))
        if l.err == -libc::EAGAIN || (l.err != 0 && l.table == 255))
}

/// The record's line with its timeline's number (and `late` when --follow printed newer
/// records before it): the line as read, the members added at its end.
pub(super) fn with_timeline(r: &Rec, n: usize, late: bool) -> String {
    let late = if late { r#","late":true"# } else { "" };
    r.text_with(&format!(r#","timeline":{n}{late}"#))
}

pub(super) fn time_of_day(wall: i128) -> String {
    let t = rfc3339(wall);
    t.get(11..t.len() - 1).unwrap_or(&t).to_string()
}

/// A number that may be absent, as JSON writes it.
fn or_null<T: Display>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_string(), |v| v.to_string())
}

/// A record that belongs to no flow: what a node traces, changes, losses. `None` for a
/// record of a type this tracer does not know.
pub(super) fn node_line(r: &Rec) -> Option<String> {
    Some(match r.record()? {
        Record::Ready(v) => format!(
            "node {}: ready {} {} (VIPs {})",
            r.node,
            v.role,
            v.netns,
            list(&v.vips)
        ),
        Record::Change(v) => format!(
            "{}  node {} {}: change: {}",
            time_of_day(r.key),
            r.node,
            v.netns,
            v.text
        ),
        Record::Lost(v) => format!("node {}: WARNING: {} records lost", r.node, v.count),
        Record::Evicted(v) => format!(
            "node {}: {}",
            r.node,
            crate::output::overflow_warnings(&Overflow::from(v)).join("; ")
        ),
        // The shares as a JSON value writes them (keys in order of name).
        Record::Distribution(v) => format!(
            "node {}: distribution of {}: {}",
            r.node,
            v.vip,
            serde_json::to_value(&v.nexthops).unwrap_or_default()
        ),
        // Flow records are in their timelines.
        Record::Hop(_)
        | Record::Decision(_)
        | Record::Route(_)
        | Record::Drop(_)
        | Record::Flow(_) => return None,
    })
}

/// A summary's own figures that may be short, and why (empty for an exact one).
fn not_exact(f: &records::Flow) -> String {
    if f.exact {
        return String::new();
    }
    let why: Vec<&str> = f.not_exact.iter().map(|i| i.words()).collect();
    format!("; NOT EXACT: {}", why.join("; "))
}

pub(super) fn list(v: &[impl Display]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line of a timeline: when, where (node, netns, interface) and what. `None` for a
/// record of a type this tracer does not know.
pub(super) fn flow_line(n: usize, r: &Rec, start: i128) -> Option<String> {
    let record = r.record()?;
    let at = if r.timed {
        format!(
            "{}  +{:>9.3} ms",
            time_of_day(r.key),
            (r.key - start) as f64 / 1e6
        )
    } else {
        format!("{:>18}  {:>12}", "", "")
    };
    let (netns, what) = match record {
        Record::Hop(v) => {
            let mut w = format!(
                "{:<16} {:<7} {}  {:<8} {} B  {} > {}",
                v.ifname,
                v.dir,
                if v.path == "egress" {
                    "from VIP"
                } else {
                    "to VIP  "
                },
                if v.proto == "tcp" {
                    &v.tcp_flags
                } else {
                    &v.proto
                },
                v.len,
                addr(&v.src.to_string(), v.sport.into()),
                addr(&v.dst.to_string(), v.dport.into()),
            );
            if let Some(nh) = v.nexthop {
                w += &format!("  next-hop {nh} ({})", v.eth_dst);
            }
            (&v.netns, w)
        }
        Record::Route(v) => (
            &v.netns,
            format!(
                "fib lookup table {}: first usable gw {} dev {}{}",
                v.table,
                v.gw,
                v.dev,
                if v.err != 0 {
                    format!(" (error {})", v.err)
                } else {
                    String::new()
                }
            ),
        ),
        Record::Decision(v) => (
            &v.netns,
            format!(
                "decision: table {}, hash {} ({}), predicted {}, actual {}",
                or_null(v.table),
                or_null(v.hash),
                v.hash_source,
                v.predicted.map_or("unknown".into(), |a| a.to_string()),
                v.actual.map_or("unknown".into(), |a| a.to_string())
            ),
        ),
        Record::Drop(v) => (
            &v.netns,
            format!("DROPPED on {}: {} at {}", v.ifname, v.reason, v.location),
        ),
        Record::Flow(v) => {
            let e = &v.egress;
            (
                &v.netns,
                format!(
                    "summary: ingress {} packets on {}; egress {} packets to next-hop {} via {}{}",
                    v.ingress.packets,
                    v.ingress.ifname.as_deref().unwrap_or(""),
                    e.packets,
                    e.nexthop.map_or("-".into(), |a| a.to_string()),
                    e.ifname.as_deref().unwrap_or("-"),
                    if e.consistent { "" } else { " INCONSISTENT" }
                ) + &not_exact(v),
            )
        }
        // Records of no flow have no timeline (`FlowKey::of`).
        Record::Ready(_)
        | Record::Lost(_)
        | Record::Evicted(_)
        | Record::Change(_)
        | Record::Distribution(_) => return None,
    };
    let place = format!("{} {}", r.node, netns);
    Some(format!("  #{n} {at}  {place:<28} {what}"))
}
