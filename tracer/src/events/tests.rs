use std::net::{IpAddr, Ipv6Addr};

use tracer_common::{
    FibRecord, PacketRecord, AF_INET, AF_INET6, DIR_EGRESS, FRAG_IS, FRAG_ORPHAN, KIND_FIB,
    KIND_PACKET,
};

use super::*;

/// The event alone, for tests that do not look at the site.
fn event(bytes: &[u8]) -> Result<Event, DecodeError> {
    decode(bytes).map(|(_, ev)| ev)
}

fn as_bytes<T>(v: &T) -> Vec<u8> {
    // SAFETY: test-only view of a POD record as bytes.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
        .to_vec()
}

#[test]
fn decodes_both_vlan_tags_of_a_qinq_frame() {
    let r = PacketRecord {
        kind: KIND_PACKET,
        src: tracer_common::v4_mapped([20, 0, 0, 1]),
        dst: tracer_common::v4_mapped([10, 0, 0, 1]),
        family: AF_INET,
        proto: 17,
        vlan: 100,
        vlan_tpid: 0x88a8,
        vlan_inner: 200,
        vlan_prio: 5 | (3 << 4),
        vlan_tags: 2,
        ..Default::default()
    };
    let Event::Packet(p) = event(&as_bytes(&r)).unwrap() else {
        panic!("not a packet")
    };
    assert_eq!(
        p.vlan,
        Vlan {
            tags: 2,
            id: 100,
            pcp: 5,
            tpid: 0x88a8,
            inner_id: 200,
            inner_pcp: 3
        }
    );
    assert_eq!(p.vlan.ids_text(), "100.200");
}

#[test]
fn decodes_ipv4_packet() {
    let r = PacketRecord {
        kind: KIND_PACKET,
        ifindex: 7,
        ts_ns: 42,
        src: tracer_common::v4_mapped([20, 0, 0, 1]),
        dst: tracer_common::v4_mapped([169, 254, 100, 150]),
        eth_dst: [2, 0, 0, 0, 0, 3],
        sport: 4000,
        dport: 35000,
        ip_len: 60,
        dir: DIR_EGRESS,
        family: AF_INET,
        proto: 6,
        tcp_flags: 0x12,
        ..Default::default()
    };
    let Event::Packet(p) = event(&as_bytes(&r)).unwrap() else {
        panic!("not a packet")
    };
    assert_eq!(p.src, "20.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(p.dst, "169.254.100.150".parse::<IpAddr>().unwrap());
    assert_eq!(
        (p.sport, p.dport, p.len, p.dir),
        (4000, 35000, 60, Dir::Egress)
    );
    assert_eq!(fmt_tcp_flags(p.tcp_flags), "SYN,ACK");
    assert_eq!(p.vlan, Vlan::default());
    assert_eq!(p.frag, None);
    let frag = PacketRecord {
        frag: FRAG_IS | FRAG_ORPHAN,
        frag_off: 1480,
        frag_id: 0xbeef,
        ..r
    };
    let Event::Packet(p) = event(&as_bytes(&frag)).unwrap() else {
        panic!("not a packet")
    };
    assert_eq!(
        p.frag,
        Some(Frag {
            id: 0xbeef,
            offset: 1480,
            more: false,
            orphan: true
        })
    );
    assert_eq!(fmt_tcp_flags(0), "");
    assert_eq!(fmt_tcp_flags(0xff), "SYN,ACK,FIN,RST,PSH,URG,ECE,CWR");
    assert_eq!(
        fmt_mac(&[0xfe, 0, 0x0a, 0xb0, 1, 0xff]),
        "fe:00:0a:b0:01:ff"
    );
    assert_eq!(fmt_mac(&p.eth_dst), "02:00:00:00:00:03");
}

#[test]
fn decodes_ipv6_fib_lookup() {
    let mut dev = [0u8; 16];
    dev[..7].copy_from_slice(b"bridge0");
    let gw: Ipv6Addr = "fd00::3".parse().unwrap();
    let r = FibRecord {
        kind: KIND_FIB,
        table: 2,
        family: AF_INET6,
        src: "2000::1".parse::<Ipv6Addr>().unwrap().octets(),
        dst: "100:100::150".parse::<Ipv6Addr>().unwrap().octets(),
        gw: gw.octets(),
        dev,
        ..Default::default()
    };
    let Event::Fib(f) = event(&as_bytes(&r)).unwrap() else {
        panic!("not a fib lookup")
    };
    assert_eq!(
        (f.table, f.dev.as_str(), f.gw),
        (2, "bridge0", IpAddr::V6(gw))
    );
}

#[test]
fn rejects_short_unknown_and_malformed_records() {
    assert!(matches!(event(&[]), Err(DecodeError::Short { .. })));
    assert!(matches!(
        event(&[1, 0, 0, 0, 9]),
        Err(DecodeError::Short { .. })
    ));
    assert_eq!(event(&[9, 0, 0, 0]), Err(DecodeError::UnknownKind(9)));
    let bad = PacketRecord {
        kind: KIND_PACKET,
        family: 99,
        ..Default::default()
    };
    assert_eq!(event(&as_bytes(&bad)), Err(DecodeError::BadField("family")));
}

#[test]
fn never_panics_on_arbitrary_bytes() {
    // A cheap deterministic sweep (xorshift) over lengths and contents, including
    // valid kind prefixes, stands in for a fuzzer here.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for len in 0..300usize {
        for _ in 0..20 {
            let mut buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            if len >= 4 {
                buf[0] = (x % 5) as u8;
                buf[1..4].fill(0);
            }
            let _ = event(&buf);
        }
    }
}

#[test]
fn every_record_names_its_site() {
    let packet = PacketRecord {
        kind: KIND_PACKET,
        family: AF_INET,
        site: 3,
        ..Default::default()
    };
    let fib = FibRecord {
        kind: KIND_FIB,
        family: AF_INET6,
        site: 2,
        ..Default::default()
    };
    assert_eq!(decode(&as_bytes(&packet)).unwrap().0, 3);
    assert_eq!(decode(&as_bytes(&fib)).unwrap().0, 2);
}
