//! End-to-end tests of the routing explanation (rule, table, candidates, hash and
//! prediction, distribution, next-hop changes, drops) against the namespace lab, as root,
//! with the real eBPF programs. Ground truth: the lab's configuration, nftables counters in
//! the frontends, and what the client sees.
mod support;

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use lab::{netns::in_netns, Lab, LabSpec, Role, VIP4, VIP6, VIP_PORT};
use support::{
    add_udp_counter, ip, read_udp_counter, root_or_skip, Finished, ThirdFrontend, Tracer,
};
use tracer::records::{self, Record, What};

const GATEWAY4: &str = "169.254.100.150";

fn lab_up(prefix: &str, table_v4: u32, table_v6: u32, hash_policy: u8) -> Lab {
    Lab::up(LabSpec {
        prefix: prefix.into(),
        table_v4,
        table_v6,
        hash_policy,
        ..Default::default()
    })
    .expect("lab up")
}

/// A route change record's table and next-hops before and after.
fn route_change<'a>(
    r: &'a Record<'a>,
) -> Option<(u32, &'a [records::Candidate], &'a [records::Candidate])> {
    match r {
        Record::Change(records::Change {
            what:
                What::Route {
                    table,
                    before,
                    after,
                    ..
                },
            ..
        }) => Some((*table, before, after)),
        _ => None,
    }
}

/// A neighbour change record's address and MACs before and after.
fn neighbour_change<'a>(r: &'a Record<'a>) -> Option<(IpAddr, Option<&'a str>, Option<&'a str>)> {
    match r {
        Record::Change(records::Change {
            what: What::Neighbour { ip, before, after },
            ..
        }) => Some((*ip, before.as_deref(), after.as_deref())),
        _ => None,
    }
}

/// The decisions of the test's TCP flows to `vip`: the proxy's own traffic to the VIP (an
/// IPv6 neighbour solicitation, seen on 6.1) is a flow of the VIP too.
fn decisions(f: &Finished, vip: IpAddr) -> Vec<&records::Decision<'static>> {
    f.decisions()
        .into_iter()
        .filter(|d| d.flow.vip == vip && d.flow.proto == "tcp")
        .collect()
}

/// The rule and table the tracer attributes are the lab's, with table numbers other than
/// the default lab's; the candidates are the route's two next-hops.
#[test]
fn rule_table_and_candidates_are_the_configured_ones() {
    let Some(_serial) = root_or_skip("rule_table_and_candidates_are_the_configured_ones") else {
        return;
    };
    let lab = lab_up("r1-", 41, 97, 1);
    let _listener = lab.listen().unwrap();
    let proxy = lab.ns(Role::Proxy);
    let tracer = Tracer::start(&["--netns", &proxy, "--vip", "20.0.0.1", "--vip", "2000::1"]);
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        lab.connect(vip, 35401, b"r\n").unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    for (vip, table) in [(IpAddr::V4(VIP4), 41), (IpAddr::V6(VIP6), 97)] {
        let ds = decisions(&f, vip);
        assert!(!ds.is_empty(), "decisions for {vip}");
        for d in ds {
            assert_eq!(d.table, Some(table), "{d:?}");
            let rule = d.rule.as_ref().expect("a rule selected the table");
            assert_eq!(rule.selector, format!("from {vip}"), "{d:?}");
            assert_eq!(rule.priority, 32765, "{d:?}");
            let gws: Vec<Option<IpAddr>> = d.candidates.iter().map(|c| c.gw).collect();
            let want: Vec<Option<IpAddr>> = [Role::FrontendA, Role::FrontendB]
                .iter()
                .map(|r| Some(lab.frontend_conduit_ip(*r, vip.is_ipv6())))
                .collect();
            assert_eq!(gws, want, "{d:?}");
        }
        let flow = f
            .flows()
            .into_iter()
            .find(|s| s.flow.vip == vip && s.flow.proto == "tcp" && s.flow.client_port == 35401)
            .unwrap_or_else(|| panic!("no summary of the TCP flow to {vip}: {:#?}", f.flows()));
        let routes: Vec<&records::Route> = f
            .routes()
            .into_iter()
            .filter(|r| r.flow_id == flow.flow_id)
            .collect();
        assert_eq!(
            flow.egress.table,
            Some(table),
            "{flow:?}\nroutes: {routes:#?}"
        );
        assert_eq!(
            flow.egress.rule.as_ref().map(|r| r.selector.as_ref()),
            Some(format!("from {vip}").as_str())
        );
    }
}

