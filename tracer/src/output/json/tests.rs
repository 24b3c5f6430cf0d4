//! The JSON records field by field, as the end-to-end tests and users' scripts read
//! them: names, nulls, and number or string forms (a `Value` compares `1` and `1.0` as
//! different, and a missing key as different from a null one).
use std::net::IpAddr;

use serde_json::{json, Value};
use tracer_records::Inexact;

use super::*;
use crate::{
    correlate::flows::{
        Decision, FlowKey, HopKind, LbSlot, LbTable, NextHopUse, PathDir, PathSeen,
        PredictionStats, Share, TargetShare,
    },
    correlate::multipath::HashSource,
    discover::Role,
    events::{Dir, Drop, FibLookup, Packet},
    netns::kernel_state::{NextHop, Rule},
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The lines one call writes, each parsed.
fn lines(write: impl FnOnce(&mut Json<Vec<u8>>)) -> Vec<Value> {
    let mut j = Json::new(Vec::new());
    write(&mut j);
    j.flush();
    let out = String::from_utf8(j.into_inner()).unwrap();
    assert!(out.ends_with('\n'), "every record ends its line: {out:?}");
    out.lines().map(read_back).collect()
}

/// A written line, parsed; it must also read into the typed [`crate::records::Line`]
/// and serialise again to the same JSON, which keeps the reader's types and these in
/// step (a field missing there, or named differently, fails here).
fn read_back(l: &str) -> Value {
    let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    let typed: crate::records::Line =
        serde_json::from_str(l).unwrap_or_else(|e| panic!("the typed reader refuses ({e}): {l}"));
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        v,
        "read back typed: {l}"
    );
    v
}

fn one(write: impl FnOnce(&mut Json<Vec<u8>>)) -> Value {
    let [v] = lines(write).try_into().expect("one line");
    v
}

fn key() -> FlowKey {
    FlowKey {
        proto: 6,
        vip: ip("20.0.0.1"),
        vip_port: 4000,
        client: ip("169.254.100.150"),
        client_port: 35000,
    }
}

fn key6() -> FlowKey {
    FlowKey {
        proto: 17,
        vip: ip("2000::1"),
        vip_port: 5001,
        client: ip("100:100::150"),
        client_port: 35001,
    }
}

fn rule() -> Rule {
    Rule {
        priority: 32765,
        src: Some((ip("20.0.0.1"), 32)),
        dst: None,
        fwmark: None,
        fwmask: None,
        iif: None,
        other_selectors: false,
        table: Some(7),
        v6: false,
    }
}

fn candidates() -> Vec<NextHop> {
    vec![
        NextHop {
            gw: Some(ip("172.16.0.3")),
            ifindex: 2,
            weight: 1,
            alive: true,
        },
        NextHop {
            gw: Some(ip("172.16.0.5")),
            ifindex: 2,
            weight: 2,
            alive: false,
        },
    ]
}

fn candidates_json() -> Value {
    json!([
        {"gw": "172.16.0.3", "ifindex": 2, "weight": 1, "alive": true},
        {"gw": "172.16.0.5", "ifindex": 2, "weight": 2, "alive": false},
    ])
}

fn packet() -> Packet {
    Packet {
        ts_ns: 1102,
        ifindex: 2,
        dir: Dir::Egress,
        proto: 6,
        src: ip("20.0.0.1"),
        dst: ip("169.254.100.150"),
        sport: 4000,
        dport: 35000,
        len: 60,
        tcp_flags: 0x12,
        eth_src: [2, 0, 0, 0, 0, 1],
        eth_dst: [2, 0, 0, 0, 0, 0xb],
        vlan: Default::default(),
        mark: 0x1389,
        hash: 0x8000_0000,
        frag: None,
        snap: None,
    }
}

