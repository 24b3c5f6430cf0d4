use super::{fixture::*, *};
use crate::{
    correlate::multipath::HashSource,
    events::Mac,
    netns::kernel_state::{Neighbour, Rule},
};

/// The proxy site, index 0.
fn at(s: &KernelState) -> SiteView<'_> {
    SiteView {
        index: 0,
        label: "proxy-a",
        role: Role::Proxy,
        state: s,
    }
}

fn pkt(ts: u64, ifindex: u32, dir: Dir, egress: bool, eth_dst: Mac) -> Packet {
    let (vip, client) = (ip("20.0.0.1"), ip("169.254.100.150"));
    let (src, sport, dst, dport) = if egress {
        (vip, 4000, client, 35000)
    } else {
        (client, 35000, vip, 4000)
    };
    Packet {
        ts_ns: ts,
        ifindex,
        dir,
        proto: 6,
        src,
        dst,
        sport,
        dport,
        len: 60,
        tcp_flags: 0x10,
        eth_src: [0; 6],
        eth_dst,
        vlan: Default::default(),
        mark: 0,
        hash: 0,
        frag: None,
        snap: None,
    }
}

/// One egress packet through the proxy to frontend `mac` on `port`.
fn egress(t: &mut FlowTable, s: &KernelState, ts: u64, mac: Mac, port: u32) -> Vec<Hop> {
    [
        pkt(ts, TO_TARGET, Dir::Ingress, true, MAC_BR),
        pkt(ts + 1, BR, Dir::Ingress, true, MAC_BR),
        pkt(ts + 2, BR, Dir::Egress, true, mac),
        pkt(ts + 3, port, Dir::Egress, true, mac),
    ]
    .into_iter()
    .filter_map(|p| t.on_packet(p, &at(s)))
    .collect()
}

#[test]
fn both_directions_are_one_flow_and_the_routed_hop_names_the_next_hop() {
    let s = proxy();
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    let h = t
        .on_packet(pkt(100, TO_A, Dir::Ingress, false, MAC_A), &at(&s))
        .unwrap();
    assert_eq!(
        (h.path, h.kind, h.rel_ns),
        (PathDir::Ingress, HopKind::Port, 0)
    );
    t.on_packet(pkt(110, TO_TARGET, Dir::Egress, false, MAC_A), &at(&s));
    let hops = egress(&mut t, &s, 200, MAC_B, TO_B);
    assert_eq!(hops.len(), 4);
    assert!(hops
        .iter()
        .all(|h| h.flow_id == 1 && h.path == PathDir::Egress));
    assert_eq!(hops[2].nexthop, Some(ip("172.16.0.5")));
    assert_eq!(hops[2].rel_ns, 102);
    assert_eq!(hops[0].nexthop, None);

    let [sum] = t.summaries(&[&s]).try_into().unwrap();
    assert_eq!((sum.ingress_packets, sum.egress_packets), (1, 1));
    assert_eq!(sum.ingress_port.as_deref(), Some("conduit-a.-3150"));
    let nh = sum.nexthop().unwrap();
    assert_eq!(
        (nh.ip, nh.port.as_deref()),
        (Some(ip("172.16.0.5")), Some("conduit-a.-6496"))
    );
    assert!(sum.consistent);
    assert_eq!((sum.table, sum.nexthop_in_route), (Some(7), Some(true)));
    assert_eq!(sum.candidates.len(), 2);
}

#[test]
fn a_flow_split_over_two_next_hops_is_not_consistent() {
    let s = proxy();
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    egress(&mut t, &s, 10, MAC_A, TO_A);
    egress(&mut t, &s, 20, MAC_B, TO_B);
    egress(&mut t, &s, 30, MAC_B, TO_B);
    let [sum] = t.summaries(&[&s]).try_into().unwrap();
    assert!(!sum.consistent);
    assert_eq!(sum.nexthop_in_route, None);
    let counts: Vec<(Option<IpAddr>, u64)> =
        sum.nexthops.iter().map(|n| (n.ip, n.packets)).collect();
    assert_eq!(
        counts,
        vec![(Some(ip("172.16.0.3")), 1), (Some(ip("172.16.0.5")), 2)]
    );
}

