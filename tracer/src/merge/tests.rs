//! Merge tests on real records: `testdata/node-a.jsonl` and `node-b.jsonl` were written by
//! two tracers on the namespace lab, one playing node "worker-a" (`--role proxy --role
//! target`) and one "worker-b" (`--role frontend`), while one IPv4 (client port 35981) and
//! one IPv6 (35982) connection crossed the path.
use tracer_records::{Hop, Line, Merged, Record};

use super::{
    follow::{Merger, MAX_HELD},
    *,
};

const NODE_A: &str = include_str!("testdata/node-a.jsonl");
const NODE_B: &str = include_str!("testdata/node-b.jsonl");

fn read(inputs: &[(&str, &str)]) -> Vec<Rec> {
    let mut recs = Vec::new();
    let mut seq = 0;
    for (name, text) in inputs {
        let mut r = Reader::new(name);
        for line in text.lines() {
            seq += 1;
            recs.extend(r.parse(line, seq));
        }
    }
    recs
}

fn batch(recs: &[Rec], json: bool) -> String {
    let mut out = Vec::new();
    write_batch(recs, json, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn hop(r: &Rec) -> Option<&Hop<'static>> {
    match r.record()? {
        Record::Hop(h) => Some(h),
        _ => None,
    }
}

fn is_type(r: &Rec, t: &str) -> bool {
    r.record().is_some_and(|v| v.type_name() == t)
}

/// (node, netns, ifname, dir, tcp_flags) of a timeline's hops, in the merged order.
fn hops(t: &[&Rec]) -> Vec<(String, String, String, String, String)> {
    t.iter()
        .filter_map(|r| Some((r, hop(r)?)))
        .map(|(r, v)| {
            (
                r.node.clone(),
                v.netns.to_string(),
                v.ifname.to_string(),
                v.dir.to_string(),
                v.tcp_flags.to_string(),
            )
        })
        .collect()
}

fn pos(
    h: &[(String, String, String, String, String)],
    want: (&str, &str, &str, &str, &str),
) -> usize {
    h.iter()
        .position(|x| {
            (
                x.0.as_str(),
                x.1.as_str(),
                x.2.as_str(),
                x.3.as_str(),
                x.4.as_str(),
            ) == want
        })
        .unwrap_or_else(|| panic!("no hop {want:?} in {h:#?}"))
}

#[test]
fn two_nodes_make_one_timeline_per_flow_in_path_order() {
    let recs = read(&[("a", NODE_A), ("b", NODE_B)]);
    let (node_level, flows) = timelines(&recs);
    assert_eq!(
        flows.len(),
        2,
        "{:?}",
        flows.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert_eq!(
        flows[0].0.client_port, 35981,
        "flows in order of their first record"
    );
    assert_eq!(flows[1].0.client_port, 35982);
    assert_eq!(node_level.iter().filter(|r| is_type(r, "ready")).count(), 4);
    for (key, t) in &flows {
        // Both nodes' records, in wall-clock order, summaries at the end.
        let timed: Vec<i128> = t.iter().filter(|r| r.timed).map(|r| r.key).collect();
        assert!(
            timed.windows(2).all(|w| w[0] <= w[1]),
            "{key:?} not in wall-clock order"
        );
        assert!(t.iter().any(|r| r.node == "worker-a") && t.iter().any(|r| r.node == "worker-b"));
        assert!(is_type(t.last().unwrap(), "flow"));
        let h = hops(t);
        // The SYN: gateway side of a frontend (worker-b) -> proxy -> target (worker-a).
        let fe_in = h
            .iter()
            .find(|x| x.0 == "worker-b" && x.2 == "ext-vlan0" && x.3 == "ingress" && x.4 == "SYN")
            .expect("the SYN entering a frontend")
            .1
            .clone();
        let syn = [
            pos(&h, ("worker-b", &fe_in, "ext-vlan0", "ingress", "SYN")),
            pos(
                &h,
                ("worker-a", "x1-proxy-a", "proxy.cond-0a85", "egress", "SYN"),
            ),
            pos(&h, ("worker-a", "x1-target-a-1", "nsm-0", "ingress", "SYN")),
        ];
        assert!(syn.windows(2).all(|w| w[0] < w[1]), "SYN order {syn:?}");
        // The SYN-ACK: target -> proxy's bridge0 (the routed hop names the next-hop) ->
        // the frontend owning that next-hop (worker-b) -> the gateway.
        let routed = t
            .iter()
            .filter_map(|r| hop(r))
            .find(|h| h.ifname == "bridge0" && h.dir == "egress" && h.tcp_flags == "SYN,ACK")
            .expect("routed SYN-ACK");
        let nexthop = routed.nexthop.map(|n| n.to_string()).unwrap_or_default();
        let v6 = key.vip.contains(':');
        let fe_out = if nexthop == (if v6 { "fd00::3" } else { "172.16.0.3" }) {
            "x1-lbfe-a"
        } else {
            "x1-lbfe-b"
        };
        let summary = t
            .iter()
            .find_map(|r| match r.record() {
                Some(Record::Flow(f)) if f.netns == "x1-proxy-a" => Some(f),
                _ => None,
            })
            .expect("the proxy's summary");
        assert_eq!(
            summary
                .egress
                .nexthop
                .map(|n| n.to_string())
                .unwrap_or_default(),
            nexthop,
            "{summary:?}"
        );
        let sa = [
            pos(
                &h,
                ("worker-a", "x1-target-a-1", "nsm-0", "egress", "SYN,ACK"),
            ),
            pos(
                &h,
                ("worker-a", "x1-proxy-a", "bridge0", "egress", "SYN,ACK"),
            ),
            pos(&h, ("worker-b", fe_out, "ext-vlan0", "egress", "SYN,ACK")),
        ];
        assert!(sa.windows(2).all(|w| w[0] < w[1]), "SYN-ACK order {sa:?}");
    }
    let text = batch(&recs, false);
    assert!(
        text.contains(
            "timeline 1 tcp 169.254.100.150:35981 <-> 20.0.0.1:4000  (nodes: worker-b, worker-a)"
        ),
        "{text}"
    );
    assert!(
        text.contains("timeline 2 tcp [100:100::150]:35982 <-> [2000::1]:4000"),
        "{text}"
    );
    assert!(
        text.contains("node worker-a: ready proxy x1-proxy-a (VIPs 20.0.0.1, 2000::1)"),
        "{text}"
    );
    // --json: every input record once, each flow record with its timeline number.
    let json = batch(&recs, true);
    assert_eq!(json.lines().count(), recs.len());
    for l in json.lines() {
        let v: Merged = serde_json::from_str(l).unwrap();
        let rec = Reader::new("-").parse(l, 1).unwrap();
        assert_eq!(v.timeline.is_some(), FlowKey::of(&rec).is_some(), "{l}");
    }
}

/// `kubectl logs --prefix -l app=...` output: each line behind `[pod/NAME/CONTAINER] `, the
/// pods one after the other, the tracer's stderr lines among them. The same timelines come
/// out as from the files; a record without `node` (an older tracer) is named by its pod.
#[test]
fn kubectl_prefixed_logs_merge_like_the_files() {
    let mut logs = String::new();
    for (pod, text) in [
        ("meridio-tracer-7x2kq", NODE_A),
        ("meridio-tracer-b9wzd", NODE_B),
    ] {
        logs += &format!(
            "[pod/{pod}/tracer] [2026-12-02T05:33:01Z WARN  tracer] a warning on stderr\n"
        );
        for l in text.lines() {
            logs += &format!("[pod/{pod}/tracer] {l}\n");
        }
    }
    let mut r = Reader::new("-");
    let recs: Vec<Rec> = logs
        .lines()
        .enumerate()
        .filter_map(|(i, l)| r.parse(l, i as u64))
        .collect();
    assert_eq!(r.skipped.not_record, 2, "the two stderr lines");
    assert_eq!(r.first_skipped, Some(1));
    let files = read(&[("a", NODE_A), ("b", NODE_B)]);
    assert_eq!(batch(&recs, false), batch(&files, false));
    assert_eq!(batch(&recs, true), batch(&files, true));

    let line = NODE_A
        .lines()
        .find(|l| l.contains(r#""type":"hop""#))
        .unwrap();
    let mut v: Line = serde_json::from_str(line).unwrap();
    v.stamp.node = None;
    let v = serde_json::to_string(&v).unwrap();
    let rec = Reader::new("-")
        .parse(&format!("[pod/meridio-tracer-7x2kq/tracer] {v}"), 1)
        .unwrap();
    assert_eq!(rec.node, "meridio-tracer-7x2kq");
    assert_eq!(
        strip_prefix("[not a prefix] {}"),
        (None, "[not a prefix] {}")
    );
}

/// --follow: records wait for the window, come out in wall-clock order across streams, a
/// record older than one already printed is marked late, and the held set is bounded.
#[test]
fn follow_holds_back_and_orders_across_streams() {
    let recs = read(&[("a", NODE_A), ("b", NODE_B)]);
    let timed: Vec<&Rec> = recs.iter().filter(|r| r.timed).collect();
    let t0 = timed.iter().map(|r| r.key).min().unwrap();
    let mut m = Merger::new(1_000_000_000, true);
    // Node a's stream first, then node b's, as two pipes would deliver them.
    for r in &timed {
        m.push((*r).clone());
    }
    let mut out = Vec::new();
    m.release(t0 + 500_000_000, &mut out).unwrap();
    assert!(out.is_empty(), "nothing is older than the window yet");
    m.release(i128::MAX, &mut out).unwrap();
    let lines: Vec<Merged> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), timed.len());
    let walls: Vec<i64> = lines
        .iter()
        .map(|v| v.line.stamp.wall_ns.unwrap())
        .collect();
    assert!(walls.windows(2).all(|w| w[0] <= w[1]), "wall-clock order");
    assert!(lines.iter().all(|v| v.late.is_none()));
    // A record that comes after newer ones went out is still printed, marked late.
    let mut out = Vec::new();
    m.push(timed[0].clone());
    m.release(i128::MAX, &mut out).unwrap();
    let v: Merged = serde_json::from_slice(&out).unwrap();
    assert_eq!(v.late, Some(true));
    // Bounded: past MAX_HELD the oldest go out early.
    let mut m = Merger::new(i128::MAX / 4, true);
    let mut sink = Vec::new();
    for i in 0..(MAX_HELD + 10) {
        let mut r = timed[i % timed.len()].clone();
        r.key = i as i128;
        m.push(r);
        m.release(0, &mut sink).unwrap();
    }
    assert_eq!(m.held.len(), MAX_HELD);
    assert_eq!(m.early, 10);
}

/// The text view says every bound a node's `evicted` record names, as the tracer's own
/// text does, and that a flow summary is not exact and why.
#[test]
fn overflows_and_inexact_flows_are_said_in_words() {
    let flow = NODE_A
        .lines()
        .find(|l| l.contains(r#""type":"flow""#))
        .unwrap();
    let inexact = flow.replacen(
        r#""type":"flow","#,
        r#""type":"flow","exact":false,"not_exact":["flow_evicted_early","records_lost"],"#,
        1,
    );
    let evicted = r#"{"type":"evicted","count":0,"flows":7,"queued":2,"node":"worker-a"}"#;
    let text = batch(
        &read(&[("a", &format!("{inexact}\n{evicted}\n{flow}\n"))]),
        false,
    );
    let warning = text.lines().find(|l| l.contains("WARNING")).unwrap();
    assert!(
        warning.contains("7 flows summarised early")
            && warning.contains("2 requests in a load balancer's queue forgotten")
            && !warning.contains("per-hop counters"),
        "{warning}"
    );
    let summaries: Vec<&str> = text.lines().filter(|l| l.contains("summary:")).collect();
    assert_eq!(
        summaries
            .iter()
            .filter(|l| l.contains("NOT EXACT: summarised early")
                && l.contains("records were lost"))
            .count(),
        1,
        "{text}"
    );
}
