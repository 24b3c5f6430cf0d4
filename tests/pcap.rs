//! `--pcap`: the pcapng file read back by tshark (Wireshark's own reader, not the crate
//! that wrote it). One packet per hop record the JSON stream printed, in the same order;
//! each on an interface named `pod/interface`, with a comment; the bytes, as tshark
//! dissects them, are the flow's own addresses and ports, and the frame length is the hop's
//! IP length plus the Ethernet header; the routed hop's comment names the next-hop the
//! frontends' nftables counters say carried the replies.
mod support;

use std::{net::IpAddr, process::Command, time::Duration};

use lab::{Lab, Role, VIP4, VIP6, VIP_PORT};
use support::{lab_up, root_or_skip, Finished, Tracer};
use tracer::records;

const FRONTENDS: [Role; 2] = [Role::FrontendA, Role::FrontendB];
const GATEWAY4: &str = "169.254.100.150";
const GATEWAY6: &str = "100:100::150";

/// One packet of the file as tshark dissects it.
#[derive(Debug)]
struct Dissected {
    iface: String,
    comment: String,
    frame_len: u64,
    cap_len: u64,
    src: String,
    dst: String,
    sport: u16,
    dport: u16,
}

fn tshark(file: &str) -> Vec<Dissected> {
    let out = Command::new("tshark")
        .args([
            "-r",
            file,
            "-T",
            "fields",
            "-E",
            "separator=\t",
            "-E",
            "occurrence=f",
        ])
        .args(["-e", "frame.interface_name", "-e", "frame.comment"])
        .args(["-e", "frame.len", "-e", "frame.cap_len"])
        .args([
            "-e", "ip.src", "-e", "ipv6.src", "-e", "ip.dst", "-e", "ipv6.dst",
        ])
        .args(["-e", "tcp.srcport", "-e", "tcp.dstport"])
        .output()
        .expect("tshark runs (cargo xtask test installs it)");
    assert!(
        out.status.success(),
        "tshark could not read {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 10, "tshark line: {l}");
            let either = |a: &str, b: &str| if a.is_empty() { b } else { a }.to_string();
            Dissected {
                iface: f[0].into(),
                comment: f[1].into(),
                frame_len: f[2].parse().unwrap(),
                cap_len: f[3].parse().unwrap(),
                src: either(f[4], f[5]),
                dst: either(f[6], f[7]),
                sport: f[8].parse().unwrap_or(0),
                dport: f[9].parse().unwrap_or(0),
            }
        })
        .collect()
}