/// Fragments of one datagram routed to `macs` in turn, at the proxy's routed hop.
fn fragments(t: &mut FlowTable, s: &KernelState, ts: u64, id: u32, macs: &[Mac]) {
    for (i, mac) in macs.iter().enumerate() {
        let mut p = pkt(ts + i as u64, BR, Dir::Egress, true, *mac);
        p.frag = Some(crate::events::Frag {
            id,
            offset: 1480 * i as u16,
            more: i + 1 < macs.len(),
            orphan: false,
        });
        t.on_packet(p, &at(s));
    }
}

#[test]
fn a_datagram_whose_fragments_took_two_next_hops_is_flagged_split() {
    let s = proxy();
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    fragments(&mut t, &s, 10, 0x11, &[MAC_A, MAC_A, MAC_A]);
    fragments(&mut t, &s, 20, 0x12, &[MAC_A, MAC_B, MAC_A]);
    let mut orphan = pkt(30, TO_TARGET, Dir::Ingress, true, MAC_BR);
    orphan.frag = Some(crate::events::Frag {
        id: 0x13,
        offset: 1480,
        more: false,
        orphan: true,
    });
    t.on_packet(orphan, &at(&s));
    let [sum] = t.summaries(&[&s]).try_into().unwrap();
    assert_eq!(
        sum.fragments,
        Some(FragSummary {
            routed: 6,
            datagrams: 2,
            split: 1,
            split_ids: vec![0x12],
            orphans: 1,
        })
    );
    // A flow without fragments has no fragment summary.
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    egress(&mut t, &s, 10, MAC_A, TO_A);
    let [sum] = t.summaries(&[&s]).try_into().unwrap();
    assert_eq!(sum.fragments, None);
}

#[test]
fn a_next_hop_outside_the_vip_table_is_flagged() {
    let mut s = proxy();
    s.neighbours.push(Neighbour {
        ip: ip("172.16.0.9"),
        mac: [9; 6],
        ifindex: BR,
    });
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    egress(&mut t, &s, 10, [9; 6], TO_A);
    let [sum] = t.summaries(&[&s]).try_into().unwrap();
    assert_eq!(sum.nexthop_in_route, Some(false));
}

#[test]
fn unknown_mac_and_foreign_packets() {
    let s = proxy();
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    let hops = egress(&mut t, &s, 10, [7; 6], TO_A);
    assert!(hops[2].nexthop_unknown);
    let mut other = pkt(1, BR, Dir::Ingress, false, MAC_BR);
    other.dst = ip("20.0.0.2");
    assert!(t.on_packet(other, &at(&s)).is_none());
    assert!(t
        .on_packet(pkt(1, 99, Dir::Ingress, false, MAC_BR), &at(&s))
        .is_none());
}

/// The proxy's successful egress lookup in table 7 (the VIP's table in `proxy()`).
fn lookup_table_7() -> FibLookup {
    FibLookup {
        ts_ns: 5,
        table: 7,
        err: 0,
        iif: BR as i32,
        oif: 0,
        mark: 0,
        proto: 6,
        src: ip("20.0.0.1"),
        dst: ip("169.254.100.150"),
        sport: 4000,
        dport: 35000,
        gw: ip("172.16.0.3"),
        dev: "bridge0".into(),
        after_ingress: false,
    }
}

#[test]
fn fib_lookup_gets_the_rule_that_selected_its_table() {
    let s = proxy();
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    let f = lookup_table_7();
    let r = t.on_fib(f.clone(), &at(&s)).unwrap();
    assert_eq!((r.path, r.rule.unwrap().priority), (PathDir::Egress, 32765));
    let r = t
        .on_fib(
            FibLookup {
                table: 255,
                err: -11,
                ..f
            },
            &at(&s),
        )
        .unwrap();
    assert!(r.rule.is_none());
}

/// A successful lookup after the flow's last routed packet (its packet delivered or
/// dropped, never routed out) does not rename the flow's table.
#[test]
fn the_summary_names_the_table_that_routed_a_packet_out() {
    let s = proxy();
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    let f = lookup_table_7();
    t.on_fib(f.clone(), &at(&s));
    egress(&mut t, &s, 10, MAC_A, TO_A);
    t.on_fib(
        FibLookup {
            ts_ns: 20,
            table: 255,
            ..f
        },
        &at(&s),
    );
    let [sum] = t.summaries(&[&s]).try_into().unwrap();
    assert_eq!(sum.table, Some(7));
}

