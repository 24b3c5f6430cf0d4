//! The exact per-hop counts (`HOPS`), which the record budget is measured against.
use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::bindings::BPF_NOEXIST;
use tracer_common::{HopCount, HopKey, COUNTER_HOP_NEW};

use crate::{events::bump, maps::HOPS};

/// Adds to a counter several CPUs may update at once.
#[inline(always)]
fn add(counter: *mut u64, n: u64) {
    // SAFETY: `counter` points into a map value; the add is atomic.
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, n);
    }
}

/// Counts one packet of a hop; returns whether it created the entry, and the hop's
/// packet count after it (read back racily: close enough for the record budget).
#[inline(always)]
pub fn count(key: &HopKey, ip_len: u16, ts_ns: u64) -> (bool, u64) {
    let c = match HOPS.get_ptr_mut(key) {
        Some(c) => c,
        None => {
            let fresh = HopCount {
                packets: 1,
                bytes: u64::from(ip_len),
                first_ns: ts_ns,
                last_ns: ts_ns,
            };
            if HOPS.insert(key, fresh, BPF_NOEXIST as u64).is_ok() {
                bump(COUNTER_HOP_NEW);
                return (true, 1);
            }
            // Another CPU created it meanwhile.
            match HOPS.get_ptr_mut(key) {
                Some(c) => c,
                None => return (false, 0),
            }
        }
    };
    // SAFETY: a map value pointer; the time is a plain store (the latest writer wins).
    unsafe {
        add(core::ptr::addr_of_mut!((*c).packets), 1);
        add(core::ptr::addr_of_mut!((*c).bytes), u64::from(ip_len));
        (*c).last_ns = ts_ns;
        (false, (*c).packets)
    }
}
