//! Records to events: the one place that reads the byte layout of `tracer_common` records.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tracer_common::{
    CaptureHead, DropRecord, FibRecord, HashRecord, PacketRecord, AF_INET, AF_INET6, DIR_EGRESS,
    DIR_INGRESS, FRAG_IS, FRAG_MORE, FRAG_ORPHAN, HASH_HOOK_FEXIT, HASH_HOOK_KRETPROBE,
    KIND_CAPTURE, KIND_DROP, KIND_FIB, KIND_HASH, KIND_PACKET,
};

use super::model::*;

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

fn c_string(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}