#[test]
fn the_routed_hop_predicts_from_the_skb_l4_hash_under_policy_1() {
    let s = proxy();
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    // Equal weights: hashes below 2^31 (>> 1: below 2^30) select the first next-hop.
    let mut hops = Vec::new();
    for (ts, hash, mac, port) in [
        (10, 0x7fff_0000u32, MAC_A, TO_A),
        (20, 0x8000_0000, MAC_A, TO_A),
    ] {
        let mut ps = [
            pkt(ts, BR, Dir::Ingress, true, MAC_BR),
            pkt(ts + 1, BR, Dir::Egress, true, mac),
            pkt(ts + 2, port, Dir::Egress, true, mac),
        ];
        for p in &mut ps {
            p.hash = hash;
        }
        hops.extend(ps.into_iter().filter_map(|p| t.on_packet(p, &at(&s))));
    }
    let d1 = hops[1].decision.clone().unwrap();
    assert_eq!(
        (d1.table, d1.source.clone()),
        (Some(7), HashSource::SkbL4Hash)
    );
    assert_eq!(d1.predicted, Some(ip("172.16.0.3")));
    assert_eq!(d1.agrees(), Some(true));
    assert!(d1.candidates_changed);
    let d2 = hops[4].decision.clone().unwrap();
    assert_eq!(d2.predicted, Some(ip("172.16.0.5")));
    assert_eq!(d2.agrees(), Some(false));
    assert!(!d2.candidates_changed);
    let [sum] = t.summaries(&[&s]).try_into().unwrap();
    assert_eq!((sum.predictions.agree, sum.predictions.disagree), (1, 1));
}

#[test]
fn policy_3_says_why_it_cannot_predict_and_a_kernel_hash_wins() {
    let mut s = proxy();
    s.hash_policy = [Some(3), Some(3)];
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    let hops = egress(&mut t, &s, 10, MAC_B, TO_B);
    let d = hops[2].decision.clone().unwrap();
    assert_eq!(d.agrees(), None);
    assert!(
        d.source.label().contains("policy 3"),
        "{}",
        d.source.label()
    );

    t.on_hash(HashSample {
        ts_ns: 99,
        hash: 1 << 30,
        src: ip("20.0.0.1"),
        dst: ip("169.254.100.150"),
        sport: 4000,
        dport: 35000,
        proto: 6,
        hook: "fexit",
    });
    let hops = egress(&mut t, &s, 100, MAC_B, TO_B);
    let d = hops[2].decision.clone().unwrap();
    assert_eq!(d.source, HashSource::Kernel { hook: "fexit" });
    assert_eq!(d.agrees(), Some(true));
}

#[test]
fn a_mac_the_fdb_does_not_know_is_flooded_not_given_a_port() {
    let mut s = proxy();
    s.fdb.clear();
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    egress(&mut t, &s, 10, MAC_B, TO_B);
    let [sum] = t.summaries(&[&s]).try_into().unwrap();
    let nh = sum.nexthop().unwrap();
    assert_eq!(
        (nh.ip, nh.port.as_deref(), nh.flooded),
        (Some(ip("172.16.0.5")), None, true)
    );
}

/// A `HOPS` entry as the TC program writes it, for the flow of `pkt`.
fn counted(ifindex: u32, dir: u8, egress: bool, eth_dst: Mac, packets: u64) -> (HopKey, HopCount) {
    use tracer_common::v4_mapped;
    let (vip, client) = (v4_mapped([20, 0, 0, 1]), v4_mapped([169, 254, 100, 150]));
    let (src, sport, dst, dport) = if egress {
        (vip, 4000, client, 35000)
    } else {
        (client, 35000, vip, 4000)
    };
    let key = HopKey {
        src,
        dst,
        sport,
        dport,
        ifindex,
        eth_dst,
        proto: tracer_common::PROTO_TCP,
        dir,
        site: 1,
        _pad: 0,
    };
    let count = HopCount {
        packets,
        bytes: packets * 60,
        first_ns: 1_000,
        last_ns: 9_000,
    };
    (key, count)
}

