//! The perf tracepoints (the fallback where the raw ones cannot load): the kernel has
//! already formatted a record, read at the offsets of its format file.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::{v4_mapped, AF_INET, AF_INET6};

use super::{start_fib, submit_fib};
use crate::{kernel::read, maps::FIB_OFFSETS, tie::pending_lookup};

#[tracepoint]
pub fn meridio_fib4(ctx: TracePointContext) -> u32 {
    let _ = try_fib(&ctx, 0, AF_INET);
    0
}

#[tracepoint]
pub fn meridio_fib6(ctx: TracePointContext) -> u32 {
    let _ = try_fib(&ctx, 1, AF_INET6);
    0
}

fn try_fib(ctx: &TracePointContext, index: u32, family: u8) -> Result<(), ()> {
    let (last, now) = pending_lookup(family).ok_or(())?;
    let off = *FIB_OFFSETS.get(index).ok_or(())?;
    if off.valid == 0 {
        return Ok(());
    }
    let iif: i32 = read(ctx, off.iif)?;
    if last.ifindex as i32 != iif {
        return Ok(());
    }
    // The slot holds a VIP packet's addresses: the same addresses make it this lookup's.
    let (src, dst) = if family == AF_INET {
        (
            v4_mapped(read::<[u8; 4]>(ctx, off.src)?),
            v4_mapped(read::<[u8; 4]>(ctx, off.dst)?),
        )
    } else {
        (
            read::<[u8; 16]>(ctx, off.src)?,
            read::<[u8; 16]>(ctx, off.dst)?,
        )
    };
    if last.src != src || last.dst != dst {
        return Ok(());
    }
    let Some(mut entry) = start_fib(last, now, family, iif) else {
        return Ok(());
    };
    let r = entry.as_mut_ptr();
    let err: i32 = read(ctx, off.err).unwrap_or(0);
    // SAFETY: as in start_fib.
    unsafe {
        (*r).table = read(ctx, off.tb_id).unwrap_or(0);
        (*r).err = err;
        (*r).oif = read(ctx, off.oif).unwrap_or(0);
        (*r).gw = if family == AF_INET {
            v4_mapped(read::<[u8; 4]>(ctx, off.gw).unwrap_or([0; 4]))
        } else {
            read::<[u8; 16]>(ctx, off.gw).unwrap_or([0; 16])
        };
        // Older kernels keep the name as a dynamic string: its offset is in the low 16 bits.
        let name = if off.name_loc != 0 {
            read::<u32>(ctx, off.name)
                .map(|loc| loc as u16)
                .unwrap_or(off.name)
        } else {
            off.name
        };
        (*r).dev = read(ctx, name).unwrap_or([0; 16]);
    }
    submit_fib(entry, err);
    Ok(())
}
