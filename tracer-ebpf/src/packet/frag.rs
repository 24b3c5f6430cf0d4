//! Fragments tied to their datagram: the first fragment leaves its ports in `FRAGS` for the
//! later ones, which carry no transport header.
use tracer_common::{FragKey, HopKey, FRAG_IS, FRAG_MORE, PROTO_TCP, PROTO_UDP};

use super::Ip;
use crate::maps::FRAGS;

#[inline(always)]
fn frag_key(key: &HopKey, id: u32) -> FragKey {
    FragKey {
        src: key.src,
        dst: key.dst,
        id,
        proto: key.proto,
        _pad: [0; 3],
    }
}

/// A first fragment of TCP or UDP: its datagram's later fragments will look their ports up
/// here.
#[inline(always)]
pub fn remember_first(key: &HopKey, ip: &Ip) {
    if ip.frag & (FRAG_IS | FRAG_MORE) == FRAG_IS | FRAG_MORE
        && ip.frag_off == 0
        && (key.proto == PROTO_TCP || key.proto == PROTO_UDP)
    {
        let _ = FRAGS.insert(frag_key(key, ip.frag_id), [key.sport, key.dport], 0);
    }
}

/// The ports of a later fragment's datagram, if its first fragment was seen.
#[inline(always)]
pub fn ports(key: &HopKey, id: u32) -> Option<[u16; 2]> {
    // SAFETY: the value is copied out at once.
    unsafe { FRAGS.get(frag_key(key, id)).copied() }
}