/// Hash policy 1 over veth: the skb carries the sender's L4 hash and the kernel reuses it,
/// so the tracer's prediction must equal the next-hop taken for every routed packet of 50
/// flows per family; and the next-hop taken is the frontend that counted the replies.
#[test]
fn prediction_equals_the_next_hop_taken_under_policy_1() {
    let Some(_serial) = root_or_skip("prediction_equals_the_next_hop_taken_under_policy_1") else {
        return;
    };
    let lab = lab_up("r2-", 1, 2, 1);
    let _listener = lab.listen().unwrap();
    let proxy = lab.ns(Role::Proxy);
    let ports: Vec<u16> = (35500..35550).collect();
    for &port in &ports {
        for fe in [Role::FrontendA, Role::FrontendB] {
            lab.add_frontend_counter(fe, &format!("p{port}"), IpAddr::V4(VIP4), port)
                .unwrap();
        }
    }
    let tracer = Tracer::start(&["--netns", &proxy, "--vip", "20.0.0.1", "--vip", "2000::1"]);
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        for &port in &ports {
            lab.connect(vip, port, b"p\n").unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    let mut used = std::collections::HashSet::new();
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        let ds = decisions(&f, vip);
        let flows: std::collections::HashSet<u16> = ds.iter().map(|d| d.flow.client_port).collect();
        assert_eq!(
            flows.len(),
            ports.len(),
            "every flow of {vip} has decisions"
        );
        for d in &ds {
            assert_eq!(d.hash_source, "skb L4 hash reused by policy 1", "{d:?}");
            assert_eq!(d.agree, Some(true), "prediction differs: {d:?}");
            assert_eq!(d.predicted, d.actual, "{d:?}");
            used.insert(d.actual.expect("the next-hop taken is known"));
        }
    }
    // The actual next-hop is the truth: check it against the frontends for IPv4.
    for &port in &ports {
        let a = lab
            .frontend_counter(Role::FrontendA, &format!("p{port}"))
            .unwrap();
        let b = lab
            .frontend_counter(Role::FrontendB, &format!("p{port}"))
            .unwrap();
        let fe = match (a > 0, b > 0) {
            (true, false) => Role::FrontendA,
            (false, true) => Role::FrontendB,
            other => panic!("port {port}: replies at A {a}, B {b} ({other:?})"),
        };
        let want = lab.frontend_conduit_ip(fe, false);
        for d in decisions(&f, IpAddr::V4(VIP4)) {
            if d.flow.client_port == port {
                assert_eq!(d.actual, Some(want), "{d:?}");
            }
        }
    }
    assert_eq!(
        used.len(),
        4,
        "both frontends used in both families: {used:?}"
    );
    let summary_agree: u64 = f.flows().iter().map(|s| s.prediction.agree).sum();
    assert_eq!(summary_agree, f.decisions().len() as u64);
}