/// The kernel's counts win over the records: a flow whose records were partly lost
/// (one routed packet recorded, to next-hop A) is summarised with the counted packets,
/// and a next-hop no record showed (B) is named from the state.
#[test]
fn kernel_counts_replace_record_counts_and_name_unrecorded_next_hops() {
    use tracer_common::{DIR_EGRESS, DIR_INGRESS};
    let s = proxy();
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    egress(&mut t, &s, 1_000, MAC_A, TO_A);
    t.absorb(
        &at(&s),
        &[
            counted(TO_A, DIR_INGRESS, false, [0; 6], 7),
            counted(TO_TARGET, DIR_INGRESS, true, [0; 6], 12),
            counted(BR, DIR_EGRESS, true, MAC_A, 10),
            counted(BR, DIR_EGRESS, true, MAC_B, 2),
        ],
    );
    let sum = &t.summaries(&[&s])[0];
    assert!(sum.counted);
    assert_eq!((sum.ingress_packets, sum.egress_packets), (7, 12));
    assert_eq!((sum.ingress_records, sum.egress_records), (0, 1));
    let hops: Vec<(Option<IpAddr>, u64, Option<String>)> = sum
        .nexthops
        .iter()
        .map(|n| (n.ip, n.packets, n.port.clone()))
        .collect();
    assert_eq!(
        hops,
        vec![
            (Some(ip("172.16.0.3")), 10, Some("conduit-a.-3150".into())),
            (Some(ip("172.16.0.5")), 2, Some("conduit-a.-6496".into())),
        ]
    );
    assert!(!sum.consistent);
    // A flow the records never showed comes from its counts alone, and ends as others do.
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    t.absorb(&at(&s), &[counted(BR, DIR_EGRESS, true, MAC_B, 5)]);
    let ended = t.expire(1_000_000_000_000, 1, &[&s]);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].egress_packets, 5);
    assert_eq!(
        t.take_ended_hops().len(),
        1,
        "its counter entry is to be forgotten"
    );
}

#[test]
fn distribution_counts_flows_and_packets_per_next_hop() {
    let s = proxy();
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    for (i, mac) in [MAC_A, MAC_B, MAC_B].into_iter().enumerate() {
        for p in [
            pkt(10 * i as u64, BR, Dir::Egress, true, mac),
            pkt(10 * i as u64 + 1, TO_A, Dir::Egress, true, mac),
        ] {
            let mut p = p;
            p.dport = 40000 + i as u16;
            t.on_packet(p, &at(&s));
        }
    }
    let [d] = t.distribution(&t.summaries(&[&s])).try_into().unwrap();
    assert_eq!(d.flows, 3);
    let got: Vec<(Option<IpAddr>, u64, u64)> = d
        .shares
        .iter()
        .map(|sh| (sh.nexthop, sh.flows, sh.packets))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some(ip("172.16.0.3")), 1, 1),
            (Some(ip("172.16.0.5")), 2, 2)
        ]
    );
}

#[test]
fn closed_and_idle_flows_expire_and_still_count_in_the_distribution() {
    let s = proxy();
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    let mut fin = pkt(1_000, BR, Dir::Egress, true, MAC_A);
    fin.tcp_flags = TCP_FIN;
    t.on_packet(fin, &at(&s));
    // A half-close is not the end: without the other FIN the flow stays.
    assert!(t
        .expire(2_000 + CLOSED_LINGER_NS, 10 * CLOSED_LINGER_NS, &[&s])
        .is_empty());
    let mut fin_in = pkt(1_000, TO_A, Dir::Ingress, false, MAC_BR);
    fin_in.tcp_flags = TCP_FIN;
    t.on_packet(fin_in, &at(&s));
    let mut other = pkt(1_000, BR, Dir::Egress, true, MAC_B);
    other.dport = 40000;
    t.on_packet(other, &at(&s));
    assert!(t
        .expire(1_000 + CLOSED_LINGER_NS, 10 * CLOSED_LINGER_NS, &[&s])
        .is_empty());
    let ended = t.expire(2_000 + CLOSED_LINGER_NS, 10 * CLOSED_LINGER_NS, &[&s]);
    assert_eq!(ended.len(), 1, "the closed flow ends after the linger");
    assert_eq!(t.flows.len(), 1);
    let idle = t.expire(2_000 + 10 * CLOSED_LINGER_NS, 10 * CLOSED_LINGER_NS, &[&s]);
    assert_eq!(
        (idle.len(), t.flows.len()),
        (1, 0),
        "the open flow ends when idle"
    );
    let [d] = t.distribution(&[]).try_into().unwrap();
    assert_eq!(d.flows, 2);
}

