//! How a traced packet and its route lookup find each other, through per-CPU slots: the TC
//! ingress hook leaves the packet in `LAST_INGRESS` for the lookup that follows on its CPU,
//! and a lookup made later (after the load balancer's queue) waits in `LAST_LOOKUP` for the
//! TC egress hook its packet reaches next.
use tracer_common::{FibRecord, HopKey, COUNTER_LOST, KIND_FIB, TIE_EGRESS};

use crate::{
    clock::now_ns,
    events::{bump, wakeup},
    maps::{LastIngress, DEFER_ARMED, EVENTS, LAST_INGRESS, LAST_LOOKUP},
};

/// A lookup further from its ingress hook than this is not the same packet's. The slot is
/// cleared by the packet's first successful lookup and by any TC egress hook anyway; the
/// age only retires a slot whose packet died unseen. Generous: in an emulated (TCG)
/// machine the first packet of a flow took 5 ms from bridge0 ingress to its lookup.
pub const LAST_INGRESS_MAX_AGE_NS: u64 = 20_000_000;

/// How long after a traced packet entered toward a VIP its lookup may still come (nfqlb's
/// queue can hold a packet for milliseconds under load; generous, as the other ages).
const DEFER_ARMED_NS: u64 = 1_000_000_000;

#[inline(always)]
pub fn arm_deferred_lookups(now: u64) {
    if let Some(t) = DEFER_ARMED.get_ptr_mut(0) {
        // SAFETY: a map value; a plain store (the latest writer wins, any is recent).
        unsafe { *t = now };
    }
}

/// Whether a traced packet entered toward a VIP recently enough for its lookup to come.
#[inline(always)]
pub fn deferred_lookups_armed() -> bool {
    match DEFER_ARMED.get(0) {
        Some(&t) if t != 0 => now_ns().wrapping_sub(t) < DEFER_ARMED_NS,
        _ => false,
    }
}

/// The ingress side of `LAST_INGRESS`: a packet entering a routed interface, for its route
/// lookup. `ts_ns` 0 leaves the slot empty (a packet the budget leaves out gets no lookup
/// or hash records either).
#[inline(always)]
pub fn remember_ingress(key: &HopKey, family: u8, mark: u32, ts_ns: u64) {
    if let Some(last) = LAST_INGRESS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, only this CPU writes it. Field by field: a whole
        // LastIngress on the BPF stack would not fit beside the rest.
        unsafe {
            (*last).ts_ns = ts_ns;
            (*last).src = key.src;
            (*last).dst = key.dst;
            (*last).ifindex = key.ifindex;
            (*last).mark = mark;
            (*last).sport = key.sport;
            (*last).dport = key.dport;
            (*last).proto = key.proto;
            (*last).family = family;
            (*last).routed = 0;
            (*last).site = key.site;
        }
    }
}

#[inline(always)]
pub fn forget_last_ingress() {
    if let Some(last) = LAST_INGRESS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe { (*last).ts_ns = 0 };
    }
}

/// The packet's route is found: later lookups belong to other packets.
#[inline(always)]
pub fn mark_routed() {
    if let Some(last) = LAST_INGRESS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe { (*last).routed = 1 };
    }
}

/// The traced packet this CPU is routing right now, if any: the cheapest reject of every
/// route lookup on the node (see `LAST_INGRESS`), before anything else is read.
#[inline(always)]
pub fn pending_lookup(family: u8) -> Option<(&'static LastIngress, u64)> {
    let last = LAST_INGRESS.get(0)?;
    if last.ts_ns == 0 || last.routed != 0 || last.family != family {
        return None;
    }
    let now = now_ns();
    if now.wrapping_sub(last.ts_ns) > LAST_INGRESS_MAX_AGE_NS {
        return None;
    }
    Some((last, now))
}

/// The egress side of `LAST_LOOKUP`: a routed packet with the waiting lookup's addresses
/// and mark, in its namespace, takes the lookup (written only when the packet is recorded,
/// `now` not 0, as a lookup tied at ingress is).
#[inline(always)]
pub fn tie_lookup(key: &HopKey, family: u8, mark: u32, now: u64) {
    let Some(l) = LAST_LOOKUP.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU slot, only this CPU reads and writes it.
    let l = unsafe { &mut *l };
    if l.ts_ns == 0
        || l.site != key.site
        || l.family != family
        || l.mark != mark
        || l.src != key.src
        || l.dst != key.dst
    {
        return;
    }
    let ts = l.ts_ns;
    l.ts_ns = 0;
    if now == 0 || now.wrapping_sub(ts) > LAST_INGRESS_MAX_AGE_NS {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<FibRecord>(0) else {
        bump(COUNTER_LOST);
        return;
    };
    let r = entry.as_mut_ptr();
    // SAFETY: `r` points at a reserved, exclusively owned FibRecord-sized slot.
    unsafe {
        (*r).kind = KIND_FIB;
        (*r).table = l.table;
        (*r).ts_ns = ts;
        (*r).err = l.err;
        (*r).oif = l.oif;
        (*r).iif = l.iif;
        (*r).sport = key.sport;
        (*r).dport = key.dport;
        (*r).src = l.src;
        (*r).dst = l.dst;
        (*r).gw = l.gw;
        (*r).dev = l.dev;
        (*r).mark = l.mark;
        (*r).family = family;
        (*r).proto = key.proto;
        (*r).site = l.site;
        (*r).tie = TIE_EGRESS;
        (*r)._pad = [0; 7];
    }
    entry.submit(wakeup());
}
