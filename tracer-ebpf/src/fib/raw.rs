//! `fib_table_lookup` and `fib6_table_lookup` as raw tracepoints: the kernel calls the
//! program with the lookup's own arguments and formats nothing, so a lookup no traced
//! packet waits for costs one per-CPU map read. Each family reads its own arguments into a
//! [`Lookup`] (the table id and gateway read once, before either use); what follows (tie it to the waiting packet, or leave it for the packet's
//! egress hook) is the same for both.
use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use tracer_common::{v4_mapped, FibRawOffsets, AF_INET, AF_INET6};

use super::{start_fib, submit_fib};
use crate::{
    clock::now_ns,
    kernel::{dev_site, kread},
    maps::{LastIngress, FIB_RAW_OFFSETS, LAST_LOOKUP},
    tie::{deferred_lookups_armed, pending_lookup},
    vip::is_vip,
};

/// The kernel's local table (`RT_TABLE_LOCAL`): addresses of this namespace.
const RT_TABLE_LOCAL: u32 = 255;

/// One route lookup, as its hook's arguments tell it.
struct Lookup {
    family: u8,
    iif: i32,
    src: [u8; 16],
    dst: [u8; 16],
    mark: u32,
    err: i32,
    table: u32,
    /// The next-hop (`fib_nh_common`), 0 when none.
    nhc: u64,
    gw: [u8; 16],
    /// Where the lookup key's output interface is.
    oif_at: u64,
}

/// `fib:fib_table_lookup` as a raw tracepoint.
#[raw_tracepoint(tracepoint = "fib_table_lookup")]
pub fn meridio_fib4_raw(ctx: RawTracePointContext) -> i32 {
    let _ = try_fib4_raw(&ctx);
    0
}

/// `fib6:fib6_table_lookup` as a raw tracepoint (see `meridio_fib4_raw`).
#[raw_tracepoint(tracepoint = "fib6_table_lookup")]
pub fn meridio_fib6_raw(ctx: RawTracePointContext) -> i32 {
    let _ = try_fib6_raw(&ctx);
    0
}

fn try_fib4_raw(ctx: &RawTracePointContext) -> Result<(), ()> {
    let pending = pending_lookup(AF_INET);
    let err: u64 = ctx.arg(3);
    let err = err as i32;
    let table: u64 = ctx.arg(0);
    // No traced packet waiting and a table that did not match (most lookups: each policy
    // rule's table is looked up in turn), or local delivery (no egress will follow), is the
    // common case, told from the arguments alone.
    if pending.is_none()
        && (err != 0 || table == u64::from(RT_TABLE_LOCAL) || !deferred_lookups_armed())
    {
        return Ok(());
    }
    let Some(off) = raw_offsets() else {
        return Ok(());
    };
    let flp: u64 = ctx.arg(1);
    // Then the mark: only a lookup with a mark its packet's ingress hook did not see can be
    // one to tie at egress.
    let mark: u32 = kread(flp, off.fl4_mark)?;
    if pending.is_none() && mark == 0 {
        return Ok(());
    }
    let iif: i32 = kread(flp, off.fl4_iif)?;
    let src = v4_mapped(kread::<[u8; 4]>(flp, off.fl4_saddr)?);
    let dst = v4_mapped(kread::<[u8; 4]>(flp, off.fl4_daddr)?);
    let nhc: u64 = ctx.arg(2);
    let lookup = Lookup {
        family: AF_INET,
        iif,
        src,
        dst,
        mark,
        err,
        table: table as u32,
        nhc,
        gw: nhc_gw4(nhc, &off),
        oif_at: flp + u64::from(off.fl4_oif),
    };
    report(pending, &off, &lookup);
    Ok(())
}

fn try_fib6_raw(ctx: &RawTracePointContext) -> Result<(), ()> {
    let pending = pending_lookup(AF_INET6);
    if pending.is_none() && !deferred_lookups_armed() {
        return Ok(());
    }
    let Some(off) = raw_offsets() else {
        return Ok(());
    };
    let flp: u64 = ctx.arg(3);
    // The mark first: a lookup with none and no traced packet waiting is the common case.
    let mark: u32 = kread(flp, off.fl6_mark)?;
    if pending.is_none() && mark == 0 {
        return Ok(());
    }
    let iif: i32 = kread(flp, off.fl6_iif)?;
    let src: [u8; 16] = kread(flp, off.fl6_saddr)?;
    let dst: [u8; 16] = kread(flp, off.fl6_daddr)?;
    let res: u64 = ctx.arg(1);
    let err = rt6_type_error(kread(res, off.res_type).unwrap_or(0));
    let nh: u64 = kread(res, off.res_nh).unwrap_or(0);
    let nhc = if nh != 0 {
        nh + u64::from(off.f6nh_common)
    } else {
        0
    };
    let table: u64 = ctx.arg(2);
    let lookup = Lookup {
        family: AF_INET6,
        iif,
        src,
        dst,
        mark,
        err,
        table: kread(table, off.tb6_id).unwrap_or(0),
        nhc,
        // Only a successful lookup's gateway is the route's.
        gw: if nhc != 0 && err == 0 {
            kread(nhc, off.nhc_gw).unwrap_or([0; 16])
        } else {
            [0; 16]
        },
        oif_at: flp + u64::from(off.fl6_oif),
    };
    report(pending, &off, &lookup);
    Ok(())
}