#[test]
fn a_routed_hop_and_its_decision() {
    let hop = Hop {
        flow: key(),
        flow_id: 1,
        netns: "proxy-a".into(),
        role: Role::Proxy,
        path: PathDir::Egress,
        rel_ns: 102,
        ifname: "bridge0".into(),
        kind: HopKind::L3,
        packet: packet(),
        nexthop: Some(ip("172.16.0.5")),
        nexthop_unknown: false,
        decision: Some(Decision {
            rule: Some(rule()),
            table: Some(7),
            candidates: candidates(),
            candidates_changed: true,
            skb_hash: 0x8000_0000,
            hash: Some(0x4000_0000),
            source: HashSource::SkbL4Hash,
            predicted: Some(ip("172.16.0.5")),
            actual: Some(ip("172.16.0.5")),
        }),
    };
    let got = lines(|j| j.hop(&hop));
    assert_eq!(
        got,
        vec![
            json!({
                "type": "hop", "flow_id": 1, "ts_ns": 1102, "rel_ns": 102,
                "netns": "proxy-a", "role": "proxy", "ifname": "bridge0",
                "dir": "egress", "path": "egress", "proto": "tcp",
                "src": "20.0.0.1", "sport": 4000, "dst": "169.254.100.150", "dport": 35000,
                "vip": "20.0.0.1", "len": 60, "tcp_flags": "SYN,ACK",
                "eth_src": "02:00:00:00:00:01", "eth_dst": "02:00:00:00:00:0b",
                "mark": 5001, "hash": 2147483648u64, "vlan": 0, "vlan_tags": 0, "vlan_pcp": 0, "vlan_tpid": 0,
                "vlan_inner": 0, "vlan_inner_pcp": 0, "frag": null, "routed": true,
                "nexthop": "172.16.0.5",
            }),
            json!({
                "type": "decision", "proto": "tcp", "vip": "20.0.0.1", "vip_port": 4000,
                "client": "169.254.100.150", "client_port": 35000, "flow_id": 1,
                "ts_ns": 1102, "netns": "proxy-a", "ifname": "bridge0",
                "rule": {"priority": 32765, "selector": "from 20.0.0.1", "table": 7},
                "table": 7, "candidates": candidates_json(), "candidates_changed": true,
                "skb_hash": 2147483648u64, "hash": 1073741824,
                "hash_source": "skb L4 hash reused by policy 1",
                "predicted": "172.16.0.5", "actual": "172.16.0.5", "agree": true,
            }),
        ]
    );
}

#[test]
fn a_port_hop_has_no_nexthop_key_and_an_unknowable_decision_has_nulls() {
    let mut p = packet();
    p.proto = 17;
    p.tcp_flags = 0;
    p.src = ip("2000::1");
    p.dst = ip("100:100::150");
    p.dir = Dir::Ingress;
    let hop = Hop {
        flow: key6(),
        flow_id: 2,
        netns: "target-a-1".into(),
        role: Role::Target,
        path: PathDir::Ingress,
        rel_ns: 0,
        ifname: "nsm-0".into(),
        kind: HopKind::Port,
        packet: p,
        nexthop: None,
        nexthop_unknown: true,
        decision: None,
    };
    let v = one(|j| j.hop(&hop));
    assert_eq!(
        v,
        json!({
            "type": "hop", "flow_id": 2, "ts_ns": 1102, "rel_ns": 0,
            "netns": "target-a-1", "role": "target", "ifname": "nsm-0",
            "dir": "ingress", "path": "ingress", "proto": "udp",
            "src": "2000::1", "sport": 4000, "dst": "100:100::150", "dport": 35000,
            "vip": "2000::1", "len": 60, "tcp_flags": "",
            "eth_src": "02:00:00:00:00:01", "eth_dst": "02:00:00:00:00:0b",
            "mark": 5001, "hash": 2147483648u64, "vlan": 0, "vlan_tags": 0, "vlan_pcp": 0, "vlan_tpid": 0,
                "vlan_inner": 0, "vlan_inner_pcp": 0, "frag": null, "routed": false,
        })
    );

    let unknown = Hop {
        decision: Some(Decision {
            rule: None,
            table: None,
            candidates: vec![],
            candidates_changed: false,
            skb_hash: 0,
            hash: None,
            source: HashSource::Unknown {
                why: "no hash".into(),
            },
            predicted: None,
            actual: None,
        }),
        ..hop
    };
    let [hop, decision] = lines(|j| j.hop(&unknown)).try_into().unwrap();
    assert_eq!(hop["routed"], json!(true));
    assert!(hop.get("nexthop").is_none(), "{hop}");
    assert_eq!(
        decision,
        json!({
            "type": "decision", "proto": "udp", "vip": "2000::1", "vip_port": 5001,
            "client": "100:100::150", "client_port": 35001, "flow_id": 2,
            "ts_ns": 1102, "netns": "target-a-1", "ifname": "nsm-0",
            "rule": null, "table": null, "candidates": [], "candidates_changed": false,
            "skb_hash": 0, "hash": null, "hash_source": "unknown: no hash",
            "predicted": null, "actual": null, "agree": null,
        })
    );
}

