//! Property tests of [`decode`]: whatever bytes come out of the ring, it never panics; and
//! every typed event, written as the eBPF programs write it (`tracer_common` records), decodes
//! back to itself. The encoders here are the test's own inverse of `decode`, field by field.
//! Case counts are fixed so the suite stays within a second or two in CI.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use tracer_common::{
    v4_mapped, CaptureHead, DropRecord, FibRecord, HashRecord, PacketRecord, AF_INET, AF_INET6,
    DIR_EGRESS, DIR_INGRESS, FRAG_IS, FRAG_MORE, FRAG_ORPHAN, HASH_HOOK_FEXIT, HASH_HOOK_KRETPROBE,
    KIND_CAPTURE, KIND_DROP, KIND_FIB, KIND_HASH, KIND_PACKET, SNAP_MAX,
};

use super::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1024,
        // No regression files written into the source tree by CI runs.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn bytes_of<T>(v: &T) -> Vec<u8> {
    // SAFETY: a view of a `#[repr(C)]` plain-old-data record as its bytes.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
        .to_vec()
}

/// The family byte and 16-byte form of an address, as the programs store it.
fn raw(ip: IpAddr) -> (u8, [u8; 16]) {
    match ip {
        IpAddr::V4(a) => (AF_INET, v4_mapped(a.octets())),
        IpAddr::V6(a) => (AF_INET6, a.octets()),
    }
}

/// Two addresses of one family (a record has one family byte).
fn addr_pair() -> impl Strategy<Value = (IpAddr, IpAddr, IpAddr)> {
    prop_oneof![
        any::<([u8; 4], [u8; 4], [u8; 4])>().prop_map(|(a, b, c)| (
            IpAddr::V4(Ipv4Addr::from(a)),
            IpAddr::V4(Ipv4Addr::from(b)),
            IpAddr::V4(Ipv4Addr::from(c))
        )),
        any::<([u8; 16], [u8; 16], [u8; 16])>().prop_map(|(a, b, c)| (
            IpAddr::V6(Ipv6Addr::from(a)),
            IpAddr::V6(Ipv6Addr::from(b)),
            IpAddr::V6(Ipv6Addr::from(c))
        )),
    ]
}

fn vlan() -> impl Strategy<Value = Vlan> {
    (
        0u8..=2,
        any::<u16>(),
        0u8..8,
        any::<u16>(),
        any::<u16>(),
        0u8..8,
    )
        .prop_map(|(tags, id, pcp, tpid, inner_id, inner_pcp)| Vlan {
            tags,
            id,
            pcp,
            tpid,
            inner_id,
            inner_pcp,
        })
}

fn frag() -> impl Strategy<Value = Option<Frag>> {
    proptest::option::of(
        (any::<u32>(), any::<u16>(), any::<bool>(), any::<bool>()).prop_map(
            |(id, offset, more, orphan)| Frag {
                id,
                offset,
                more,
                orphan,
            },
        ),
    )
}

fn packet() -> impl Strategy<Value = Packet> {
    (
        (
            any::<u64>(),
            any::<u32>(),
            any::<bool>(),
            any::<u8>(),
            addr_pair(),
        ),
        (any::<u16>(), any::<u16>(), any::<u16>(), any::<u8>()),
        (
            any::<[u8; 6]>(),
            any::<[u8; 6]>(),
            vlan(),
            any::<u32>(),
            any::<u32>(),
        ),
        frag(),
    )
        .prop_map(
            |(
                (ts_ns, ifindex, egress, proto, (src, dst, _)),
                (sport, dport, len, tcp_flags),
                (eth_src, eth_dst, vlan, mark, hash),
                frag,
            )| Packet {
                ts_ns,
                ifindex,
                dir: if egress { Dir::Egress } else { Dir::Ingress },
                proto,
                src,
                dst,
                sport,
                dport,
                len,
                tcp_flags,
                eth_src,
                eth_dst,
                vlan,
                mark,
                hash,
                frag,
                snap: None,
            },
        )
}

