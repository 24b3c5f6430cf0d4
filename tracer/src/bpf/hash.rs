//! The multipath hash hooks: fexit where the kernel allows it, else kretprobes.
use std::path::Path;

use anyhow::{Context, Result};
use aya::{
    programs::{FExit, KProbe},
    Btf, Ebpf,
};
use tracer_common::programs;

use super::{
    object::{program, refused},
    options::HashHook,
    ready::Ready,
};

/// The kernel's multipath hash functions, in order of preference (fexit, then
/// kretprobe): where the kernel allows either, the tracer knows the hash the kernel used
/// instead of inferring it. Each failure is reported with the kernel's reason; without them
/// the next-hop still comes from the routed frame, and the prediction from the skb hash.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    choice: HashHook,
    btf: Result<Btf, String>,
    ready: &mut Ready,
) {
    const HOOKS: [(&str, &str, &str); 2] = [
        (
            programs::MPH4,
            programs::MPH4_KRETPROBE,
            "fib_multipath_hash",
        ),
        (
            programs::MPH6,
            programs::MPH6_KRETPROBE,
            "rt6_multipath_hash",
        ),
    ];
    let kprobes_built_in = [
        "/sys/kernel/tracing/kprobe_events",
        "/sys/kernel/debug/tracing/kprobe_events",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    for (fexit_name, kret_name, func) in HOOKS {
        if choice == HashHook::None {
            for kind in ["fexit", "kretprobe"] {
                ready.unavailable.push((
                    format!("{kind}:{func}"),
                    "not tried (--hash-hook none)".into(),
                ));
            }
            continue;
        }
        let fexit = match &btf {
            _ if choice == HashHook::Kretprobe => Err("not tried (--hash-hook kretprobe)".into()),
            Ok(btf) => attach_fexit(ebpf, fexit_name, func, btf).map_err(|e| format!("{e:#}")),
            Err(why) => Err(why.clone()),
        };
        match fexit {
            Ok(()) => {
                ready.hooks.push(format!("fexit:{func}"));
                continue;
            }
            Err(why) if choice == HashHook::Kretprobe => {
                ready.unavailable.push((format!("fexit:{func}"), why));
            }
            Err(why) => ready.refused.push((format!("fexit:{func}"), why)),
        }
        if choice == HashHook::Fexit {
            ready.unavailable.push((
                format!("kretprobe:{func}"),
                "not tried (--hash-hook fexit)".into(),
            ));
            continue;
        }
        if !kprobes_built_in {
            ready.unavailable.push((
                format!("kretprobe:{func}"),
                "this kernel is built without kprobes (no kprobe_events in tracefs)".into(),
            ));
            continue;
        }
        match attach_kretprobe(ebpf, kret_name, func) {
            Ok(()) => ready.hooks.push(format!("kretprobe:{func}")),
            Err(e) => ready
                .refused
                .push((format!("kretprobe:{func}"), format!("{e:#}"))),
        }
    }
}

fn attach_fexit(ebpf: &mut Ebpf, name: &str, func: &str, btf: &Btf) -> Result<()> {
    let prog: &mut FExit = program(ebpf, name)?;
    prog.load(func, btf)
        .map_err(|e| refused("the fexit program", name, &e))?;
    prog.attach().context("attach failed")?;
    Ok(())
}

fn attach_kretprobe(ebpf: &mut Ebpf, name: &str, func: &str) -> Result<()> {
    let prog: &mut KProbe = program(ebpf, name)?;
    prog.load()
        .map_err(|e| refused("the kretprobe program", name, &e))?;
    prog.attach(func, 0).context("attach failed")?;
    Ok(())
}