/// Policy 3 (custom fields) hashes with a per-boot key: the tracer must say it cannot
/// predict, never guess.
#[test]
fn policy_3_says_why_it_cannot_predict() {
    let Some(_serial) = root_or_skip("policy_3_says_why_it_cannot_predict") else {
        return;
    };
    let lab = lab_up("r3-", 1, 2, 3);
    let _listener = lab.listen().unwrap();
    let proxy = lab.ns(Role::Proxy);
    let tracer = Tracer::start(&["--netns", &proxy, "--vip", "20.0.0.1"]);
    for port in 35600..35610 {
        lab.connect(IpAddr::V4(VIP4), port, b"q\n").unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let f = tracer.stop(libc::SIGINT);
    let ds = decisions(&f, IpAddr::V4(VIP4));
    assert!(ds.len() >= 10);
    for d in ds {
        assert_eq!(d.agree, None, "{d:?}");
        assert_eq!(d.predicted, None, "{d:?}");
        let why = &d.hash_source;
        assert!(
            why.contains("policy 3") && why.contains("per-boot key"),
            "{why}"
        );
        assert!(
            d.actual.is_some(),
            "the actual next-hop is still known: {d:?}"
        );
    }
}

/// Three frontends with weights 1, 2, 1 and 200 UDP flows from the VIP: the distribution
/// the tracer reports is what the three frontends really received, flow for flow.
#[test]
fn weighted_distribution_matches_what_the_frontends_received() {
    let Some(_serial) = root_or_skip("weighted_distribution_matches_what_the_frontends_received")
    else {
        return;
    };
    let lab = lab_up("r4-", 1, 2, 1);
    let third = ThirdFrontend::add(&lab);
    add_udp_counter(&lab.ns(Role::FrontendA));
    add_udp_counter(&lab.ns(Role::FrontendB));
    let proxy = lab.ns(Role::Proxy);
    let tracer = Tracer::start(&["--netns", &proxy, "--vip", "20.0.0.1"]);
    // 200 flows: one datagram each from 20.0.0.1:4000 to the gateway's ports 41000..41200.
    in_netns(&lab.ns(Role::Target), || {
        let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(VIP4), VIP_PORT)).unwrap();
        for port in 41000..41200u16 {
            sock.send_to(b"d", (GATEWAY4, port)).unwrap();
        }
    })
    .unwrap();
    // Every flow's routed packet is processed before the tracer is stopped.
    let routed = |tracer: &Tracer| {
        tracer.wait_for(
            0,
            Duration::from_secs(10),
            |r| matches!(r, Record::Decision(d) if d.flow.client_port == 41199),
        )
    };
    let last_seen = routed(&tracer).is_some();
    std::thread::sleep(Duration::from_millis(300));
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    let dist = f.distributions();
    let Some(d) = dist.iter().find(|d| d.vip == IpAddr::V4(VIP4)) else {
        let kinds: std::collections::BTreeMap<String, usize> =
            f.lines.iter().fold(Default::default(), |mut m, r| {
                *m.entry(r.record.type_name().to_string()).or_default() += 1;
                m
            });
        panic!(
            "no distribution record (last flow routed: {last_seen}); records {kinds:?}; first drop {:?}; stderr {}",
            f.of_type("drop").first(),
            f.stderr
        );
    };
    assert_eq!(d.flows, 200, "{d:?}");
    let reported = |gw: &str| d.flows_via(gw.parse().unwrap());
    let truth = [
        ("172.16.0.3", read_udp_counter(&lab.ns(Role::FrontendA))),
        ("172.16.0.5", read_udp_counter(&lab.ns(Role::FrontendB))),
        ("172.16.0.9", third.received()),
    ];
    eprintln!("weights 1,2,1 over 200 flows, frontends received: {truth:?}");
    for (gw, got) in truth {
        assert_eq!(reported(gw), got, "{gw}: tracer vs frontend counter; {d:?}");
        assert!(got > 0, "{gw} received nothing: weights not in effect?");
    }
}

/// Opens a TCP connection from the gateway with a fixed client port (the socket stays in
/// the gateway's netns after the thread that made it is gone).
fn open(lab: &Lab, vip: IpAddr, client_port: u16) -> TcpStream {
    in_netns(&lab.ns(Role::Gateway), || {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(SocketAddr::new(vip, 0)),
            socket2::Type::STREAM,
            None,
        )?;
        sock.set_reuse_address(true)?;
        let any: IpAddr = if vip.is_ipv6() {
            "::".parse().unwrap()
        } else {
            "0.0.0.0".parse().unwrap()
        };
        sock.bind(&SocketAddr::new(any, client_port).into())?;
        sock.connect_timeout(
            &SocketAddr::new(vip, VIP_PORT).into(),
            Duration::from_secs(3),
        )?;
        Ok::<TcpStream, std::io::Error>(sock.into())
    })
    .unwrap()
    .unwrap()
}

