//! The route lookup hooks: raw tracepoints, or the perf tracepoints where those cannot load.
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use aya::{
    programs::{RawTracePoint, TracePoint},
    Ebpf,
};
use tracer_common::{programs, FibOffsets};

use super::{
    object::{program, refused},
    offsets::{kernel_offsets, set_offsets},
    options::FibHook,
    ready::Ready,
    tracefs,
};

/// The fib hooks: raw tracepoints first (the kernel formats nothing for lookups the
/// programs reject), the perf tracepoints as the fallback. Failures are recorded in
/// `ready.refused`, not fatal: the next-hop still comes from the wire.
pub(super) fn attach(ebpf: &mut Ebpf, ready: &mut Ready, how: FibHook) {
    const HOOKS: [(u32, &str, &str, &str, &str); 2] = [
        (
            0,
            programs::FIB4_RAW,
            programs::FIB4,
            "fib",
            "fib_table_lookup",
        ),
        (
            1,
            programs::FIB6_RAW,
            programs::FIB6,
            "fib6",
            "fib6_table_lookup",
        ),
    ];
    let mut perf_needed = Vec::new();
    for (index, raw_prog, perf_prog, category, event) in HOOKS {
        if how == FibHook::Tracepoint {
            perf_needed.push((index, perf_prog, category, event));
            continue;
        }
        let hook = format!("raw_tracepoint:{event}");
        match attach_raw_fib(ebpf, raw_prog, event) {
            Ok(()) => ready.hooks.push(hook),
            Err(e) => {
                ready.refused.push((hook, format!("{e:#}")));
                if how == FibHook::Auto {
                    perf_needed.push((index, perf_prog, category, event));
                }
            }
        }
    }
    if perf_needed.is_empty() {
        return;
    }
    let tracefs = match tracefs::ensure_mounted() {
        Ok(p) => p,
        Err(e) => {
            for (_, _, category, event) in perf_needed {
                ready
                    .refused
                    .push((format!("tracepoint:{category}/{event}"), e.to_string()));
            }
            return;
        }
    };
    for (index, prog_name, category, event) in perf_needed {
        let hook = format!("tracepoint:{category}/{event}");
        match attach_one_fib(ebpf, &tracefs, index, prog_name, category, event) {
            Ok(()) => ready.hooks.push(hook),
            Err(e) => ready.refused.push((hook, format!("{e:#}"))),
        }
    }
}

fn attach_raw_fib(ebpf: &mut Ebpf, prog_name: &str, event: &str) -> Result<()> {
    let offsets = kernel_offsets()
        .fib_raw
        .clone()
        .map_err(|e| anyhow!("{e}"))?;
    set_offsets(ebpf, "FIB_RAW_OFFSETS", 0, offsets)?;
    let prog: &mut RawTracePoint = program(ebpf, prog_name)?;
    prog.load()
        .map_err(|e| refused("the raw tracepoint program", prog_name, &e))?;
    prog.attach(event).context("attach failed")?;
    Ok(())
}

fn attach_one_fib(
    ebpf: &mut Ebpf,
    tracefs: &Path,
    index: u32,
    prog_name: &str,
    category: &str,
    event: &str,
) -> Result<()> {
    let format_path = tracefs
        .join("events")
        .join(category)
        .join(event)
        .join("format");
    let text = std::fs::read_to_string(&format_path)
        .with_context(|| format!("cannot read {}", format_path.display()))?;
    let offsets: FibOffsets = tracefs::fib_offsets(&text, index == 1)?;
    set_offsets(ebpf, "FIB_OFFSETS", index, offsets)?;
    let prog: &mut TracePoint = program(ebpf, prog_name)?;
    prog.load()
        .map_err(|e| refused("the tracepoint program", prog_name, &e))?;
    prog.attach(category, event).context("attach failed")?;
    Ok(())
}