#[test]
fn fwmark_rules_are_attributed_by_the_packet_mark() {
    let mut s = proxy();
    s.rules.push(Rule {
        priority: 100,
        src: None,
        dst: None,
        fwmark: Some(0x1389),
        fwmask: None,
        iif: None,
        other_selectors: false,
        table: Some(5001),
        v6: false,
    });
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    let f = FibLookup {
        ts_ns: 5,
        table: 5001,
        err: 0,
        iif: BR as i32,
        oif: 0,
        mark: 0x1389,
        proto: 6,
        src: ip("169.254.100.150"),
        dst: ip("20.0.0.1"),
        sport: 35000,
        dport: 4000,
        gw: ip("172.16.0.6"),
        dev: "conduit".into(),
        after_ingress: true,
    };
    let r = t.on_fib(f.clone(), &at(&s)).unwrap();
    assert_eq!(r.rule.unwrap().selector(), "from all fwmark 0x1389");
    // Without the mark the fwmark rule does not match, and no rule points to 5001.
    assert!(t
        .on_fib(FibLookup { mark: 0, ..f }, &at(&s))
        .unwrap()
        .rule
        .is_none());
}

/// The kernel's counters are read live while records wait out the reorder window: a flow
/// the counters named first (first_ns 1 000 at a later hop) still times its earlier packet
/// at 0 and the rest from it.
#[test]
fn relative_times_are_from_the_earliest_packet_whatever_came_in_first() {
    let s = proxy();
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    t.absorb(
        &at(&s),
        &[counted(TO_A, tracer_common::DIR_INGRESS, false, MAC_BR, 1)],
    );
    let early = t
        .on_packet(pkt(400, TO_A, Dir::Ingress, false, MAC_BR), &at(&s))
        .unwrap();
    let later = t
        .on_packet(pkt(1_400, TO_TARGET, Dir::Egress, false, MAC_BR), &at(&s))
        .unwrap();
    assert_eq!((early.rel_ns, later.rel_ns), (0, 1_000));
}

/// A frontend site (index 1) with its external interface (index 7) and conduit (8).
fn frontend<'a>(s: &'a KernelState, label: &'a str) -> SiteView<'a> {
    SiteView {
        index: 1,
        label,
        role: Role::Frontend,
        state: s,
    }
}

fn frontend_state() -> KernelState {
    KernelState {
        links: [link(7, "ext-vlan0", None), link(8, "conduit-a.-b89d", None)]
            .into_iter()
            .collect(),
        rules: vec![Rule {
            priority: 32765,
            src: None,
            dst: None,
            fwmark: Some(5002),
            fwmask: None,
            iif: None,
            other_selectors: false,
            table: Some(5002),
            v6: false,
        }],
        ..Default::default()
    }
}

/// A frontend's lookup after the load balancer's queue: mark and table 5002, toward target
/// 172.16.0.9, for the flow of `pkt`.
fn lb_lookup(ts_ns: u64) -> FibLookup {
    FibLookup {
        ts_ns,
        table: 5002,
        err: 0,
        iif: 7,
        oif: 0,
        mark: 5002,
        proto: 6,
        src: ip("169.254.100.150"),
        dst: ip("20.0.0.1"),
        sport: 35000,
        dport: 4000,
        gw: ip("172.16.0.9"),
        dev: "conduit-a.-b89d".into(),
        after_ingress: true,
    }
}

