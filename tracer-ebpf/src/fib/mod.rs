//! The route lookup hooks: raw tracepoints on `fib_table_lookup` / `fib6_table_lookup`
//! ([`raw`]), and the perf tracepoints as the fallback where those cannot load
//! ([`tracepoint`]). Either reports a lookup only for the traced packet waiting for it on
//! this CPU (see [`crate::tie`]).
use aya_ebpf::maps::ring_buf::RingBufEntry;
use tracer_common::{FibRecord, COUNTER_LOST, KIND_FIB, TIE_INGRESS};

use crate::{
    events::{bump, wakeup},
    maps::{LastIngress, EVENTS},
    tie,
};

mod raw;
mod tracepoint;

/// Reserves a fib record and fills what every lookup hook knows the same way; the caller
/// fills `table`, `err`, `oif`, `gw` and `dev`, then calls `submit_fib`.
#[inline(always)]
fn start_fib(
    last: &LastIngress,
    now: u64,
    family: u8,
    iif: i32,
) -> Option<RingBufEntry<FibRecord>> {
    let Some(mut entry) = EVENTS.reserve::<FibRecord>(0) else {
        bump(COUNTER_LOST);
        return None;
    };
    let r = entry.as_mut_ptr();
    // SAFETY: `r` points at a reserved, exclusively owned FibRecord-sized slot. Filled in
    // place: a FibRecord on the BPF stack would not fit beside the reads.
    unsafe {
        (*r).kind = KIND_FIB;
        (*r).ts_ns = now;
        (*r).iif = iif;
        (*r).sport = last.sport;
        (*r).dport = last.dport;
        (*r).src = last.src;
        (*r).dst = last.dst;
        (*r).mark = last.mark;
        (*r).family = family;
        (*r).proto = last.proto;
        (*r).site = last.site;
        (*r).tie = TIE_INGRESS;
        (*r)._pad = [0; 7];
    }
    Some(entry)
}

#[inline(always)]
fn submit_fib(entry: RingBufEntry<FibRecord>, err: i32) {
    entry.submit(wakeup());
    if err == 0 {
        tie::mark_routed();
    }
}