fn ping_pong(s: &mut TcpStream) {
    s.write_all(b"k\n").unwrap();
    let mut b = [0u8; 2];
    s.read_exact(&mut b).unwrap();
}

/// A next-hop removed under a long-lived flow: the change is printed within a second, the
/// flow moves to the remaining next-hop and is flagged; putting it back is printed too.
#[test]
fn next_hop_removal_is_reported_and_the_flow_flagged_as_moved() {
    let Some(_serial) = root_or_skip("next_hop_removal_is_reported_and_the_flow_flagged_as_moved")
    else {
        return;
    };
    let lab = lab_up("r5-", 1, 2, 1);
    let _listener = lab.listen().unwrap();
    let proxy = lab.ns(Role::Proxy);
    let port = 35701;
    let tracer = Tracer::start(&["--netns", &proxy, "--vip", "20.0.0.1", "--port", "35701"]);
    let mut s = open(&lab, IpAddr::V4(VIP4), port);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..5 {
        ping_pong(&mut s);
    }
    let (first, _, _) = tracer
        .wait_for(0, Duration::from_secs(5), |r| {
            matches!(r, Record::Decision(_))
        })
        .expect("a routed packet");
    let Record::Decision(first) = first else {
        unreachable!()
    };
    let used = first.actual.expect("the next-hop taken").to_string();
    let other = if used == "172.16.0.3" {
        "172.16.0.5"
    } else {
        "172.16.0.3"
    };

    let before = tracer.count();
    let route = |hops: &[&str]| {
        let mut args = vec![
            "-n",
            proxy.as_str(),
            "route",
            "replace",
            "default",
            "table",
            "1",
        ];
        for h in hops {
            args.extend(["nexthop", "via", h, "dev", "bridge0", "weight", "1"]);
        }
        ip(&args);
        Instant::now()
    };
    let removed_at = route(&[other]);
    let (change, _, seen_at) = tracer
        .wait_for(before, Duration::from_secs(3), |r| {
            route_change(r).is_some()
        })
        .expect("the removal is reported");
    assert!(
        seen_at - removed_at < Duration::from_secs(1),
        "reported after {:?}",
        seen_at - removed_at
    );
    let (table, before_hops, after_hops) = route_change(&change).unwrap();
    assert_eq!(table, 1);
    assert_eq!(before_hops.len(), 2, "{change:?}");
    assert_eq!(after_hops[0].gw, Some(other.parse().unwrap()), "{change:?}");
    for _ in 0..5 {
        ping_pong(&mut s);
    }
    let before = tracer.count();
    let readded_at = route(&["172.16.0.3", "172.16.0.5"]);
    let (change, _, seen_at) = tracer
        .wait_for(before, Duration::from_secs(3), |r| {
            route_change(r).is_some()
        })
        .expect("the re-adding is reported");
    assert!(seen_at - readded_at < Duration::from_secs(1));
    assert_eq!(route_change(&change).unwrap().2.len(), 2, "{change:?}");
    ping_pong(&mut s);
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    let flow = f.flows()[0];
    let eg = &flow.egress;
    assert!(!eg.consistent, "{flow:?}");
    let hops = &eg.nexthops;
    let addr = |s: &str| -> Option<IpAddr> { Some(s.parse().unwrap()) };
    assert_eq!(hops[0].nexthop, addr(&used), "{flow:?}");
    assert_eq!(hops[1].nexthop, addr(other), "{flow:?}");
    assert!(hops[1].first_rel_ns > hops[0].first_rel_ns);
}