/// The load balancer's choice: the frontend's lookup with the mark nfqlb set, after the
/// request entered the frontend, with its fwmark rule, the time in the queue, and the
/// target pod that got the flow in the per-target distribution.
#[test]
fn a_frontends_lookup_after_the_queue_is_the_flows_load_balancer_choice() {
    let fe = frontend_state();
    let tg = KernelState {
        links: [link(9, "nsm-0", None)].into_iter().collect(),
        ..Default::default()
    };
    let target = SiteView {
        index: 2,
        label: "target-a-2",
        role: Role::Target,
        state: &tg,
    };
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    t.on_packet(
        pkt(1_000, 7, Dir::Ingress, false, MAC_BR),
        &frontend(&fe, "lbfe-a"),
    );
    let r = t
        .on_fib(lb_lookup(1_250), &frontend(&fe, "lbfe-a"))
        .unwrap();
    assert_eq!(r.queued_ns, Some(250));
    assert_eq!(r.rule.unwrap().selector(), "from all fwmark 0x138a");
    t.on_packet(pkt(1_300, 9, Dir::Ingress, false, MAC_BR), &target);
    let sums = t.summaries(&[&proxy()]);
    let p = &sums[0].path;
    assert_eq!(p.frontend_in, Some(("lbfe-a".into(), "ext-vlan0".into())));
    assert_eq!(p.target, Some(("target-a-2".into(), "nsm-0".into())));
    let c = &p.lb[0];
    assert_eq!(
        (
            c.mark,
            c.table,
            c.target_ip,
            c.queued_ns,
            c.marked_after_ingress
        ),
        (5002, 5002, ip("172.16.0.9"), Some(250), true)
    );
    let d = t.distribution(&sums);
    assert_eq!(d[0].targets.len(), 1);
    let share = &d[0].targets[0];
    assert_eq!(
        (share.netns.as_str(), share.flows, share.packets, share.mark),
        ("target-a-2", 1, 1, Some(5002))
    );
}

/// Two requests of a flow queued at once and returned together: each lookup is timed from
/// its own request's entry (the queue keeps their order), not from the latest one.
#[test]
fn requests_queued_together_are_each_timed_from_their_own_entry() {
    let fe = frontend_state();
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    for ts in [1_000, 1_100] {
        t.on_packet(
            pkt(ts, 7, Dir::Ingress, false, MAC_BR),
            &frontend(&fe, "lbfe-a"),
        );
    }
    let site = frontend(&fe, "lbfe-a");
    let q: Vec<_> = [5_000, 5_010]
        .into_iter()
        .map(|ts| t.on_fib(lb_lookup(ts), &site).unwrap().queued_ns)
        .collect();
    assert_eq!(q, [Some(4_000), Some(3_910)]);
}

/// A frontend's table beside the flows: a target in the table that got no flow, and flows
/// that went to a mark the table does not hold, are both told; a table naming none of the
/// VIP's marks is another VIP's and left out.
#[test]
fn load_balancer_tables_are_set_beside_the_flows_per_target() {
    use crate::discover::nfqlb::MaglevTable;
    let share = |netns: &str, mark, flows| summary::TargetShare {
        netns: netns.into(),
        target_ip: None,
        mark: Some(mark),
        flows,
        packets: flows,
    };
    let mut d = vec![Distribution {
        vip: ip("20.0.0.1"),
        flows: 5,
        shares: vec![],
        targets: vec![share("target-a-1", 5001, 3), share("target-a-3", 5003, 2)],
        lb_tables: vec![],
        // lbfe-a sent 2 of target-a-1's flows (lbfe-b the third) and none to 5002.
        sent: [
            (("lbfe-a".to_string(), 5001), 2),
            (("lbfe-b".to_string(), 5001), 1),
        ]
        .into_iter()
        .collect(),
    }];
    let table = |name: &str, active| MaglevTable {
        name: name.into(),
        m: 10,
        active,
    };
    add_lb_tables(
        &mut d,
        &[
            ("lbfe-a".into(), table("tshm-a", vec![(5001, 5), (5002, 5)])),
            ("lbfe-a".into(), table("tshm-other", vec![(6001, 10)])),
        ],
    );
    assert_eq!(d[0].lb_tables.len(), 1);
    let t = &d[0].lb_tables[0];
    let slots: Vec<(u32, u32, u64)> = t
        .active
        .iter()
        .map(|s| (s.mark, s.entries, s.flows))
        .collect();
    assert_eq!(slots, [(5001, 5, 2), (5002, 5, 0)]);
    assert_eq!(t.not_in_table, [5003]);
}

