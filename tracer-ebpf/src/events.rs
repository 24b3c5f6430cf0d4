//! Writing to the ring buffer, and the per-CPU counters of what was and was not written.
use crate::maps::{COUNTERS, EVENTS};
use tracer_common::RING_WAKEUP_BYTES;

/// Submit flags for a record: wake the reader only once `RING_WAKEUP_BYTES` wait.
#[inline(always)]
pub fn wakeup() -> u64 {
    const BPF_RB_NO_WAKEUP: u64 = 1;
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    const BPF_RB_AVAIL_DATA: u64 = 0;
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= RING_WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// Adds one to a `COUNTER_*` of this CPU.
#[inline(always)]
pub fn bump(counter: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(counter) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}