/// The VIP's table emptied: replies die in the proxy, and the tracer says where and why
/// (a drop with the kernel's reason), not silence. Ground truth: the client's connect
/// fails and no frontend receives a reply.
#[test]
fn a_flow_dropped_in_the_proxy_is_reported_with_a_reason() {
    let Some(_serial) = root_or_skip("a_flow_dropped_in_the_proxy_is_reported_with_a_reason")
    else {
        return;
    };
    let lab = lab_up("r6-", 1, 2, 1);
    let _listener = lab.listen().unwrap();
    let proxy = lab.ns(Role::Proxy);
    for fe in [Role::FrontendA, Role::FrontendB] {
        lab.add_frontend_counter(fe, "dropped", IpAddr::V4(VIP4), 35801)
            .unwrap();
    }
    let out = std::process::Command::new("ip")
        .args(["-n", &proxy, "route", "flush", "table", "1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let tracer = Tracer::start(&["--netns", &proxy, "--vip", "20.0.0.1", "--port", "35801"]);
    assert!(
        lab.connect(IpAddr::V4(VIP4), 35801, b"x").is_err(),
        "the flow must die"
    );
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    for fe in [Role::FrontendA, Role::FrontendB] {
        assert_eq!(lab.frontend_counter(fe, "dropped").unwrap(), 0);
    }
    let drops = f.drops();
    assert!(!drops.is_empty(), "no drop reported: {:#?}", f.lines);
    // Before 5.17 the kernel has no drop reasons: the ready record says so, and the drop
    // says the reason is unknown rather than guess one.
    let no_reasons = f.readies()[0]
        .unavailable
        .iter()
        .any(|u| u.hook == "drop reasons");
    let want = if no_reasons {
        "unknown (this kernel has no drop reasons)"
    } else {
        "IP_INNOROUTES"
    };
    for d in &drops {
        assert_eq!(d.ifname, "bridge0", "{d:?}");
        assert_eq!(d.path, "egress", "{d:?}");
        assert_eq!(d.reason, want, "{d:?}");
        assert!(d.location.contains('+'), "symbolized: {d:?}");
    }
    let flow = f.flows()[0];
    assert_eq!(flow.drops.packets, drops.len() as u64);
    assert_eq!(flow.egress.packets, 0);
}

/// Neighbour entries of the VIP next-hops are kept from netlink notifications: a next-hop's
/// MAC changing, and its entry going away, are each reported within a second, with the MAC
/// `ip neigh` was given (the ground truth here is what the test itself set).
#[test]
fn next_hop_neighbour_changes_are_reported_from_notifications() {
    let Some(_serial) = root_or_skip("next_hop_neighbour_changes_are_reported_from_notifications")
    else {
        return;
    };
    let lab = lab_up("r7-", 1, 2, 1);
    let proxy = lab.ns(Role::Proxy);
    let tracer = Tracer::start(&["--netns", &proxy, "--vip", "20.0.0.1"]);
    let neigh = |args: &[&str]| {
        ip(&[&["-n", proxy.as_str(), "neigh"], args].concat());
        Instant::now()
    };
    let next_hop: IpAddr = "172.16.0.3".parse().unwrap();
    let is_neighbour = |r: &Record| neighbour_change(r).is_some_and(|(ip, _, _)| ip == next_hop);
    let before = tracer.count();
    let set_at = neigh(&[
        "replace",
        "172.16.0.3",
        "lladdr",
        "02:00:00:00:aa:03",
        "dev",
        "bridge0",
        "nud",
        "permanent",
    ]);
    let (change, _, seen_at) = tracer
        .wait_for(before, Duration::from_secs(3), is_neighbour)
        .expect("the new MAC is reported");
    assert!(seen_at - set_at < Duration::from_secs(1));
    let (_, mac_before, mac_after) = neighbour_change(&change).unwrap();
    assert_eq!(mac_after, Some("02:00:00:00:aa:03"), "{change:?}");
    assert_ne!(mac_before, mac_after, "{change:?}");

    let before = tracer.count();
    let deleted_at = neigh(&["del", "172.16.0.3", "dev", "bridge0"]);
    let (change, _, seen_at) = tracer
        .wait_for(before, Duration::from_secs(3), is_neighbour)
        .expect("the deletion is reported");
    assert!(seen_at - deleted_at < Duration::from_secs(1));
    let (_, mac_before, mac_after) = neighbour_change(&change).unwrap();
    assert_eq!(mac_before, Some("02:00:00:00:aa:03"), "{change:?}");
    assert_eq!(mac_after, None, "{change:?}");
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
}