#[test]
fn a_flow_reset_by_the_other_side_ends_after_the_linger() {
    let s = proxy();
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    // The client's SYN toward the VIP, the target's SYN-ACK routed out, the client's RST.
    let mut syn = pkt(1_000, TO_A, Dir::Ingress, false, MAC_BR);
    syn.tcp_flags = 0x02;
    t.on_packet(syn, &at(&s));
    let mut syn_ack = pkt(2_000, BR, Dir::Egress, true, MAC_A);
    syn_ack.tcp_flags = 0x12;
    t.on_packet(syn_ack, &at(&s));
    let mut rst = pkt(3_000, TO_A, Dir::Ingress, false, MAC_BR);
    rst.tcp_flags = TCP_RST;
    t.on_packet(rst, &at(&s));
    let idle = 60 * CLOSED_LINGER_NS;
    assert!(t.expire(3_000 + CLOSED_LINGER_NS, idle, &[&s]).is_empty());
    let [ended] = t
        .expire(3_001 + CLOSED_LINGER_NS, idle, &[&s])
        .try_into()
        .unwrap();
    assert_eq!((ended.ingress_packets, ended.egress_packets), (2, 1));
    assert!(t.flows.is_empty());
}

#[test]
fn a_flow_live_while_the_node_lost_records_or_counters_says_it_is_not_exact() {
    let s = proxy();
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    egress(&mut t, &s, 100, MAC_A, TO_A);
    let [before] = t.summaries(&[&s]).try_into().unwrap();
    assert!(before.inexact.is_empty(), "{:?}", before.inexact);
    t.note_loss(Loss {
        records_lost: 3,
        counters_evicted: 0,
    });
    let mut late = pkt(200, BR, Dir::Egress, true, MAC_A);
    late.dport = 40000;
    t.on_packet(late, &at(&s));
    t.note_loss(Loss {
        records_lost: 3,
        counters_evicted: 5,
    });
    let [first, second] = t.summaries(&[&s]).try_into().unwrap();
    assert_eq!(
        first.inexact,
        [
            tracer_records::Inexact::CountersEvicted,
            tracer_records::Inexact::RecordsLost
        ]
    );
    // Seen first after the loss was known: only the eviction since then counts.
    assert_eq!(second.inexact, [tracer_records::Inexact::CountersEvicted]);
}

#[test]
fn what_the_per_flow_bounds_leave_out_is_counted_past_the_flows_end() {
    let s = proxy();
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    // Three samples more than a flow keeps, none taken by a routed hop.
    for i in 0..KERNEL_HASH_SAMPLES as u64 + 3 {
        t.on_hash(HashSample {
            ts_ns: 10 + i,
            hash: 1,
            src: ip("20.0.0.1"),
            dst: ip("169.254.100.150"),
            sport: 4000,
            dport: 35000,
            proto: 6,
            hook: "fexit",
        });
    }
    assert_eq!(t.overflow().hash_samples, 3, "while the flow is live");
    let ended = t.expire(u64::MAX / 2, 1, &[&s]);
    assert_eq!((ended.len(), t.flows.len()), (1, 0));
    assert_eq!(
        t.overflow(),
        Overflow {
            hash_samples: 3,
            ..Default::default()
        },
        "and after it ended"
    );
}

#[test]
fn the_help_names_the_per_flow_bounds() {
    let help = crate::cli::help_text();
    let bounds = format!(
        "{KERNEL_HASH_SAMPLES} hash samples, {FRAG_DATAGRAMS_KEPT} datagrams, {} queued requests, {} load",
        path::QUEUED_KEPT,
        path::LB_CHANGES_KEPT
    );
    assert!(help.contains(&bounds), "{bounds:?} not in --help:\n{help}");
}

#[test]
fn a_summarised_flows_own_counts_do_not_bring_it_back() {
    let s = proxy();
    let mut t = FlowTable::new([ip("20.0.0.1")]);
    // Seen by its records only, summarised before any read of the counters.
    t.on_packet(pkt(9_000, TO_A, Dir::Ingress, false, MAC_BR), &at(&s));
    assert_eq!(t.expire(u64::MAX / 2, 1, &[&s]).len(), 1);
    let _ = t.take_ended_hops();
    // Its counter entry, no newer than its last packet: queued for deletion, no new flow.
    let stale = counted(TO_A, tracer_common::DIR_INGRESS, false, MAC_BR, 1);
    t.absorb(&at(&s), &[stale]);
    assert!(t.flows.is_empty(), "the summarised flow came back");
    assert_eq!(t.take_ended_hops(), [(0, stale.0)]);
    // A packet after its summary is a new flow.
    let (key, mut newer) = stale;
    newer.last_ns = 9_001;
    t.absorb(&at(&s), &[(key, newer)]);
    assert_eq!(t.flows.len(), 1);
    t.counts_read();
}