fn lookup() -> FibLookup {
    FibLookup {
        ts_ns: 1101,
        table: 7,
        err: 0,
        iif: 2,
        oif: 3,
        proto: 6,
        src: ip("20.0.0.1"),
        dst: ip("169.254.100.150"),
        sport: 4000,
        dport: 35000,
        gw: ip("172.16.0.3"),
        dev: "bridge0".into(),
        mark: 9,
        after_ingress: false,
    }
}

#[test]
fn route_records_with_and_without_a_rule() {
    let r = RouteHop {
        flow: key(),
        flow_id: 1,
        netns: "proxy-a".into(),
        role: Role::Proxy,
        path: PathDir::Egress,
        rel_ns: 101,
        lookup: lookup(),
        rule: Some(rule()),
        queued_ns: None,
    };
    assert_eq!(
        one(|j| j.route(&r)),
        json!({
            "type": "route", "proto": "tcp", "vip": "20.0.0.1", "vip_port": 4000,
            "client": "169.254.100.150", "client_port": 35000, "flow_id": 1,
            "ts_ns": 1101, "rel_ns": 101, "netns": "proxy-a", "role": "proxy",
            "path": "egress", "table": 7, "gw": "172.16.0.3", "dev": "bridge0",
            "err": 0, "iif": 2,
            "rule": {"priority": 32765, "selector": "from 20.0.0.1", "table": 7},
            "mark": 9, "after_ingress": false,
        })
    );
    // A frontend's lookup after the load balancer's queue says how long it waited.
    let lb = RouteHop {
        role: Role::Frontend,
        path: PathDir::Ingress,
        lookup: FibLookup {
            mark: 0x138a,
            after_ingress: true,
            ..lookup()
        },
        queued_ns: Some(210_000),
        ..r.clone()
    };
    let v = one(|j| j.route(&lb));
    assert_eq!(
        (&v["mark"], &v["after_ingress"], &v["queued_ns"]),
        (&json!(0x138a), &json!(true), &json!(210_000))
    );
    let miss = RouteHop {
        lookup: FibLookup {
            table: 255,
            err: -11,
            iif: -1,
            gw: ip("0.0.0.0"),
            dev: String::new(),
            ..lookup()
        },
        rule: None,
        ..r
    };
    let v = one(|j| j.route(&miss));
    assert!(v.get("rule").is_none(), "{v}");
    assert_eq!(
        (&v["table"], &v["err"], &v["iif"], &v["gw"], &v["dev"]),
        (
            &json!(255),
            &json!(-11),
            &json!(-1),
            &json!("0.0.0.0"),
            &json!("")
        )
    );
}

