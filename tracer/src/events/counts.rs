//! The kernel's exact per-hop counters (`HOPS`) and the key form of the VIP map.
use std::net::{IpAddr, Ipv6Addr};

use tracer_common::DIR_EGRESS;

use super::model::*;

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