#[test]
fn the_pcapng_file_holds_one_commented_packet_per_hop_record() {
    let Some(_serial) = root_or_skip("the_pcapng_file_holds_one_commented_packet_per_hop_record")
    else {
        return;
    };
    let lab = lab_up("p1-");
    let _listener = lab.listen().unwrap();
    let dir = std::env::temp_dir().join(format!("tracer-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let proxy = lab.ns(Role::Proxy);
    // The default snap length (the small capture record) and the largest (the large one,
    // whole frames): each is its own branch for the verifier. One after the other: before
    // TCX (kernels < 6.6) a tracer's start removes the netlink filters another left.
    for (snap, ports) in [(128u64, [35301u16, 35302]), (2048, [35303, 35304])] {
        let flows = [(IpAddr::V4(VIP4), ports[0]), (IpAddr::V6(VIP6), ports[1])];
        for (vip, port) in flows {
            for fe in FRONTENDS {
                lab.add_frontend_counter(fe, &format!("pcap_{port}"), vip, port)
                    .unwrap();
            }
        }
        let file = dir.join(format!("trace-{snap}.pcapng"));
        let file = file.to_str().unwrap();
        let snap_arg = snap.to_string();
        let tracer = Tracer::start(&[
            "--netns",
            &proxy,
            "--vip",
            "20.0.0.1",
            "--vip",
            "2000::1",
            "--pcap",
            file,
            "--snap-len",
            &snap_arg,
        ]);
        for (vip, port) in flows {
            let echo = lab.connect(vip, port, b"pcap\n").unwrap();
            assert_eq!(echo, b"pcap\n");
        }
        std::thread::sleep(Duration::from_millis(300));
        let f = tracer.stop(libc::SIGINT);
        assert!(f.status.success(), "{}", f.stderr);
        assert!(f.of_type("lost").is_empty(), "no records lost at this rate");
        check(&lab, &flows, &f, file, snap);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The file of one tracer against its JSON hops and the frontends' counters.
fn check(lab: &Lab, flows: &[(IpAddr, u16)], f: &Finished, file: &str, snap: u64) {
    let hops: Vec<&records::Hop> = f
        .hops()
        .into_iter()
        .filter(|h| flows.iter().any(|(v, _)| h.vip == *v))
        .collect();
    assert_eq!(hops.len(), f.hops().len(), "only the lab's flows");
    let packets = tshark(file);
    assert_eq!(
        packets.len(),
        hops.len(),
        "one packet per hop record: {packets:#?}"
    );
    let tcp = hops.iter().filter(|h| h.proto == "tcp").count();
    assert!(tcp >= 2 * 4 * 5, "two TCP flows through 4 hops each");

    for (h, p) in hops.iter().zip(&packets) {
        let ctx = format!("hop {h:?}\npacket {p:?}");
        assert_eq!(p.iface, format!("{}/{}", h.netns, h.ifname), "{ctx}");
        let proto = h.proto.as_ref();
        assert!(
            p.comment
                .starts_with(&format!("flow #{} {proto} ", h.flow_id)),
            "{ctx}"
        );
        let path = if h.path == "ingress" {
            "; to VIP;"
        } else {
            "; from VIP;"
        };
        assert!(p.comment.contains(path), "{ctx}");
        // The bytes are the hop's packet; other VIP traffic than the test's (the proxy's
        // neighbour discovery for the IPv6 VIP, seen on 6.1) has its own addresses.
        assert_eq!(
            (p.src.clone(), p.dst.clone()),
            (h.src.to_string(), h.dst.to_string()),
            "{ctx}"
        );
        // Untagged lab frames: the frame is the IP packet plus a 14-byte Ethernet header;
        // the capture keeps the first `snap` bytes.
        assert_eq!(p.frame_len, u64::from(h.len) + 14, "{ctx}");
        assert_eq!(p.cap_len, p.frame_len.min(snap), "{ctx}");
        if proto != "tcp" {
            continue;
        }
        // A test flow's bytes: the client is the gateway, the server the VIP:4000.
        let (vip, port) = *flows.iter().find(|(v, _)| h.vip == *v).unwrap();
        let client = if vip.is_ipv6() { GATEWAY6 } else { GATEWAY4 };
        let (src, dst, sport, dport) = if h.path == "ingress" {
            (client.to_string(), vip.to_string(), port, VIP_PORT)
        } else {
            (vip.to_string(), client.to_string(), VIP_PORT, port)
        };
        assert_eq!(
            (&p.src, &p.dst, p.sport, p.dport),
            (&src, &dst, sport, dport),
            "{ctx}"
        );
        assert_eq!((h.src.to_string(), h.sport), (src, sport), "{ctx}");
    }

    // The routed hop: its comment carries the decision and the next-hop that the
    // frontends' counters say received the flow's replies.
    for &(vip, port) in flows {
        let counts: Vec<(Role, u64)> = FRONTENDS
            .iter()
            .map(|fe| {
                (
                    *fe,
                    lab.frontend_counter(*fe, &format!("pcap_{port}")).unwrap(),
                )
            })
            .collect();
        let used: Vec<Role> = counts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, _)| *r)
            .collect();
        assert_eq!(
            used.len(),
            1,
            "one frontend carried {vip} {port}: {counts:?}"
        );
        let nexthop = lab.frontend_conduit_ip(used[0], vip.is_ipv6());
        let table = if vip.is_ipv6() { 2 } else { 1 };
        let routed: Vec<&Dissected> = hops
            .iter()
            .zip(&packets)
            .filter(|(h, _)| h.vip == vip && h.routed && h.dport == port)
            .map(|(_, p)| p)
            .collect();
        assert!(!routed.is_empty(), "{vip} {port} has routed hops");
        for p in routed {
            assert!(p.iface.ends_with("/bridge0"), "{p:?}");
            assert!(
                p.comment.contains(&format!("next-hop {nexthop} (")),
                "{p:?}"
            );
            assert!(p.comment.contains(&format!("-> table {table}")), "{p:?}");
            assert!(p.comment.contains("decision: rule "), "{p:?}");
            assert!(p.comment.contains(&format!("actual {nexthop}")), "{p:?}");
        }
    }
}