#[test]
fn drop_lost_and_evicted_records() {
    let d = DropHop {
        flow: key(),
        flow_id: 3,
        netns: "proxy-a".into(),
        role: Role::Proxy,
        path: PathDir::Ingress,
        rel_ns: 7,
        ifname: "bridge0".into(),
        reason: "IP_INNOROUTES".into(),
        location: "ip_route_input_slow+0x1a2".into(),
        drop: Drop {
            ts_ns: 9,
            ifindex: 2,
            reason: 5,
            location: 0xffff_ffff_8100_0000,
            proto: 6,
            src: ip("169.254.100.150"),
            dst: ip("20.0.0.1"),
            sport: 35000,
            dport: 4000,
            mark: 0x1389,
        },
    };
    assert_eq!(
        one(|j| j.dropped(&d)),
        json!({
            "type": "drop", "proto": "tcp", "vip": "20.0.0.1", "vip_port": 4000,
            "client": "169.254.100.150", "client_port": 35000, "flow_id": 3,
            "ts_ns": 9, "rel_ns": 7, "netns": "proxy-a", "role": "proxy",
            "ifname": "bridge0", "path": "ingress", "reason": "IP_INNOROUTES",
            "location": "ip_route_input_slow+0x1a2", "mark": 5001,
        })
    );
    assert_eq!(
        one(|j| j.lost(3, 9)),
        json!({"type": "lost", "count": 3, "total": 9})
    );
    assert_eq!(
        one(|j| j.evicted(4)),
        json!({"type": "evicted", "count": 4})
    );
    // Every bound's overflow on the one record, each absent when 0.
    let o = crate::correlate::flows::Overflow {
        hop_counters: 4,
        flows: 30_000,
        hash_samples: 2,
        ..Default::default()
    };
    assert_eq!(
        one(|j| j.overflowed(&o)),
        json!({"type": "evicted", "count": 4, "flows": 30000, "hash_samples": 2})
    );
}

