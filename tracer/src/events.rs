//! Decoding of ring-buffer records into typed events.
//!
//! This is the only place that knows the byte layout of `tracer_common` records; every
//! later stage works on [`Event`]. Decoding never panics: short or unknown records are
//! reported as errors and skipped by the caller.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tracer_common::{
    CaptureHead, DropRecord, FibRecord, HashRecord, PacketRecord, AF_INET, AF_INET6, DIR_EGRESS,
    DIR_INGRESS, FRAG_IS, FRAG_MORE, FRAG_ORPHAN, HASH_HOOK_FEXIT, HASH_HOOK_KRETPROBE,
    KIND_CAPTURE, KIND_DROP, KIND_FIB, KIND_HASH, KIND_PACKET,
};

/// TC hook direction on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    Ingress,
    Egress,
}

impl Dir {
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::Ingress => "ingress",
            Dir::Egress => "egress",
        }
    }
}

pub type Mac = [u8; 6];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub ts_ns: u64,
    pub ifindex: u32,
    pub dir: Dir,
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub len: u16,
    pub tcp_flags: u8,
    pub eth_src: Mac,
    pub eth_dst: Mac,
    pub vlan: Vlan,
    pub mark: u32,
    pub hash: u32,
    /// Set when the packet is an IP fragment.
    pub frag: Option<Frag>,
    /// The frame's first bytes, with `--pcap` only. Boxed: every event waiting in the
    /// reorder window is the size of a packet, and most have no capture.
    pub snap: Option<Box<Snap>>,
}

/// The first bytes of a frame as the TC program copied them (`--pcap`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snap {
    /// The frame's length at the hook (`skb->len`).
    pub wire_len: u32,
    pub bytes: Vec<u8>,
}

/// An IP fragment: which datagram, where in it, and whether its ports are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frag {
    /// IPv4 identification or IPv6 fragment header identification.
    pub id: u32,
    /// Offset of its payload in the datagram, in bytes (0: the first fragment).
    pub offset: u16,
    pub more: bool,
    /// A later fragment whose first fragment was not seen: counted under ports 0.
    pub orphan: bool,
}

/// The VLAN tags of a frame, outermost first (802.1Q, or 802.1ad QinQ with two), whether
/// the kernel keeps a tag in the skb's metadata or in the frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vlan {
    /// Tags seen, 0 to 2.
    pub tags: u8,
    /// Outer VLAN id (0 without a tag), its priority (PCP) and TPID.
    pub id: u16,
    pub pcp: u8,
    pub tpid: u16,
    /// Inner VLAN id and priority of a QinQ frame (0 without).
    pub inner_id: u16,
    pub inner_pcp: u8,
}

impl Vlan {
    /// `100` or `100.200` (outer.inner), empty without a tag.
    pub fn ids_text(&self) -> String {
        match self.tags {
            0 => String::new(),
            1 => self.id.to_string(),
            _ => format!("{}.{}", self.id, self.inner_id),
        }
    }
}

/// A routing table lookup made for a traced packet (`fib*:fib*_table_lookup`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FibLookup {
    pub ts_ns: u64,
    pub table: u32,
    pub err: i32,
    pub iif: i32,
    pub oif: i32,
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// First usable next-hop of the matched route; unspecified when the route has none.
    pub gw: IpAddr,
    pub dev: String,
    /// The mark the lookup used (fwmark rules select on it): the lookup's own where the raw
    /// hooks read it, else the packet's at its ingress hook.
    pub mark: u32,
    /// The lookup did not follow its packet's ingress hook (it ran after an NFQUEUE verdict,
    /// or with a mark netfilter set): it was tied to the packet at its egress hook.
    pub after_ingress: bool,
}

/// The multipath hash the kernel computed for a traced packet (fexit/kretprobe hooks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashSample {
    pub ts_ns: u64,
    /// As the kernel compares it with the next-hop bounds (already shifted right by one).
    pub hash: u32,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub hook: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Packet(Packet),
    Fib(FibLookup),
    Hash(HashSample),
    Drop(Drop),
}

/// A traced packet the kernel dropped in the traced namespace (`skb:kfree_skb`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drop {
    pub ts_ns: u64,
    pub ifindex: u32,
    /// `enum skb_drop_reason` value (named with the kernel's own table by the loader).
    pub reason: u32,
    /// Kernel code address of the drop.
    pub location: u64,
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub mark: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Short { kind: u32, len: usize },
    UnknownKind(u32),
    BadField(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Short { kind, len } => write!(f, "record of kind {kind} is {len} bytes"),
            DecodeError::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            DecodeError::BadField(name) => write!(f, "record field {name} out of range"),
        }
    }
}