fn encode_packet(p: &Packet, kind: u32, site: u16) -> PacketRecord {
    let (family, src) = raw(p.src);
    let (_, dst) = raw(p.dst);
    let f = p.frag.unwrap_or(Frag {
        id: 0,
        offset: 0,
        more: false,
        orphan: false,
    });
    PacketRecord {
        kind,
        ifindex: p.ifindex,
        ts_ns: p.ts_ns,
        src,
        dst,
        eth_src: p.eth_src,
        eth_dst: p.eth_dst,
        sport: p.sport,
        dport: p.dport,
        ip_len: p.len,
        vlan: p.vlan.id,
        mark: p.mark,
        hash: p.hash,
        dir: if p.dir == Dir::Egress {
            DIR_EGRESS
        } else {
            DIR_INGRESS
        },
        family,
        proto: p.proto,
        tcp_flags: p.tcp_flags,
        vlan_inner: p.vlan.inner_id,
        vlan_tpid: p.vlan.tpid,
        vlan_prio: p.vlan.pcp | (p.vlan.inner_pcp << 4),
        vlan_tags: p.vlan.tags,
        frag: match p.frag {
            None => 0,
            Some(f) => {
                FRAG_IS
                    | if f.more { FRAG_MORE } else { 0 }
                    | if f.orphan { FRAG_ORPHAN } else { 0 }
            }
        },
        _pad: 0,
        frag_off: f.offset,
        site,
        frag_id: f.id,
    }
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes: an error or an event, never a panic. Half the inputs start with a real
    /// kind, so the field checks behind the length check are reached too.
    #[test]
    fn arbitrary_bytes_never_panic(
        kind in prop_oneof![Just(None), (0u32..=6).prop_map(Some)],
        mut bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        if let (Some(k), true) = (kind, bytes.len() >= 4) {
            bytes[..4].copy_from_slice(&k.to_ne_bytes());
        }
        let _ = decode(&bytes);
    }

    /// A capture record whose `cap_len` claims more bytes than follow is refused, not read
    /// past its end.
    #[test]
    fn a_capture_longer_than_its_record_is_refused(
        p in packet(),
        data in proptest::collection::vec(any::<u8>(), 0..64),
        extra in 1u32..100_000,
    ) {
        let head = CaptureHead {
            packet: encode_packet(&p, KIND_CAPTURE, 1),
            wire_len: 0,
            cap_len: data.len() as u32 + extra,
        };
        let mut bytes = bytes_of(&head);
        bytes.extend_from_slice(&data);
        prop_assert_eq!(decode(&bytes), Err(DecodeError::BadField("cap_len")));
    }

    #[test]
    fn packet_records_round_trip(p in packet(), site in any::<u16>()) {
        let bytes = bytes_of(&encode_packet(&p, KIND_PACKET, site));
        prop_assert_eq!(decode(&bytes), Ok((site, Event::Packet(p))));
    }

    /// Capture records: the packet, its wire length and its bytes, whatever slack the ring
    /// leaves after them.
    #[test]
    fn capture_records_round_trip(
        p in packet(),
        site in any::<u16>(),
        wire_len in any::<u32>(),
        data in proptest::collection::vec(any::<u8>(), 0..=SNAP_MAX),
        slack in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let head = CaptureHead {
            packet: encode_packet(&p, KIND_CAPTURE, site),
            wire_len,
            cap_len: data.len() as u32,
        };
        let mut bytes = bytes_of(&head);
        bytes.extend_from_slice(&data);
        bytes.extend_from_slice(&slack);
        let want = Packet {
            snap: Some(Box::new(Snap { wire_len, bytes: data })),
            ..p
        };
        prop_assert_eq!(decode(&bytes), Ok((site, Event::Packet(want))));
    }

    #[test]
    fn fib_records_round_trip(
        (ts_ns, table, err, iif, oif) in any::<(u64, u32, i32, i32, i32)>(),
        (proto, sport, dport, mark, site) in any::<(u8, u16, u16, u32, u16)>(),
        (src, dst, gw) in addr_pair(),
        dev in "[a-z0-9.-]{0,16}",
        after_ingress in any::<bool>(),
    ) {
        let (family, s) = raw(src);
        let mut dev_raw = [0u8; 16];
        dev_raw[..dev.len()].copy_from_slice(dev.as_bytes());
        let r = FibRecord {
            kind: KIND_FIB, table, ts_ns, err, oif, iif, sport, dport,
            src: s, dst: raw(dst).1, gw: raw(gw).1, dev: dev_raw, mark, family, proto, site,
            tie: u8::from(after_ingress), _pad: [0; 7],
        };
        let want = FibLookup {
            ts_ns, table, err, iif, oif, proto, src, dst, sport, dport, gw, dev, mark, after_ingress,
        };
        prop_assert_eq!(decode(&bytes_of(&r)), Ok((site, Event::Fib(want))));
    }

    #[test]
    fn hash_records_round_trip(
        (ts_ns, hash, sport, dport, proto, site) in any::<(u64, u32, u16, u16, u8, u16)>(),
        (src, dst, _) in addr_pair(),
        kretprobe in any::<bool>(),
    ) {
        let (family, s) = raw(src);
        let r = HashRecord {
            kind: KIND_HASH, hash, ts_ns, src: s, dst: raw(dst).1, sport, dport, proto, family,
            hook: if kretprobe { HASH_HOOK_KRETPROBE } else { HASH_HOOK_FEXIT },
            _pad: 0, site, _pad2: [0; 6],
        };
        let want = HashSample {
            ts_ns, hash, src, dst, sport, dport, proto,
            hook: if kretprobe { "kretprobe" } else { "fexit" },
        };
        prop_assert_eq!(decode(&bytes_of(&r)), Ok((site, Event::Hash(want))));
    }

    #[test]
    fn drop_records_round_trip(
        (ts_ns, ifindex, location, reason) in any::<(u64, u32, u64, u32)>(),
        (mark, sport, dport, proto, site) in any::<(u32, u16, u16, u8, u16)>(),
        (src, dst, _) in addr_pair(),
    ) {
        let (family, s) = raw(src);
        let r = DropRecord {
            kind: KIND_DROP, ifindex, ts_ns, location, src: s, dst: raw(dst).1, reason, mark,
            sport, dport, family, proto, site,
        };
        let want = Drop { ts_ns, ifindex, reason, location, proto, src, dst, sport, dport, mark };
        prop_assert_eq!(decode(&bytes_of(&r)), Ok((site, Event::Drop(want))));
    }
}
