//! The exact per-hop counts (`HOPS`), which the record budget is measured against, and the
//! per-VIP totals by topology (`TOTALS`), which no flood can evict.
use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::bindings::BPF_NOEXIST;
use tracer_common::{HopCount, HopKey, TotalCount, TotalKey, COUNTER_HOP_NEW, COUNTER_TOTALS_FULL};

use crate::{
    clock::now_ns,
    events::bump,
    maps::{HOPS, TOTALS},
};

/// Adds to a counter several CPUs may update at once.
#[inline(always)]
fn add(counter: *mut u64, n: u64) {
    // SAFETY: `counter` points into a map value; the add is atomic.
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, n);
    }
}

/// What counting a packet found.
pub struct Counted {
    /// The packet made the hop's entry: its time (precise), else 0.
    pub first_ns: u64,
    /// The hop's packets with this one (read back racily: close enough for the budget).
    pub packets: u64,
}

/// Counts one packet of a hop, seen at `seen_ns` (coarse: see `clock`); the packet that
/// makes the entry stamps it with the precise time.
#[inline(always)]
pub fn count(key: &HopKey, ip_len: u16, seen_ns: u64) -> Counted {
    let c = match HOPS.get_ptr_mut(key) {
        Some(c) => c,
        None => {
            let now = now_ns();
            let fresh = HopCount {
                packets: 1,
                bytes: u64::from(ip_len),
                first_ns: now,
                last_ns: now,
            };
            if HOPS.insert(key, fresh, BPF_NOEXIST as u64).is_ok() {
                bump(COUNTER_HOP_NEW);
                return Counted {
                    first_ns: now,
                    packets: 1,
                };
            }
            // Another CPU created it meanwhile.
            match HOPS.get_ptr_mut(key) {
                Some(c) => c,
                None => {
                    return Counted {
                        first_ns: 0,
                        packets: 0,
                    }
                }
            }
        }
    };
    // SAFETY: a map value pointer; the time is a plain store (the latest writer wins).
    unsafe {
        add(core::ptr::addr_of_mut!((*c).packets), 1);
        add(core::ptr::addr_of_mut!((*c).bytes), u64::from(ip_len));
        (*c).last_ns = seen_ns;
        Counted {
            first_ns: 0,
            packets: (*c).packets,
        }
    }
}

/// Adds one packet to its VIP's total on this hop (the hop key less the client's address
/// and ports); `new_flow` also counts it as a flow.
#[inline(always)]
pub fn total(key: &HopKey, to_vip: bool, ip_len: u16, new_flow: bool) {
    let tkey = TotalKey {
        vip: if to_vip { key.dst } else { key.src },
        ifindex: key.ifindex,
        eth_dst: key.eth_dst,
        proto: key.proto,
        dir: key.dir,
        site: key.site,
        _pad: 0,
    };
    let flows = u64::from(new_flow);
    let c = match TOTALS.get_ptr_mut(tkey) {
        Some(c) => c,
        None => {
            let fresh = TotalCount {
                packets: 1,
                bytes: u64::from(ip_len),
                flows,
            };
            if TOTALS.insert(tkey, fresh, BPF_NOEXIST as u64).is_ok() {
                return;
            }
            // Another CPU created it meanwhile, or the map is full.
            match TOTALS.get_ptr_mut(tkey) {
                Some(c) => c,
                None => {
                    bump(COUNTER_TOTALS_FULL);
                    return;
                }
            }
        }
    };
    // SAFETY: a map value pointer; every field is an atomic add.
    unsafe {
        add(core::ptr::addr_of_mut!((*c).packets), 1);
        add(core::ptr::addr_of_mut!((*c).bytes), u64::from(ip_len));
        if new_flow {
            add(core::ptr::addr_of_mut!((*c).flows), 1);
        }
    }
}
