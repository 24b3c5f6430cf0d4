//! End-to-end: drops the kernel makes in the proxy for reasons other than a missing route,
//! each provoked in a lab of its own and checked against the proxy's own counters
//! (`/proc/net/netstat`, `/proc/net/snmp`, `/proc/net/snmp6` inside its namespace), never
//! against the tracer: strict reverse-path filtering of a source the proxy has no route
//! back to, and a next-hop whose neighbour never resolves; and copies a bridge flooded,
//! which the hosts they were not for discard, told apart from drops.
//!
//! Labs use netns prefixes beginning with `p`.
mod support;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket},
    process::Command,
    time::Duration,
};

use lab::{netns::in_netns, Lab, Role, VIP4, VIP6};
use support::{lab_up, proc_stat, root_or_skip, Finished, Tracer};
use tracer::records;

const GATEWAY4: Ipv4Addr = Ipv4Addr::new(169, 254, 100, 150);
const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0x100, 0x100, 0, 0, 0, 0, 0, 0x150);
const N: u32 = 10;

fn sh(ns: &str, args: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
}

/// Sends `n` 100-byte UDP datagrams from the target's VIP `vip:4000` to `to:dport`.
fn send_from_vip(lab: &Lab, vip: IpAddr, to: IpAddr, dport: u16, n: u32) {
    in_netns(&lab.ns(Role::Target), || {
        // Not connected: an ICMP error coming back would fail the next send.
        let s = UdpSocket::bind((vip, 4000)).expect("bind the VIP");
        for _ in 0..n {
            s.send_to(&[0x5a; 100], (to, dport)).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .unwrap();
}

/// The drop reason the tracer gives on this kernel for `reason`: none before 5.17, and the
/// ready record says so.
fn expected_reason(f: &Finished, reason: &str) -> String {
    let no_reasons = f.readies()[0]
        .unavailable
        .iter()
        .any(|u| u.hook == "drop reasons");
    if no_reasons {
        "unknown (this kernel has no drop reasons)".into()
    } else {
        reason.into()
    }
}

fn drops_of(f: &Finished, port: u16) -> Vec<&records::Drop<'static>> {
    f.drops()
        .into_iter()
        .filter(|d| d.flow.client_port == port)
        .collect()
}

/// Strict rp_filter on bridge0 and a source (the VIP) the proxy has no route back to in
/// its main table (the VIP's own rule, `from <VIP>`, does not match the reverse lookup):
/// every datagram from the VIP is dropped on entering bridge0, as many as the proxy's
/// `IPReversePathFilter` counter. IPv4 only: IPv6 has no rp_filter sysctl (only
/// netfilter's rpfilter match, whose drops are `NETFILTER_DROP`).
#[test]
fn a_strict_rp_filter_drop_is_named_as_the_proxy_counts_it() {
    let Some(_serial) = root_or_skip("a_strict_rp_filter_drop_is_named_as_the_proxy_counts_it")
    else {
        return;
    };
    let lab = lab_up("p2-");
    let px = lab.ns(Role::Proxy);
    sh(&px, &["sysctl", "-qw", "net.ipv4.conf.bridge0.rp_filter=1"]);
    let tracer = Tracer::start(&["--netns", &px, "--vip", "20.0.0.1"]);
    let before = proc_stat(&px, "netstat", "TcpExt", "IPReversePathFilter");
    send_from_vip(&lab, IpAddr::V4(VIP4), IpAddr::V4(GATEWAY4), 9401, N);
    std::thread::sleep(Duration::from_millis(500));
    let counted = proc_stat(&px, "netstat", "TcpExt", "IPReversePathFilter") - before;
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    eprintln!("proxy IPReversePathFilter: +{counted}");
    assert_eq!(counted, u64::from(N), "the proxy filtered every datagram");

    let reason = expected_reason(&f, "IP_RPFILTER");
    let drops = drops_of(&f, 9401);
    assert_eq!(drops.len() as u64, counted, "{:#?}", f.lines);
    for d in &drops {
        assert_eq!(d.ifname, "bridge0", "{d:?}");
        assert_eq!(d.path, "egress", "{d:?}");
        assert_eq!(d.reason, reason, "{d:?}");
    }
    let flow = f.flows()[0];
    assert_eq!(flow.drops.packets, counted, "{flow:?}");
    assert_eq!(flow.egress.packets, 0, "never routed: {flow:?}");
}

/// The VIP tables' only next-hop is an address nobody answers for (172.16.0.99,
/// fd00::99): the proxy forwards each datagram (its `ForwDatagrams` / `Ip6OutForwDatagrams`
/// count them), queues it for address resolution, and drops it when resolution fails
/// (one probe of 100 ms here, to keep the test short); the neighbour ends FAILED.
/// Forwarded and then never sent is exactly what the tracer must name.
#[test]
fn a_next_hop_that_never_resolves_is_named_as_a_neighbour_failure() {
    let Some(_serial) =
        root_or_skip("a_next_hop_that_never_resolves_is_named_as_a_neighbour_failure")
    else {
        return;
    };
    let lab = lab_up("p3-");
    let px = lab.ns(Role::Proxy);
    for fam in ["ipv4", "ipv6"] {
        sh(
            &px,
            &[
                "sysctl",
                "-qw",
                &format!("net.{fam}.neigh.bridge0.mcast_solicit=1"),
            ],
        );
        sh(
            &px,
            &[
                "sysctl",
                "-qw",
                &format!("net.{fam}.neigh.bridge0.retrans_time_ms=100"),
            ],
        );
    }
    sh(
        &px,
        &[
            "ip",
            "-4",
            "route",
            "replace",
            "default",
            "via",
            "172.16.0.99",
            "dev",
            "bridge0",
            "table",
            "1",
        ],
    );
    sh(
        &px,
        &[
            "ip", "-6", "route", "replace", "default", "via", "fd00::99", "dev", "bridge0",
            "table", "2",
        ],
    );
    let tracer = Tracer::start(&["--netns", &px, "--vip", "20.0.0.1", "--vip", "2000::1"]);
    let fwd4 = || proc_stat(&px, "snmp", "Ip", "ForwDatagrams");
    let fwd6 = || proc_stat(&px, "snmp6", "", "Ip6OutForwDatagrams");
    let before = (fwd4(), fwd6());
    send_from_vip(&lab, IpAddr::V4(VIP4), IpAddr::V4(GATEWAY4), 9402, N);
    send_from_vip(&lab, IpAddr::V6(VIP6), IpAddr::V6(GATEWAY6), 9403, N);
    // Resolution fails 100 ms after a probe; give the last queue time to be flushed.
    std::thread::sleep(Duration::from_millis(800));
    let forwarded = (fwd4() - before.0, fwd6() - before.1);
    let neigh = |fam: &str, ip: &str| {
        let out = Command::new("ip")
            .args([fam, "-n", &px, "neigh", "show", ip, "dev", "bridge0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (n4, n6) = (neigh("-4", "172.16.0.99"), neigh("-6", "fd00::99"));
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    eprintln!("proxy forwarded (v4, v6): {forwarded:?}; neighbours: {n4:?}, {n6:?}");
    assert_eq!(
        forwarded,
        (u64::from(N), u64::from(N)),
        "every datagram forwarded"
    );
    assert!(
        n4.ends_with("FAILED") && n6.ends_with("FAILED"),
        "{n4:?} {n6:?}"
    );

    // neigh_invalidate hands each queued packet to the family's error_report, which frees
    // it with a tail call (so the location is in neigh_invalidate): IPv4's
    // arp_error_report with NEIGH_FAILED, IPv6's ndisc_error_report with a plain kfree_skb
    // (NOT_SPECIFIED, on 6.18). The tracer must say what the kernel said, and where.
    let v4_reason = expected_reason(&f, "NEIGH_FAILED");
    let v6_reasons = [v4_reason.clone(), expected_reason(&f, "NOT_SPECIFIED")];
    for (port, counted) in [(9402u16, forwarded.0), (9403, forwarded.1)] {
        let drops = drops_of(&f, port);
        assert_eq!(
            drops.len() as u64,
            counted,
            "drops of :{port}: {:#?}",
            f.lines
        );
        for d in &drops {
            assert_eq!(d.ifname, "bridge0", "{d:?}");
            assert_eq!(d.path, "egress", "{d:?}");
            if port == 9402 {
                assert_eq!(d.reason, v4_reason, "{d:?}");
            } else {
                assert!(v6_reasons.contains(&d.reason.to_string()), "{d:?}");
            }
            assert!(
                ["neigh_", "__neigh_", "arp_", "ndisc_"]
                    .iter()
                    .any(|f| d.location.starts_with(f)),
                "dropped in the neighbour code: {d:?}"
            );
        }
        eprintln!(
            ":{port}: {} drops, reason {}, at {}",
            drops.len(),
            drops[0].reason,
            drops[0].location
        );
        let flow: Vec<&records::Flow> = f
            .flows()
            .into_iter()
            .filter(|s| s.flow.client_port == port)
            .collect();
        assert_eq!(flow.len(), 1, "{flow:#?}");
        assert_eq!(flow[0].drops.packets, counted, "{:?}", flow[0]);
        // Queued for resolution, never handed to the device: no routed hop.
        assert_eq!(flow[0].egress.packets, 0, "{:?}", flow[0]);
    }
}

/// A bridge that has not learned where a frame's destination is floods it to every port,
/// and the hosts it was not for discard their copies (reason `OTHERHOST`): no packet of
/// the flow is lost. The proxy's bridge made a hub (ageing 0: nothing it learns stays),
/// the target's own datagrams toward the gateway come back to it as flooded copies, as many
/// as an nftables counter on the target's interface sees arriving for another MAC. The
/// tracer reports none of them as a drop and counts each in `/metrics`.
#[test]
fn flooded_copies_another_host_discards_are_counted_not_dropped() {
    let Some(_serial) =
        root_or_skip("flooded_copies_another_host_discards_are_counted_not_dropped")
    else {
        return;
    };
    const METRICS: &str = "127.0.0.1:19474";
    let lab = lab_up("p4-");
    let (px, tg) = (lab.ns(Role::Proxy), lab.ns(Role::Target));
    sh(
        &px,
        &[
            "ip",
            "link",
            "set",
            "bridge0",
            "type",
            "bridge",
            "ageing_time",
            "0",
        ],
    );
    let (iface, mac) = only_interface(&tg);
    let rules = format!(
        "table netdev p4 {{\n counter flooded {{}}\n chain in {{ type filter hook ingress device \"{iface}\" priority 0; ether daddr != {mac} ip saddr 20.0.0.1 udp dport 9404 counter name flooded; }}\n}}"
    );
    support::nft_apply(&tg, &rules);
    let tracer = Tracer::start(&["--netns", &tg, "--vip", "20.0.0.1", "--metrics", METRICS]);
    send_from_vip(&lab, IpAddr::V4(VIP4), IpAddr::V4(GATEWAY4), 9404, N);
    // /metrics is brought up to date every second.
    std::thread::sleep(Duration::from_millis(2500));
    let (code, body) = support::http_get(METRICS, "/metrics");
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    assert_eq!(code, 200, "{body}");
    let counted = support::nft_counter(&tg, "netdev", "p4", "flooded");
    eprintln!("flooded copies arriving at the target: {counted}");
    assert_eq!(counted, u64::from(N), "one flooded copy of each datagram");
    assert_eq!(
        expected_reason(&f, "OTHERHOST"),
        "OTHERHOST",
        "this test needs a kernel with drop reasons"
    );
    let drops = drops_of(&f, 9404);
    assert!(
        drops.is_empty(),
        "flooded copies reported as drops: {drops:#?}"
    );
    let not_for_host: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("meridio_tracer_not_for_host_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no not_for_host counter in {body}"));
    assert_eq!(not_for_host, counted, "{body}");
}

/// The one interface of a namespace besides `lo`, and its MAC.
fn only_interface(ns: &str) -> (String, String) {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "link", "show"])
        .output()
        .unwrap();
    let links: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let link = links
        .iter()
        .find(|l| l["ifname"] != "lo")
        .unwrap_or_else(|| panic!("no interface in {ns}"));
    (
        link["ifname"].as_str().unwrap().to_string(),
        link["address"].as_str().unwrap().to_string(),
    )
}
