//! Which packets are traced: those to or from a VIP (and of the client port, when one is
//! given).
use tracer_common::{v4_mapped, INLINE_VIPS};

use crate::maps::{global, CLIENT_PORT, VIP4, VIP4_COUNT, VIP6, VIP6_COUNT, VIPS, VIPS_IN_MAP};

/// Is this address (IPv4-mapped or IPv6, 16 bytes) a VIP? Inline compares against the
/// read-only globals; the map only when there are too many VIPs to keep inline.
#[inline(always)]
pub fn is_vip(addr: &[u8; 16]) -> bool {
    if global(&VIPS_IN_MAP) != 0 {
        // SAFETY: the value is only tested for presence.
        return unsafe { VIPS.get(addr).is_some() };
    }
    if addr[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] {
        is_vip4(u32::from_ne_bytes([addr[12], addr[13], addr[14], addr[15]]))
    } else {
        let hi = u64::from_ne_bytes([
            addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
        ]);
        let lo = u64::from_ne_bytes([
            addr[8], addr[9], addr[10], addr[11], addr[12], addr[13], addr[14], addr[15],
        ]);
        is_vip6(hi, lo)
    }
}

/// Is this IPv4 address a VIP? Without building its IPv4-mapped form, unless the VIPs are in
/// the map (keyed by that form).
#[inline(always)]
pub fn is_vip_v4(a: [u8; 4]) -> bool {
    if global(&VIPS_IN_MAP) != 0 {
        return is_vip(&v4_mapped(a));
    }
    is_vip4(u32::from_ne_bytes(a))
}

#[inline(always)]
fn is_vip4(a: u32) -> bool {
    let n = global(&VIP4_COUNT) as usize;
    let mut i = 0;
    while i < INLINE_VIPS {
        if i >= n {
            return false;
        }
        if global(&VIP4[i]) == a {
            return true;
        }
        i += 1;
    }
    false
}

#[inline(always)]
fn is_vip6(hi: u64, lo: u64) -> bool {
    let n = global(&VIP6_COUNT) as usize;
    let mut i = 0;
    while i < INLINE_VIPS {
        if i >= n {
            return false;
        }
        let v = global(&VIP6[i]);
        if v[0] == hi && v[1] == lo {
            return true;
        }
        i += 1;
    }
    false
}

/// Keeps a packet of a VIP flow; with a client port, only that client's flow.
#[inline(always)]
pub fn wanted(src: &[u8; 16], dst: &[u8; 16], sport: u16, dport: u16) -> bool {
    let port = global(&CLIENT_PORT);
    if is_vip(dst) {
        port == 0 || sport == port
    } else if is_vip(src) {
        port == 0 || dport == port
    } else {
        false
    }
}

/// Whether a packet whose VIP is the destination (`to_vip`, else the source) is the client
/// port's, when one is given.
#[inline(always)]
pub fn client_port_matches(to_vip: bool, sport: u16, dport: u16) -> bool {
    let port = global(&CLIENT_PORT);
    if port == 0 {
        return true;
    }
    let client = if to_vip { sport } else { dport };
    client == port
}
