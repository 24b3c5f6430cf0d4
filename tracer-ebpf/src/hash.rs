//! The multipath hash of the packet being routed on this CPU, from the hash function's
//! return value. Loaded only where the kernel allows fexit (or kretprobes).
use aya_ebpf::{
    macros::{fexit, kretprobe},
    programs::{FExitContext, RetProbeContext},
};
use tracer_common::{
    HashRecord, AF_INET, AF_INET6, COUNTER_LOST, HASH_HOOK_FEXIT, HASH_HOOK_KRETPROBE, KIND_HASH,
};

use crate::{
    clock::now_ns,
    events::{bump, wakeup},
    maps::{EVENTS, LAST_INGRESS},
    tie::LAST_INGRESS_MAX_AGE_NS,
};

#[fexit(function = "fib_multipath_hash")]
pub fn meridio_mph4(ctx: FExitContext) -> i32 {
    if let Ok(hash) = ctx.ret::<u32>() {
        let _ = emit_hash(hash, AF_INET, HASH_HOOK_FEXIT);
    }
    0
}

#[fexit(function = "rt6_multipath_hash")]
pub fn meridio_mph6(ctx: FExitContext) -> i32 {
    if let Ok(hash) = ctx.ret::<u32>() {
        let _ = emit_hash(hash, AF_INET6, HASH_HOOK_FEXIT);
    }
    0
}

#[kretprobe]
pub fn meridio_mph4_kr(ctx: RetProbeContext) -> u32 {
    let _ = emit_hash(ctx.ret::<u32>(), AF_INET, HASH_HOOK_KRETPROBE);
    0
}

#[kretprobe]
pub fn meridio_mph6_kr(ctx: RetProbeContext) -> u32 {
    let _ = emit_hash(ctx.ret::<u32>(), AF_INET6, HASH_HOOK_KRETPROBE);
    0
}

/// The hash is the routed packet's: the one whose lookup matched on this CPU (`routed`).
fn emit_hash(hash: u32, family: u8, hook: u8) -> Result<(), ()> {
    let last = LAST_INGRESS.get(0).ok_or(())?;
    let now = now_ns();
    if last.ts_ns == 0
        || last.routed == 0
        || last.family != family
        || now.wrapping_sub(last.ts_ns) > LAST_INGRESS_MAX_AGE_NS
    {
        return Ok(());
    }
    let record = HashRecord {
        kind: KIND_HASH,
        hash,
        ts_ns: now,
        src: last.src,
        dst: last.dst,
        sport: last.sport,
        dport: last.dport,
        proto: last.proto,
        family,
        hook,
        _pad: 0,
        site: last.site,
        _pad2: [0; 6],
    };
    if EVENTS.output::<HashRecord>(&record, wakeup()).is_err() {
        bump(COUNTER_LOST);
    }
    Ok(())
}
