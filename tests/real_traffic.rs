//! End-to-end: what real nodes send and the states operators meet (issue 10), against
//! labs of their own, as root. Ground truth comes from the kernel, never from the tracer:
//! the proxy's no-route counters (`/proc/net/netstat`, `/proc/net/snmp6`), the frontends'
//! nftables counters, and the frames a test writes itself.
//!
//! Labs use netns prefixes beginning with `f`.
mod support;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket},
    time::Duration,
};

use lab::{netns::in_netns, Lab, Role, VIP4, VIP6};
use serde_json::Value;
use support::{lab_up, nft_counter, proc_stat, root_or_skip, view_command, Tracer};
use tracer::records::{
    self,
    discover::{self, DiscoverLine},
    Flow, Hop,
};

const GATEWAY4: Ipv4Addr = Ipv4Addr::new(169, 254, 100, 150);
const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0x100, 0x100, 0, 0, 0, 0, 0, 0x150);

/// Packets the proxy dropped for want of a route: (IPv4, IPv6).
fn no_route_drops(lab: &Lab) -> (u64, u64) {
    let px = lab.ns(Role::Proxy);
    (
        proc_stat(&px, "netstat", "IpExt", "InNoRoutes"),
        proc_stat(&px, "snmp6", "", "Ip6InNoRoutes"),
    )
}