/// Reads a `#[repr(C)]` plain-old-data record from the start of `bytes`.
fn read_pod<T: Copy + Default>(bytes: &[u8], kind: u32) -> Result<T, DecodeError> {
    if bytes.len() < std::mem::size_of::<T>() {
        return Err(DecodeError::Short {
            kind,
            len: bytes.len(),
        });
    }
    // SAFETY: the length is checked above, T is a tracer_common POD type for which every bit
    // pattern is valid, and read_unaligned copes with any alignment of the ring buffer slice.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Decodes a record with the site number (from 1) it is tagged with: every program of every
/// site writes to one ring.
pub fn decode(bytes: &[u8]) -> Result<(u16, Event), DecodeError> {
    let kind = u32::from_ne_bytes(bytes.get(..4).and_then(|b| b.try_into().ok()).ok_or(
        DecodeError::Short {
            kind: 0,
            len: bytes.len(),
        },
    )?);
    match kind {
        KIND_PACKET => {
            let r: PacketRecord = read_pod(bytes, kind)?;
            Ok((r.site, Event::Packet(packet(&r, None)?)))
        }
        KIND_CAPTURE => {
            let head: CaptureHead = read_pod(bytes, kind)?;
            let data = &bytes[std::mem::size_of::<CaptureHead>()..];
            let cap = usize::try_from(head.cap_len).unwrap_or(usize::MAX);
            let bytes = data.get(..cap).ok_or(DecodeError::BadField("cap_len"))?;
            let snap = Snap {
                wire_len: head.wire_len,
                bytes: bytes.to_vec(),
            };
            Ok((
                head.packet.site,
                Event::Packet(packet(&head.packet, Some(Box::new(snap)))?),
            ))
        }
        KIND_FIB => {
            let r: FibRecord = read_pod(bytes, kind)?;
            Ok((
                r.site,
                Event::Fib(FibLookup {
                    ts_ns: r.ts_ns,
                    table: r.table,
                    err: r.err,
                    iif: r.iif,
                    oif: r.oif,
                    proto: r.proto,
                    src: addr(r.family, r.src)?,
                    dst: addr(r.family, r.dst)?,
                    sport: r.sport,
                    dport: r.dport,
                    gw: addr(r.family, r.gw)?,
                    dev: c_string(&r.dev),
                    mark: r.mark,
                    after_ingress: r.tie == tracer_common::TIE_EGRESS,
                }),
            ))
        }
        KIND_HASH => {
            let r: HashRecord = read_pod(bytes, kind)?;
            Ok((
                r.site,
                Event::Hash(HashSample {
                    ts_ns: r.ts_ns,
                    hash: r.hash,
                    src: addr(r.family, r.src)?,
                    dst: addr(r.family, r.dst)?,
                    sport: r.sport,
                    dport: r.dport,
                    proto: r.proto,
                    hook: match r.hook {
                        HASH_HOOK_FEXIT => "fexit",
                        HASH_HOOK_KRETPROBE => "kretprobe",
                        _ => return Err(DecodeError::BadField("hook")),
                    },
                }),
            ))
        }
        KIND_DROP => {
            let r: DropRecord = read_pod(bytes, kind)?;
            Ok((
                r.site,
                Event::Drop(Drop {
                    ts_ns: r.ts_ns,
                    ifindex: r.ifindex,
                    reason: r.reason,
                    location: r.location,
                    proto: r.proto,
                    src: addr(r.family, r.src)?,
                    dst: addr(r.family, r.dst)?,
                    sport: r.sport,
                    dport: r.dport,
                    mark: r.mark,
                }),
            ))
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

/// The typed packet of a packet record (and of a capture record's head).
fn packet(r: &PacketRecord, snap: Option<Box<Snap>>) -> Result<Packet, DecodeError> {
    Ok(Packet {
        ts_ns: r.ts_ns,
        ifindex: r.ifindex,
        dir: match r.dir {
            DIR_INGRESS => Dir::Ingress,
            DIR_EGRESS => Dir::Egress,
            _ => return Err(DecodeError::BadField("dir")),
        },
        proto: r.proto,
        src: addr(r.family, r.src)?,
        dst: addr(r.family, r.dst)?,
        sport: r.sport,
        dport: r.dport,
        len: r.ip_len,
        tcp_flags: r.tcp_flags,
        eth_src: r.eth_src,
        eth_dst: r.eth_dst,
        vlan: Vlan {
            tags: r.vlan_tags.min(2),
            id: r.vlan,
            pcp: r.vlan_prio & 0x07,
            tpid: r.vlan_tpid,
            inner_id: r.vlan_inner,
            inner_pcp: (r.vlan_prio >> 4) & 0x07,
        },
        mark: r.mark,
        hash: r.hash,
        frag: (r.frag & FRAG_IS != 0).then_some(Frag {
            id: r.frag_id,
            offset: r.frag_off,
            more: r.frag & FRAG_MORE != 0,
            orphan: r.frag & FRAG_ORPHAN != 0,
        }),
        snap,
    })
}

/// Addresses travel as 16 bytes, IPv4 ones IPv4-mapped (see `tracer_common::v4_mapped`).
fn addr(family: u8, raw: [u8; 16]) -> Result<IpAddr, DecodeError> {
    match family {
        AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(
            raw[12], raw[13], raw[14], raw[15],
        ))),
        AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(raw))),
        _ => Err(DecodeError::BadField("family")),
    }
}