/// The offsets userspace found in BTF, once it has filled them.
#[inline(always)]
fn raw_offsets() -> Option<FibRawOffsets> {
    let off = *FIB_RAW_OFFSETS.get(0)?;
    (off.valid != 0).then_some(off)
}

/// Ties a lookup to the traced packet waiting on this CPU and writes its record; a
/// successful lookup of a VIP packet with a mark its ingress hook did not see is left in
/// `LAST_LOOKUP` for its egress hook instead.
#[inline(always)]
fn report(pending: Option<(&LastIngress, u64)>, off: &FibRawOffsets, l: &Lookup) {
    let Some((last, now)) = pending.filter(|(last, _)| {
        last.ifindex as i32 == l.iif
            && last.src == l.src
            && last.dst == l.dst
            && last.mark == l.mark
    }) else {
        if l.mark != 0 && l.err == 0 {
            defer_lookup(off, l);
        }
        return;
    };
    if !same_site(last, l.nhc, off) {
        return;
    }
    let Some(mut entry) = start_fib(last, now, l.family, l.iif) else {
        return;
    };
    let r = entry.as_mut_ptr();
    // SAFETY: as in start_fib.
    unsafe {
        (*r).table = l.table;
        (*r).err = l.err;
        (*r).mark = l.mark;
        (*r).oif = kread(l.oif_at, 0).unwrap_or(0);
        (*r).gw = l.gw;
        (*r).dev = nhc_dev_name(l.nhc, off);
    }
    submit_fib(entry, l.err);
}

/// An IPv4 route's next-hop gateway (an IPv6 gateway on an IPv4 route, RFC 5549, is left
/// out, as unspecified).
#[inline(always)]
fn nhc_gw4(nhc: u64, off: &FibRawOffsets) -> [u8; 16] {
    if nhc != 0 && kread::<u8>(nhc, off.nhc_gw_family).unwrap_or(0) == AF_INET {
        v4_mapped(kread::<[u8; 4]>(nhc, off.nhc_gw).unwrap_or([0; 4]))
    } else {
        [0; 16]
    }
}

/// The name of a next-hop's device (zeros without one).
#[inline(always)]
fn nhc_dev_name(nhc: u64, off: &FibRawOffsets) -> [u8; 16] {
    if nhc == 0 {
        return [0; 16];
    }
    let dev: u64 = kread(nhc, off.nhc_dev).unwrap_or(0);
    if dev == 0 {
        return [0; 16];
    }
    kread(dev, off.dev_name).unwrap_or([0; 16])
}

/// The traced namespace a next-hop's device is in, if it is one.
#[inline(always)]
fn nhc_site(nhc: u64, off: &FibRawOffsets) -> Option<u16> {
    let dev: u64 = kread(nhc, off.nhc_dev).ok()?;
    if dev == 0 {
        return None;
    }
    dev_site(dev, off.dev_nd_net, off.net_ns_inum)
}

/// A successful lookup of a VIP packet, with a mark its TC ingress hook did not see, in a
/// traced namespace: kept in `LAST_LOOKUP` for the egress hook its packet reaches next.
#[inline(always)]
fn defer_lookup(off: &FibRawOffsets, l: &Lookup) {
    if l.nhc == 0 || !(is_vip(&l.dst) || is_vip(&l.src)) {
        return;
    }
    let Some(site) = nhc_site(l.nhc, off) else {
        return;
    };
    let Some(slot) = LAST_LOOKUP.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU slot, only this CPU reads and writes it.
    unsafe {
        (*slot).ts_ns = now_ns();
        (*slot).src = l.src;
        (*slot).dst = l.dst;
        (*slot).gw = l.gw;
        (*slot).dev = nhc_dev_name(l.nhc, off);
        (*slot).table = l.table;
        (*slot).err = 0;
        (*slot).oif = kread(l.oif_at, 0).unwrap_or(0);
        (*slot).iif = l.iif;
        (*slot).mark = l.mark;
        (*slot).site = site;
        (*slot).family = l.family;
    }
}

/// Whether a lookup whose next-hop is `nhc` (a `fib_nh_common`, 0 when none) ran in the
/// namespace of the traced packet waiting in `last`. The programs see every lookup of the
/// node, and interface indexes repeat across namespaces: a lookup elsewhere with the same
/// addresses and input index must not be taken for the traced packet's. Without a
/// next-hop device (a failed lookup) there is nothing to tell by, and the lookup is kept.
#[inline(always)]
fn same_site(last: &LastIngress, nhc: u64, off: &FibRawOffsets) -> bool {
    if nhc == 0 || kread::<u64>(nhc, off.nhc_dev).unwrap_or(0) == 0 {
        return true;
    }
    nhc_site(nhc, off).is_some_and(|site| site == last.site)
}

/// `ip6_rt_type_to_error`: the errno the kernel reports for a route type.
#[inline(always)]
fn rt6_type_error(t: u8) -> i32 {
    const EINVAL: i32 = 22;
    const EHOSTUNREACH: i32 = 113;
    const EACCES: i32 = 13;
    const EAGAIN: i32 = 11;
    match t {
        3 | 6 | 10 | 11 => -EINVAL, // broadcast, blackhole, nat, xresolve
        7 => -EHOSTUNREACH,         // unreachable
        8 => -EACCES,               // prohibit
        9 => -EAGAIN,               // throw
        _ => 0,
    }
}
