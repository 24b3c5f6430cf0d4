//! The IPv4 and IPv6 headers, at a constant offset `L3`: every header read before the VIP
//! test is at a constant offset, which every verifier can bound for direct packet access.
//! The transport header's offset depends on the IPv4 header length and the IPv6 extension
//! headers, so its (VIP packets only) reads go through `bpf_skb_load_bytes`.
use aya_ebpf::programs::TcContext;
use network_types::ip::Ipv6Hdr;
use tracer_common::{v4_mapped, HopKey, AF_INET, AF_INET6, FRAG_IS, FRAG_MORE};

use super::{rd, ETH_P_IP, ETH_P_IPV6};
use crate::vip::{is_vip, is_vip_v4};

/// IPv6 extension headers walked to the transport header (hop-by-hop, routing,
/// destination options, fragment; more than this and the packet is not traced).
const IPV6_EXT_MAX: usize = 4;
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_DEST: u8 = 60;

/// What the IP header told, besides the addresses and protocol (which go into the hop key).
pub struct Ip {
    pub family: u8,
    /// The VIP is the destination (else the source).
    pub to_vip: bool,
    /// The IP packet's length, header included.
    pub len: u16,
    /// Where the transport header starts.
    pub l4: usize,
    /// `FRAG_*` bits, offset in bytes and datagram id, when the packet is a fragment.
    pub frag: u8,
    pub frag_off: u16,
    pub frag_id: u32,
}

/// Parses the IP header of a packet of `ether_type` into `key` (addresses, protocol);
/// `None` when it is not IP, or not to or from a VIP: the VIP test comes right after the
/// addresses, before anything else is read.
#[inline(always)]
pub fn parse<const L3: usize>(
    ctx: &TcContext,
    ether_type: u16,
    key: &mut HopKey,
) -> Result<Option<Ip>, ()> {
    match ether_type {
        ETH_P_IP => ipv4::<L3>(ctx, key),
        ETH_P_IPV6 => ipv6::<L3>(ctx, key),
        _ => Ok(None),
    }
}

#[inline(always)]
fn ipv4<const L3: usize>(ctx: &TcContext, key: &mut HopKey) -> Result<Option<Ip>, ()> {
    let l3 = L3;
    // Version/IHL, total length, protocol and both addresses, each read on its own.
    let src: [u8; 4] = rd(ctx, l3 + 12)?;
    let dst: [u8; 4] = rd(ctx, l3 + 16)?;
    let to_vip = is_vip_v4(dst);
    if !to_vip && !is_vip_v4(src) {
        return Ok(None);
    }
    key.src = v4_mapped(src);
    key.dst = v4_mapped(dst);
    let vihl: u8 = rd(ctx, l3)?;
    let ihl = (vihl & 0x0f) as usize;
    if ihl < 5 {
        return Ok(None);
    }
    key.proto = rd(ctx, l3 + 9)?;
    let tot_len = u16::from_be(rd::<u16>(ctx, l3 + 2)?);
    let mut ip = Ip {
        family: AF_INET,
        to_vip,
        len: tot_len,
        l4: l3 + ihl * 4,
        frag: 0,
        frag_off: 0,
        frag_id: 0,
    };
    // Identification and flags/fragment offset.
    let id_frag: [u8; 4] = rd(ctx, l3 + 4)?;
    let frag_field = u16::from_be_bytes([id_frag[2], id_frag[3]]);
    if frag_field & 0x3fff != 0 {
        ip.frag = FRAG_IS
            | if frag_field & 0x2000 != 0 {
                FRAG_MORE
            } else {
                0
            };
        ip.frag_off = (frag_field & 0x1fff) << 3;
        ip.frag_id = u32::from(u16::from_be_bytes([id_frag[0], id_frag[1]]));
    }
    Ok(Some(ip))
}

#[inline(always)]
fn ipv6<const L3: usize>(ctx: &TcContext, key: &mut HopKey) -> Result<Option<Ip>, ()> {
    let l3 = L3;
    key.src = rd(ctx, l3 + 8)?;
    key.dst = rd(ctx, l3 + 24)?;
    let to_vip = is_vip(&key.dst);
    if !to_vip && !is_vip(&key.src) {
        return Ok(None);
    }
    let payload_len = u16::from_be(rd::<u16>(ctx, l3 + 4)?);
    let mut ip = Ip {
        family: AF_INET6,
        to_vip,
        len: payload_len.wrapping_add(Ipv6Hdr::LEN as u16),
        l4: 0,
        frag: 0,
        frag_off: 0,
        frag_id: 0,
    };
    // Walk the extension headers to the transport header, a bounded number of
    // them. Offsets past the fixed header vary: read through the helper.
    let mut next: u8 = rd(ctx, l3 + 6)?;
    let mut off = l3 + Ipv6Hdr::LEN;
    for _ in 0..IPV6_EXT_MAX {
        match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => {
                let h: [u8; 2] = ctx.load(off).map_err(|_| ())?;
                next = h[0];
                off += (h[1] as usize + 1) * 8;
            }
            NEXTHDR_FRAGMENT => {
                let h: [u8; 8] = ctx.load(off).map_err(|_| ())?;
                next = h[0];
                off += 8;
                let field = u16::from_be_bytes([h[2], h[3]]);
                ip.frag = FRAG_IS | if field & 1 != 0 { FRAG_MORE } else { 0 };
                ip.frag_off = field & 0xfff8;
                ip.frag_id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                if ip.frag_off != 0 {
                    break; // no more headers in a non-first fragment
                }
            }
            _ => break,
        }
    }
    key.proto = next;
    ip.l4 = off;
    Ok(Some(ip))
}