/// One hop's exact count from the kernel's `HOPS` map (every packet, recorded or not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HopCounted {
    pub ifindex: u32,
    pub dir: Dir,
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// The next-hop MAC on a routed egress hop, zero elsewhere.
    pub eth_dst: Mac,
    pub packets: u64,
    pub bytes: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

impl HopCounted {
    pub fn new(k: &tracer_common::HopKey, v: &tracer_common::HopCount) -> HopCounted {
        HopCounted {
            ifindex: k.ifindex,
            dir: if k.dir == DIR_EGRESS {
                Dir::Egress
            } else {
                Dir::Ingress
            },
            proto: k.proto,
            src: key_addr(k.src),
            dst: key_addr(k.dst),
            sport: k.sport,
            dport: k.dport,
            eth_dst: k.eth_dst,
            packets: v.packets,
            bytes: v.bytes,
            first_ns: v.first_ns,
            last_ns: v.last_ns,
        }
    }
}

/// A 16-byte map address: IPv4-mapped ones are IPv4.
fn key_addr(raw: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(raw);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// Key form of an address in the eBPF VIP map.
pub fn vip_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => tracer_common::v4_mapped(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn c_string(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

pub fn fmt_mac(mac: &Mac) -> String {
    MacText::new(mac).as_str().to_string()
}

/// A MAC as `02:00:00:00:00:0b`, formatted on the stack: the JSON output writes one or two
/// per record and allocates nothing for them.
pub struct MacText([u8; 17]);

impl MacText {
    pub fn new(mac: &Mac) -> MacText {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut t = [b':'; 17];
        for (i, b) in mac.iter().enumerate() {
            t[3 * i] = HEX[usize::from(b >> 4)];
            t[3 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        MacText(t)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits and colons")
    }
}

/// TCP flags in tcpdump's order, e.g. "SYN,ACK".
pub fn fmt_tcp_flags(flags: u8) -> String {
    FlagsText::new(flags).as_str().to_string()
}

/// TCP flags as `SYN,ACK` (empty when none), formatted on the stack.
pub struct FlagsText {
    text: [u8; 31],
    len: usize,
}

impl FlagsText {
    pub fn new(flags: u8) -> FlagsText {
        const NAMES: [(u8, &[u8; 3]); 8] = [
            (0x02, b"SYN"),
            (0x10, b"ACK"),
            (0x01, b"FIN"),
            (0x04, b"RST"),
            (0x08, b"PSH"),
            (0x20, b"URG"),
            (0x40, b"ECE"),
            (0x80, b"CWR"),
        ];
        let mut t = FlagsText {
            text: [b','; 31],
            len: 0,
        };
        for (bit, name) in NAMES {
            if flags & bit != 0 {
                let at = if t.len == 0 { 0 } else { t.len + 1 };
                t.text[at..at + 3].copy_from_slice(name);
                t.len = at + 3;
            }
        }
        t
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text[..self.len]).expect("ASCII names and commas")
    }
}

pub fn proto_name(proto: u8) -> &'static str {
    match proto {
        tracer_common::PROTO_TCP => "tcp",
        tracer_common::PROTO_UDP => "udp",
        tracer_common::PROTO_ICMP => "icmp",
        tracer_common::PROTO_ICMPV6 => "icmpv6",
        _ => "ip",
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    /// The event alone, for tests that do not look at the site.
    fn event(bytes: &[u8]) -> Result<Event, DecodeError> {
        decode(bytes).map(|(_, ev)| ev)
    }

    fn as_bytes<T>(v: &T) -> Vec<u8> {
        // SAFETY: test-only view of a POD record as bytes.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
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
}