/// Sends `n` UDP datagrams of `size` bytes from the target's VIP `vip:sport` to `to:dport`.
fn send_from_vip(lab: &Lab, vip: IpAddr, sport: u16, to: IpAddr, dport: u16, n: u32, size: usize) {
    in_netns(&lab.ns(Role::Target), || {
        // Not connected: an ICMP error coming back (port unreachable at the gateway, no
        // route in the proxy) would fail the next send on a connected socket.
        let s = UdpSocket::bind((vip, sport)).expect("bind the VIP");
        let payload = vec![0x5au8; size];
        for _ in 0..n {
            s.send_to(&payload, (to, dport)).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .unwrap();
}

fn discover_json(prefix: &str) -> Vec<DiscoverLine<'static>> {
    let out = view_command(prefix, true, &["discover", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Every frontend gone: the proxy's VIP tables are empty. Discovery still calls it a proxy
/// (bridge, ports, `from <VIP>` rules) and notes "no next-hops"; the whole-path tracer,
/// which goes by discovery, traces it and names each dropped egress datagram with the
/// kernel's reason, as many as the proxy's own no-route counters counted.
#[test]
fn a_proxy_with_empty_vip_tables_is_found_and_its_drops_named() {
    let Some(_serial) = root_or_skip("a_proxy_with_empty_vip_tables_is_found_and_its_drops_named")
    else {
        return;
    };
    let lab = lab_up("f1-");
    let px = lab.ns(Role::Proxy);
    for (fam, table) in [("-4", "1"), ("-6", "2")] {
        let out = std::process::Command::new("ip")
            .args([fam, "-n", &px, "route", "flush", "table", table])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    let recs = discover_json("f1-");
    let proxy: Vec<&discover::Namespace> = recs
        .iter()
        .filter_map(|r| match r {
            DiscoverLine::Netns(n) if n.role == "proxy" => Some(n),
            _ => None,
        })
        .collect();
    assert_eq!(proxy.len(), 1, "{recs:#?}");
    let proxy = proxy[0];
    assert_eq!(proxy.name, px.as_str(), "{proxy:?}");
    let vips: Vec<String> = proxy.vips.iter().map(|v| v.to_string()).collect();
    assert_eq!(vips, ["20.0.0.1", "2000::1"]);
    assert_eq!(proxy.interfaces[0].kind, "bridge", "{proxy:?}");
    let note = proxy.note.as_deref().unwrap_or_default();
    assert!(note.starts_with("no next-hops"), "{proxy:?}");
    assert!(note.contains("table 1 (from 20.0.0.1)") && note.contains("table 2 (from 2000::1)"));

    // Whole path, proxies only: the tracer finds the proxy through discovery.
    // (own_pids false: the shell execs the tracer, so the signal reaches it.)
    let tracer = Tracer::start_command(&mut view_command(
        "f1-",
        false,
        &[
            "--json", "--vip", "20.0.0.1", "--vip", "2000::1", "--role", "proxy",
        ],
    ));
    let before = no_route_drops(&lab);
    const N: u32 = 20;
    send_from_vip(
        &lab,
        IpAddr::V4(VIP4),
        4000,
        IpAddr::V4(GATEWAY4),
        9301,
        N,
        100,
    );
    send_from_vip(
        &lab,
        IpAddr::V6(VIP6),
        4000,
        IpAddr::V6(GATEWAY6),
        9302,
        N,
        100,
    );
    std::thread::sleep(Duration::from_millis(500));
    let after = no_route_drops(&lab);
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    let ready = f.readies();
    assert!(
        ready.iter().any(|r| r.netns == px.as_str()),
        "the proxy was not traced: {ready:#?}"
    );
    let want = (after.0 - before.0, after.1 - before.1);
    eprintln!("proxy no-route drops (v4, v6): {want:?}");
    assert!(want.0 >= u64::from(N) && want.1 >= u64::from(N), "{want:?}");

    let no_reasons = ready[0]
        .unavailable
        .iter()
        .any(|u| u.hook == "drop reasons");
    let reason = if no_reasons {
        "unknown (this kernel has no drop reasons)"
    } else {
        "IP_INNOROUTES"
    };
    for (port, expected) in [(9301u16, want.0), (9302, want.1)] {
        let drops: Vec<&records::Drop> = f
            .drops()
            .into_iter()
            .filter(|d| d.flow.client_port == port)
            .collect();
        assert_eq!(drops.len() as u64, expected, "drop records of :{port}");
        for d in &drops {
            assert_eq!(d.ifname, "bridge0", "{d:?}");
            assert_eq!(d.path, "egress", "{d:?}");
            assert_eq!(d.reason, reason, "{d:?}");
        }
        let flows: Vec<&Flow> = f
            .flows()
            .into_iter()
            .filter(|s| s.flow.client_port == port)
            .collect();
        assert_eq!(flows.len(), 1, "{flows:#?}");
        assert_eq!(flows[0].drops.packets, expected, "{:?}", flows[0]);
        assert_eq!(flows[0].egress.packets, 0, "{:?}", flows[0]);
    }
}

/// Two namespaces joined by a veth pair; the tagged frames are written as is with a packet
/// socket (this needs no VLAN devices, which some kernels lack). Removed when dropped.
struct VethPair {
    a: String,
    b: String,
}

const QINQ_A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const QINQ_B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const QINQ_MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x01];
const QINQ_MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x01];

fn ip(args: &str) {
    let out = std::process::Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .unwrap();
    assert!(out.status.success(), "ip {args}: {out:?}");
}

impl VethPair {
    fn up(prefix: &str) -> VethPair {
        let lab = VethPair {
            a: format!("{prefix}a"),
            b: format!("{prefix}b"),
        };
        lab.down();
        ip(&format!("netns add {}", lab.a));
        ip(&format!("netns add {}", lab.b));
        // No IPv6 on the pair: its neighbour and multicast-listener messages at link-up
        // would add to the receive counter the test takes as ground truth.
        for ns in [&lab.a, &lab.b] {
            ip(&format!(
                "netns exec {ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1"
            ));
        }
        ip(&format!(
            "link add va netns {} type veth peer name vb netns {}",
            lab.a, lab.b
        ));
        ip(&format!("-n {} link set va up", lab.a));
        ip(&format!("-n {} link set vb up", lab.b));
        lab
    }

    fn down(&self) {
        for ns in [&self.a, &self.b] {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .output();
        }
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        self.down();
    }
}

/// An Ethernet frame with `tags` ((TPID, id, priority), outermost first) in the frame
/// itself, carrying an IPv4 UDP datagram A:sport -> B:dport.
fn tagged_frame(tags: &[(u16, u16, u8)], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&QINQ_MAC_B);
    f.extend_from_slice(&QINQ_MAC_A);
    for (tpid, id, pcp) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&((u16::from(*pcp) << 13) | id).to_be_bytes());
    }
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = (20 + 8 + payload.len()) as u16;
    let mut iph = vec![0x45, 0];
    iph.extend_from_slice(&total.to_be_bytes());
    iph.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
    iph.extend_from_slice(&QINQ_A.octets());
    iph.extend_from_slice(&QINQ_B.octets());
    let sum: u32 = iph
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    iph[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&iph);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
    f.extend_from_slice(payload);
    f
}

/// Writes `frame` as is on `dev` (a packet socket: the kernel adds and removes nothing).
fn send_raw(dev: &str, frame: &[u8]) {
    let name = std::ffi::CString::new(dev).unwrap();
    // SAFETY: plain socket calls on a zeroed sockaddr_ll and a live buffer.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr());
        assert_ne!(ifindex, 0, "no {dev}");
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[..6]);
        let n = libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        libc::close(fd);
        assert_eq!(
            n,
            frame.len() as isize,
            "{}",
            std::io::Error::last_os_error()
        );
    }
}