#[test]
fn stamped_records_carry_node_and_wall_clock_next_to_ts_ns() {
    let mut j = Json::stamped(
        Vec::new(),
        Stamp::fixed("worker-1", 1_796_292_671_000_000_000),
    );
    let c = Change::Attached {
        added: true,
        ifname: "conduit-a.-7777".into(),
    };
    j.change(1_123_456_789, "proxy-a", &c);
    j.lost(3, 5);
    j.flush();
    let out = String::from_utf8(j.into_inner()).unwrap();
    let v: Vec<Value> = out.lines().map(read_back).collect();
    assert!(
        out.starts_with(r#"{"type":"change""#),
        "type stays first: {out}"
    );
    assert_eq!(v[0]["ts_ns"], 1_123_456_789u64);
    assert_eq!(v[0]["node"], "worker-1");
    assert_eq!(v[0]["wall_ns"], 1_796_292_672_123_456_789u64);
    assert_eq!(v[0]["time"], "2026-12-03T10:11:12.123456789Z");
    assert_eq!(v[0]["netns"], "proxy-a", "the record's own fields stay");
    // No kernel time, no wall time; the node all the same.
    assert_eq!(
        v[1],
        json!({"type": "lost", "count": 3, "total": 5, "node": "worker-1"})
    );
}

#[test]
fn ready_record() {
    let r = Ready {
        netns: "proxy-a".into(),
        role: "proxy",
        vips: vec![ip("20.0.0.1"), ip("2000::1")],
        vips_from: "--vip",
        client_port: None,
        interfaces: vec!["bridge0".into(), "conduit-a.-3150".into()],
        hooks: vec!["tc:bridge0/ingress (tcx)".into()],
        refused: vec![("fexit:fib_multipath_hash".into(), "EPERM".into())],
        unavailable: vec![("kprobe:fib_select_path".into(), "no kprobes".into())],
        notes: vec![],
        records: "first 8 per hop".into(),
    };
    assert_eq!(
        one(|j| j.ready(&r)),
        json!({
            "type": "ready", "netns": "proxy-a", "role": "proxy",
            "vips": ["20.0.0.1", "2000::1"], "vips_from": "--vip", "client_port": null,
            "interfaces": ["bridge0", "conduit-a.-3150"],
            "hooks": ["tc:bridge0/ingress (tcx)"],
            "refused": [{"hook": "fexit:fib_multipath_hash", "reason": "EPERM"}],
            "unavailable": [{"hook": "kprobe:fib_select_path", "reason": "no kprobes"}],
            "notes": [], "records": "first 8 per hop",
        })
    );
    let r = Ready {
        client_port: Some(35000),
        notes: vec!["removed a leftover filter".into()],
        ..r
    };
    let v = one(|j| j.ready(&r));
    assert_eq!(
        (&v["client_port"], &v["notes"]),
        (&json!(35000), &json!(["removed a leftover filter"]))
    );
}

#[test]
fn distribution_record() {
    let d = Distribution {
        vip: ip("20.0.0.1"),
        flows: 3,
        shares: vec![
            Share {
                nexthop: Some(ip("172.16.0.3")),
                ifname: Some("conduit-a.-3150".into()),
                flows: 1,
                packets: 1,
            },
            Share {
                nexthop: None,
                ifname: None,
                flows: 2,
                packets: 5,
            },
        ],
        targets: vec![TargetShare {
            netns: "target-a-2".into(),
            target_ip: Some(ip("172.16.0.9")),
            mark: Some(5002),
            flows: 3,
            packets: 12,
        }],
        lb_tables: vec![LbTable {
            netns: "lbfe-a".into(),
            name: "tshm-stream-a".into(),
            m: 10000,
            active: vec![LbSlot {
                mark: 5002,
                entries: 3334,
                flows: 3,
            }],
            not_in_table: vec![5001],
        }],
        sent: Default::default(),
    };
    assert_eq!(
        one(|j| j.distribution(&d)),
        json!({
            "type": "distribution", "vip": "20.0.0.1", "flows": 3,
            "nexthops": [
                {"nexthop": "172.16.0.3", "ifname": "conduit-a.-3150", "flows": 1, "packets": 1},
                {"nexthop": null, "ifname": null, "flows": 2, "packets": 5},
            ],
            "targets": [{"netns": "target-a-2", "target_ip": "172.16.0.9", "mark": 5002,
                         "flows": 3, "packets": 12}],
            "lb_tables": [{"netns": "lbfe-a", "name": "tshm-stream-a", "m": 10000,
                           "active": [{"mark": 5002, "entries": 3334, "flows": 3}],
                           "not_in_table": [5001]}],
        })
    );
}

#[test]
fn change_records() {
    let mark_rule = Rule {
        priority: 100,
        src: None,
        fwmark: Some(0x1389),
        table: Some(5001),
        ..rule()
    };
    let changes = [
        Change::Route {
            table: 7,
            v6: false,
            before: candidates(),
            after: vec![],
        },
        Change::Route {
            table: 8,
            v6: true,
            before: vec![],
            after: vec![NextHop {
                gw: None,
                ifindex: 4,
                weight: 1,
                alive: true,
            }],
        },
        Change::Rule {
            added: true,
            rule: mark_rule,
        },
        Change::Link {
            added: false,
            name: "conduit-a.-6496".into(),
        },
        Change::Neighbour {
            ip: ip("172.16.0.5"),
            before: None,
            after: Some([2, 0, 0, 0, 0, 0xb]),
        },
        Change::Attached {
            added: true,
            ifname: "proxy.cond-1b2c".into(),
        },
        Change::Netns {
            added: false,
            role: "frontend",
            name: "lbfe-b".into(),
        },
    ];
    let got = lines(|j| {
        for c in &changes {
            j.change(42, "proxy-a", c);
        }
    });
    let at = |mut v: Value, text: &str| {
        v["type"] = json!("change");
        v["ts_ns"] = json!(42);
        v["netns"] = json!("proxy-a");
        v["text"] = json!(text);
        v
    };
    assert_eq!(
        got,
        vec![
            at(
                json!({"what": "route", "table": 7, "family": "ipv4",
                       "before": candidates_json(), "after": []}),
                "table 7 next-hops [172.16.0.3, 172.16.0.5 weight 2 dead] -> []"
            ),
            at(
                json!({"what": "route", "table": 8, "family": "ipv6", "before": [],
                       "after": [{"gw": null, "ifindex": 4, "weight": 1, "alive": true}]}),
                "table 8 next-hops [] -> [?]"
            ),
            at(
                json!({"what": "rule", "added": true, "rule": {
                    "priority": 100, "selector": "from all fwmark 0x1389", "table": 5001}}),
                "rule 100 `from all fwmark 0x1389` lookup 5001 added"
            ),
            at(
                json!({"what": "link", "added": false, "ifname": "conduit-a.-6496"}),
                "interface conduit-a.-6496 removed"
            ),
            at(
                json!({"what": "neighbour", "ip": "172.16.0.5", "before": null,
                       "after": "02:00:00:00:00:0b"}),
                "next-hop 172.16.0.5 MAC none -> 02:00:00:00:00:0b"
            ),
            at(
                json!({"what": "attached", "added": true, "ifname": "proxy.cond-1b2c"}),
                "interface proxy.cond-1b2c appeared: attached"
            ),
            at(
                json!({"what": "netns", "added": false, "role": "frontend", "name": "lbfe-b"}),
                "frontend lbfe-b is gone: detached"
            ),
        ]
    );
}

/// A flow that entered by one frontend and left by the other, through target 2.
fn whole_path() -> PathSeen {
    let mut p = PathSeen::default();
    let fe = |label: &str, path, dir, ts| (label.to_string(), path, dir, ts);
    for (label, path, dir, ts) in [
        fe("lbfe-a", PathDir::Ingress, Dir::Ingress, 1000),
        fe("lbfe-b", PathDir::Egress, Dir::Egress, 1500),
    ] {
        let nexthop = (dir == Dir::Egress).then(|| ip("169.254.100.150"));
        p.on_hop(
            Role::Frontend,
            &label,
            "ext-vlan0",
            path,
            HopKind::L3,
            dir,
            ts,
            nexthop,
        );
    }
    p.on_hop(
        Role::Proxy,
        "proxy-a",
        "proxy.cond-0a85",
        PathDir::Ingress,
        HopKind::Port,
        Dir::Egress,
        1300,
        None,
    );
    p.on_counted(
        Role::Target,
        "target-a-2",
        "nsm-0",
        PathDir::Ingress,
        Dir::Ingress,
        6,
    );
    let queued = p.on_lookup(
        "lbfe-a",
        &FibLookup {
            ts_ns: 1200,
            table: 5002,
            mark: 5002,
            after_ingress: true,
            gw: ip("172.16.0.9"),
            dev: "conduit-a.-b89d".into(),
            ..lookup()
        },
        Some(rule()),
    );
    assert_eq!(queued, Some(200));
    p
}

#[test]
fn flow_summaries_one_next_hop_and_several() {
    let s = FlowSummary {
        flow: key(),
        flow_id: 1,
        proxy_site: Some(0),
        ingress_port: Some("conduit-a.-3150".into()),
        ingress_packets: 6,
        egress_packets: 4,
        counted: true,
        ingress_records: 5,
        egress_records: 3,
        nexthops: vec![NextHopUse {
            ip: Some(ip("172.16.0.5")),
            mac: [2, 0, 0, 0, 0, 0xb],
            port: Some("conduit-a.-6496".into()),
            flooded: false,
            packets: 4,
            first_rel_ns: 120,
        }],
        consistent: true,
        rule: Some(rule()),
        table: Some(7),
        candidates: candidates(),
        nexthop_in_route: Some(true),
        predictions: PredictionStats {
            agree: 3,
            disagree: 1,
            unknown: 0,
            source: Some("skb L4 hash reused by policy 1".into()),
        },
        drops: 2,
        last_drop: Some((
            "bridge0".into(),
            "IP_RPFILTER".into(),
            "fib_validate_source+0x10".into(),
        )),
        fragments: None,
        path: whole_path(),
        inexact: vec![],
    };
    assert_eq!(
        one(|j| j.summary(&s, "proxy-a")),
        json!({
            "type": "flow", "proto": "tcp", "vip": "20.0.0.1", "vip_port": 4000,
            "client": "169.254.100.150", "client_port": 35000, "flow_id": 1,
            "netns": "proxy-a",
            "egress": {
                "nexthop": "172.16.0.5", "ifname": "conduit-a.-6496", "flooded": false,
                "packets": 4, "records": 3, "consistent": true, "nexthop_in_route": true,
                "nexthops": [{"nexthop": "172.16.0.5", "eth_dst": "02:00:00:00:00:0b",
                              "ifname": "conduit-a.-6496", "flooded": false,
                              "packets": 4, "first_rel_ns": 120}],
                "rule": {"priority": 32765, "selector": "from 20.0.0.1", "table": 7},
                "table": 7, "candidates": candidates_json(),
            },
            "ingress": {"ifname": "conduit-a.-3150", "packets": 6, "records": 5},
            "counted": true,
            "drops": {"packets": 2, "last": {"ifname": "bridge0", "reason": "IP_RPFILTER",
                                            "location": "fib_validate_source+0x10"}},
            "prediction": {"agree": 3, "disagree": 1, "unknown": 0,
                           "hash_source": "skb L4 hash reused by policy 1"},
            "fragments": null,
            "path": {
                "frontend_in": {"netns": "lbfe-a", "ifname": "ext-vlan0"},
                "lb": [{"netns": "lbfe-a", "ts_ns": 1200, "mark": 5002,
                        "rule": {"priority": 32765, "selector": "from 20.0.0.1", "table": 7},
                        "table": 5002, "target_ip": "172.16.0.9",
                        "dev": "conduit-a.-b89d", "queued_ns": 200,
                        "marked_after_ingress": true}],
                "proxy_to_target": {"netns": "proxy-a", "ifname": "proxy.cond-0a85"},
                "target": {"netns": "target-a-2", "ifname": "nsm-0", "packets": 6},
                "frontend_out": {"netns": "lbfe-b", "ifname": "ext-vlan0",
                                 "nexthop": "169.254.100.150"},
                "asymmetric": true,
            },
        })
    );

    let flooded = NextHopUse {
        ip: None,
        mac: [2, 0, 0, 0, 0, 0xc],
        port: None,
        flooded: true,
        packets: 1,
        first_rel_ns: 300,
    };
    let split = FlowSummary {
        flow: key6(),
        ingress_port: None,
        ingress_packets: 0,
        counted: false,
        ingress_records: 0,
        egress_records: 5,
        nexthops: vec![s.nexthops[0].clone(), flooded],
        consistent: false,
        rule: None,
        table: None,
        candidates: vec![],
        nexthop_in_route: None,
        predictions: PredictionStats::default(),
        drops: 0,
        last_drop: None,
        fragments: Some(crate::correlate::flows::FragSummary {
            routed: 6,
            datagrams: 2,
            split: 1,
            split_ids: vec![0x1234],
            orphans: 1,
        }),
        inexact: vec![Inexact::CountersEvicted, Inexact::FlowEvictedEarly],
        ..s
    };
    let v = one(|j| j.summary(&split, ""));
    assert_eq!(v["netns"], json!(""));
    assert_eq!(
        v["egress"],
        json!({
            "nexthop": null, "ifname": null, "flooded": false, "packets": 4,
            "records": 5, "consistent": false, "nexthop_in_route": null,
            "nexthops": [
                {"nexthop": "172.16.0.5", "eth_dst": "02:00:00:00:00:0b",
                 "ifname": "conduit-a.-6496", "flooded": false, "packets": 4,
                 "first_rel_ns": 120},
                {"nexthop": null, "eth_dst": "02:00:00:00:00:0c", "ifname": null,
                 "flooded": true, "packets": 1, "first_rel_ns": 300},
            ],
            "rule": null, "table": null, "candidates": [],
        })
    );
    assert_eq!(
        v["ingress"],
        json!({"ifname": null, "packets": 0, "records": 0})
    );
    assert_eq!(v["counted"], json!(false));
    assert_eq!(
        v["fragments"],
        json!({"routed": 6, "datagrams": 2, "split": 1, "split_ids": [0x1234], "orphans": 1})
    );
    assert_eq!(v["drops"], json!({"packets": 0, "last": null}));
    assert_eq!(
        v["prediction"],
        json!({"agree": 0, "disagree": 0, "unknown": 0, "hash_source": null})
    );
    assert_eq!(
        (&v["proto"], &v["vip"], &v["client"]),
        (&json!("udp"), &json!("2000::1"), &json!("100:100::150"))
    );
    // An exact flow's line has neither field (above); this one says why it is not.
    assert_eq!(
        (&v["exact"], &v["not_exact"]),
        (
            &json!(false),
            &json!(["counters_evicted", "flow_evicted_early"])
        )
    );
}