/// Packets `dev` in `ns` received (`ip -s link`).
fn rx_packets(ns: &str, dev: &str) -> u64 {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-s", "-j", "link", "show", dev])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["stats64"]["rx"]["packets"].as_u64().unwrap()
}

/// The hops of one datagram size (`len`) at `ifname`/`dir`.
fn hops_at<'a>(
    f: &'a support::Finished,
    ifname: &str,
    dir: &str,
    len: u16,
) -> Vec<&'a Hop<'static>> {
    f.hops()
        .into_iter()
        .filter(|h| h.ifname == ifname && h.dir == dir && h.len == len)
        .collect()
}

/// QinQ (802.1ad VLAN 100, priority 5, outside 802.1Q VLAN 200, priority 3) and a single
/// 802.1Q tag (VLAN 300, priority 6). Leaving `va` both tags are in the frame; entering
/// `vb` the kernel has moved the outer one into the skb's metadata: either way the hop
/// reports both ids, the outer TPID and the priorities. Ground truth: the frames the test
/// wrote, and `vb`'s receive counter for how many arrived.
#[test]
fn qinq_frames_are_parsed_with_both_vlan_ids() {
    let Some(_serial) = root_or_skip("qinq_frames_are_parsed_with_both_vlan_ids") else {
        return;
    };
    let lab = VethPair::up("f2-");
    let (sport, dport) = (4321u16, 5000u16);
    let vip = QINQ_B.to_string();
    let port = sport.to_string();
    let args = |ns: &str| {
        vec![
            "--netns".to_string(),
            ns.to_string(),
            "--role".into(),
            "target".into(),
            "--vip".into(),
            vip.clone(),
            "--port".into(),
            port.clone(),
        ]
    };
    let a_args = args(&lab.a);
    let b_args = args(&lab.b);
    let ta = Tracer::start(&a_args.iter().map(String::as_str).collect::<Vec<_>>());
    let tb = Tracer::start(&b_args.iter().map(String::as_str).collect::<Vec<_>>());

    const N: usize = 3;
    let rx_before = rx_packets(&lab.b, "vb");
    let qinq = tagged_frame(
        &[(0x88a8, 100, 5), (0x8100, 200, 3)],
        sport,
        dport,
        &[9; 33],
    );
    let dot1q = tagged_frame(&[(0x8100, 300, 6)], sport, dport, &[8; 20]);
    in_netns(&lab.a, || {
        for _ in 0..N {
            send_raw("va", &qinq);
            send_raw("va", &dot1q);
        }
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let arrived = rx_packets(&lab.b, "vb") - rx_before;
    let fa = ta.stop(libc::SIGINT);
    let fb = tb.stop(libc::SIGINT);
    assert!(
        fa.status.success() && fb.status.success(),
        "{}{}",
        fa.stderr,
        fb.stderr
    );
    assert_eq!(arrived, 2 * N as u64, "frames vb received");

    let vlans = |h: &Hop| {
        (
            h.vlan_tags,
            h.vlan,
            h.vlan_inner,
            h.vlan_tpid,
            h.vlan_pcp,
            h.vlan_inner_pcp,
        )
    };
    for (f, ifname, dir) in [(&fa, "va", "egress"), (&fb, "vb", "ingress")] {
        // ip_len 20 + 8 + 33: the QinQ frames; 20 + 8 + 20: the 802.1Q ones.
        for (len, want) in [
            (61, (2, 100, 200, 0x88a8, 5, 3)),
            (48, (1, 300, 0, 0x8100, 6, 0)),
        ] {
            let hops = hops_at(f, ifname, dir, len);
            assert_eq!(hops.len(), N, "{ifname} {dir}: {:#?}", f.hops());
            for h in hops {
                assert_eq!(vlans(h), want, "{ifname} {dir}: {h:?}");
                assert_eq!(h.sport, sport, "{h:?}");
            }
        }
    }
}

/// Ground truth in both frontends: every frame from the VIP entering the conduit
/// interface, fragments one by one (a netdev ingress chain, before any reassembly).
fn arm_fragment_counters(lab: &Lab) -> Vec<(Role, String)> {
    let n = lab.names();
    let mut out = Vec::new();
    for (role, dev) in [
        (Role::FrontendA, n.fea_conduit),
        (Role::FrontendB, n.feb_conduit),
    ] {
        let script = format!(
            "add table netdev frag-truth
add chain netdev frag-truth in {{ type filter hook ingress device \"{dev}\" priority -500; policy accept; }}
add counter netdev frag-truth v4
add counter netdev frag-truth v6
add rule netdev frag-truth in ip saddr {VIP4} counter name \"v4\"
add rule netdev frag-truth in ip6 saddr {VIP6} counter name \"v6\"
"
        );
        lab::cmd::run_with_stdin(
            "ip",
            &["netns", "exec", &lab.ns(role), "nft", "-f", "-"],
            Some(&script),
        )
        .unwrap();
        out.push((role, lab.ns(role)));
    }
    out
}

/// 3000-byte UDP datagrams from the VIP over 1500-byte links leave the target in three
/// fragments each. In the proxy every fragment is counted in its datagram's flow (the
/// later ones through the first one's ports) and per next-hop, equal to the frames the
/// frontends' netdev counters saw; the routed hop shows each fragment's offset and
/// next-hop, and the summary the datagrams, none split here and none orphaned.
#[test]
fn fragments_are_counted_in_their_flow_per_next_hop() {
    let Some(_serial) = root_or_skip("fragments_are_counted_in_their_flow_per_next_hop") else {
        return;
    };
    let lab = lab_up("f3-");
    // Neighbours resolved first: a datagram's fragments waiting on ARP/ND overflow the
    // neighbour queue, and those drops are not what this test is about.
    send_from_vip(
        &lab,
        IpAddr::V4(VIP4),
        4000,
        IpAddr::V4(GATEWAY4),
        9401,
        2,
        10,
    );
    send_from_vip(
        &lab,
        IpAddr::V6(VIP6),
        4000,
        IpAddr::V6(GATEWAY6),
        9402,
        2,
        10,
    );
    std::thread::sleep(Duration::from_millis(300));
    let counters = arm_fragment_counters(&lab);
    let px = lab.ns(Role::Proxy);
    // Every packet recorded: the test counts each fragment's record.
    let tracer = Tracer::start(&[
        "--records",
        "all",
        "--netns",
        &px,
        "--vip",
        "20.0.0.1",
        "--vip",
        "2000::1",
    ]);
    const N: u32 = 50;
    send_from_vip(
        &lab,
        IpAddr::V4(VIP4),
        4000,
        IpAddr::V4(GATEWAY4),
        9401,
        N,
        3000,
    );
    send_from_vip(
        &lab,
        IpAddr::V6(VIP6),
        4000,
        IpAddr::V6(GATEWAY6),
        9402,
        N,
        3000,
    );
    std::thread::sleep(Duration::from_millis(800));
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);

    for (port, counter, offsets) in [
        (9401u16, "v4", [0u64, 1480, 2960]),
        (9402, "v6", [0, 1448, 2896]),
    ] {
        let truth: Vec<(IpAddr, u64)> = counters
            .iter()
            .map(|(role, ns)| {
                (
                    lab.frontend_conduit_ip(*role, port == 9402),
                    nft_counter(ns, "netdev", "frag-truth", counter),
                )
            })
            .collect();
        let total: u64 = truth.iter().map(|(_, n)| n).sum();
        eprintln!("{counter}: frontends' netdev counters {truth:?}");
        assert_eq!(
            total,
            3 * u64::from(N),
            "{counter}: fragments at the frontends"
        );

        let flows: Vec<&Flow> = f
            .flows()
            .into_iter()
            .filter(|s| s.flow.client_port == port)
            .collect();
        assert_eq!(flows.len(), 1, "{flows:#?}");
        let s = flows[0];
        eprintln!("{counter}: summary {s:?}");
        assert_eq!(s.egress.packets, total, "{s:?}");
        for (nh_ip, want) in &truth {
            let got = s
                .egress
                .nexthops
                .iter()
                .find(|n| n.nexthop == Some(*nh_ip))
                .map_or(0, |n| n.packets);
            assert_eq!(got, *want, "{counter}: next-hop {nh_ip}: {s:?}");
        }
        let fr = s.fragments.as_ref().unwrap_or_else(|| panic!("{s:?}"));
        assert_eq!(fr.routed, total, "{s:?}");
        assert_eq!(fr.datagrams, u64::from(N), "{s:?}");
        assert_eq!(fr.split, 0, "{s:?}");
        assert_eq!(fr.orphans, 0, "{s:?}");
        // Each fragment on the routed hop: its offset, and the next-hop it took.
        let routed: Vec<&Hop> = f
            .hops()
            .into_iter()
            .filter(|h| h.ifname == "bridge0" && h.dir == "egress" && h.dport == port)
            .collect();
        assert_eq!(routed.len() as u64, total);
        for off in offsets {
            let at: Vec<&&Hop> = routed
                .iter()
                .filter(|h| h.frag.as_ref().is_some_and(|f| u64::from(f.offset) == off))
                .collect();
            assert_eq!(at.len() as u32, N, "{counter}: fragments at offset {off}");
            assert!(at.iter().all(|h| h.nexthop.is_some()), "{at:#?}");
        }
    }
}
