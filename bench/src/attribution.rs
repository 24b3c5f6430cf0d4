//! Where the tracer's time goes, per eBPF program: with `kernel.bpf_stats_enabled` on, the
//! kernel counts each program's runs and run time. For each tracer variant: a fresh tracer,
//! its programs' counters read (from /proc/<pid>/fdinfo of the programs it holds) before
//! and after a fixed UDP flood through the proxy, and per program the runs per packet, ns
//! per run and ns per packet. Idle windows just before and after the flood count what runs
//! without the bench's traffic (route lookups and freed skbs of other namespaces on the
//! machine reach the fib and drop programs too). Owns turning the sysctl on and back to what it was, also on error.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tracer_common::programs;

use crate::observer::Observer;
use crate::traffic::{Sender, Sent};
use crate::{Ctx, Variant};

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
/// The fixed flood: this many 64-byte datagrams from the VIP, paced.
pub const PACKETS: u64 = 50_000;
pub const PPS: u64 = 25_000;
/// Each of the windows without bench traffic, before and after the flood.
pub const IDLE: Duration = Duration::from_secs(1);
/// The sink has everything once it has been quiet this long.
const SINK_QUIET: Duration = Duration::from_millis(200);

/// The tracer variants whose programs are timed.
pub const VARIANTS: [Variant; 6] = [
    Variant::NoMatch,
    Variant::OtherFlow,
    Variant::AllVip,
    Variant::WholeNoMatch,
    Variant::WholeOtherFlow,
    Variant::DaemonSet,
];

/// The tracer's programs, in report order (bpftool and the kernel keep 15 chars).
pub const PROGRAMS: [&str; 11] = [
    programs::TC_IN,
    programs::TC_OUT,
    programs::FIB4_RAW,
    programs::FIB6_RAW,
    programs::FIB4,
    programs::FIB6,
    programs::DROP,
    programs::MPH4,
    programs::MPH4_KRETPROBE,
    programs::MPH6,
    programs::MPH6_KRETPROBE,
];

/// `kernel.bpf_stats_enabled` on while this lives; its previous value back when dropped.
struct StatsOn {
    previous: String,
}

impl StatsOn {
    fn enable() -> Result<StatsOn> {
        let previous = std::fs::read_to_string(SYSCTL)
            .with_context(|| {
                format!("cannot read {SYSCTL}: this kernel has no BPF run-time statistics")
            })?
            .trim()
            .to_string();
        std::fs::write(SYSCTL, "1").with_context(|| format!("cannot write 1 to {SYSCTL}"))?;
        Ok(StatsOn { previous })
    }
}

impl Drop for StatsOn {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(SYSCTL, &self.previous) {
            eprintln!(
                "bench: could not restore kernel.bpf_stats_enabled to {}: {e}",
                self.previous
            );
        }
    }
}

/// One program's counters, summed over its instances (TC programs: one per traced namespace).
#[derive(Debug, Clone, Default)]
pub struct ProgDelta {
    pub instances: usize,
    pub runs: u64,
    pub run_time_ns: u64,
    /// Runs in the idle windows (no bench traffic), before and after the flood.
    pub idle_runs: u64,
}

impl ProgDelta {
    pub fn ns_per_run(&self) -> f64 {
        self.run_time_ns as f64 / self.runs.max(1) as f64
    }
}

/// One tracer variant's attribution.
pub struct Run {
    pub variant: Variant,
    pub sent: Sent,
    /// Datagrams the gateway sink received.
    pub received: u64,
    /// Traced namespaces (ready records).
    pub namespaces: usize,
    /// The idle windows together.
    pub idle: Duration,
    /// From the flood's start to the second reading.
    pub window: Duration,
    /// By program name.
    pub programs: BTreeMap<String, ProgDelta>,
}

impl Run {
    /// Program time per packet sent, all programs.
    pub fn ns_per_packet(&self) -> f64 {
        let total: u64 = self.programs.values().map(|p| p.run_time_ns).sum();
        total as f64 / self.sent.packets.max(1) as f64
    }

    pub fn per_packet(&self, runs: u64) -> f64 {
        runs as f64 / self.sent.packets.max(1) as f64
    }

    /// Runs per packet the program would have made anyway: its idle rate over the window
    /// of the flood, per packet.
    pub fn background_per_packet(&self, p: &ProgDelta) -> f64 {
        p.idle_runs as f64 / self.idle.as_secs_f64() * self.window.as_secs_f64()
            / self.sent.packets.max(1) as f64
    }

    /// Programs in report order, then any other.
    pub fn ordered(&self) -> Vec<(&str, &ProgDelta)> {
        let mut v: Vec<(&str, &ProgDelta)> =
            self.programs.iter().map(|(n, p)| (n.as_str(), p)).collect();
        v.sort_by_key(|(n, _)| PROGRAMS.iter().position(|p| p == n).unwrap_or(usize::MAX));
        v
    }
}

pub struct Attribution {
    /// What kernel.bpf_stats_enabled was before (restored afterwards).
    pub stats_before: String,
    pub runs: Vec<Run>,
}

pub fn run(ctx: &Ctx) -> Result<Attribution> {
    let on = StatsOn::enable()?;
    let stats_before = on.previous.clone();
    let mut runs = Vec::new();
    for v in VARIANTS {
        let r = one(ctx, v)?;
        let total: Vec<String> = r
            .ordered()
            .iter()
            .map(|(n, p)| format!("{n} {:.2}x{:.0}ns", r.per_packet(p.runs), p.ns_per_run()))
            .collect();
        eprintln!(
            "bench: attribution {:<21} {:.0} ns of programs per packet ({})",
            v.key(),
            r.ns_per_packet(),
            total.join(", ")
        );
        runs.push(r);
    }
    drop(on);
    Ok(Attribution { stats_before, runs })
}

/// run_cnt and run_time_ns of each program id, from the holder's fdinfo.
type Counters = BTreeMap<u32, (u64, u64)>;

fn counters(tracer: &Observer) -> Counters {
    tracer
        .bpf_progs()
        .into_iter()
        .map(|(id, cnt, ns)| (id, (cnt, ns)))
        .collect()
}

/// Program names by id, from bpftool.
fn names() -> Result<BTreeMap<u32, String>> {
    let out = lab::cmd::run("bpftool", &["-j", "prog", "show"])?;
    let all: serde_json::Value = serde_json::from_str(&out).context("bpftool -j prog show")?;
    Ok(all
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                u32::try_from(p["id"].as_u64()?).ok()?,
                p["name"].as_str()?.to_string(),
            ))
        })
        .collect())
}

fn one(ctx: &Ctx, v: Variant) -> Result<Run> {
    let tracer = ctx.start_variant(v)?;
    let ids: Vec<u32> = tracer.bpf_progs().iter().map(|p| p.0).collect();
    let names = names()?;
    let name_of = |id: &u32| -> Option<String> {
        let n = names.get(id)?;
        // Names are cut at 15 characters: the same name, else (when cut) the tracer's name
        // it starts (`meridio_fib4` must not be taken for `meridio_fib4_raw`).
        PROGRAMS
            .iter()
            .find(|p| n == *p)
            .or_else(|| {
                PROGRAMS
                    .iter()
                    .find(|p| n.len() == 15 && p.starts_with(n.as_str()))
            })
            .map(|p| p.to_string())
    };
    let ours: Vec<(u32, String)> = ids
        .iter()
        .filter_map(|id| Some((*id, name_of(id)?)))
        .collect();
    if ours.is_empty() {
        bail!("the {} tracer holds no meridio_* program", v.key());
    }
    let c0 = counters(&tracer);
    let t0 = Instant::now();
    std::thread::sleep(IDLE);
    let c1 = counters(&tracer);
    let idle = t0.elapsed();
    let (_, r0) = ctx.sinks.udp.read();
    let t1 = Instant::now();
    let sent = Sender::udp_count(&ctx.target(), Some(PPS), Some(PACKETS))?.finish();
    let mut r1 = ctx.sinks.udp.read().1;
    loop {
        std::thread::sleep(SINK_QUIET);
        let now = ctx.sinks.udp.read().1;
        if now == r1 {
            break;
        }
        r1 = now;
    }
    let c2 = counters(&tracer);
    let window = t1.elapsed();
    let t2 = Instant::now();
    std::thread::sleep(IDLE);
    let c3 = counters(&tracer);
    let idle = idle + t2.elapsed();
    let namespaces = {
        // The ready records are with the stdout reader until the tracer ends.
        let exited = tracer.interrupt_and_reap()?;
        if !exited.success {
            bail!(
                "the {} tracer failed during the attribution: {}",
                v.key(),
                exited.stderr.join(" | ")
            );
        }
        exited.lines.ready.len()
    };
    let delta = |a: &Counters, b: &Counters, id: u32| -> (u64, u64) {
        let (Some(a), Some(b)) = (a.get(&id), b.get(&id)) else {
            return (0, 0);
        };
        (b.0.saturating_sub(a.0), b.1.saturating_sub(a.1))
    };
    let mut programs: BTreeMap<String, ProgDelta> = BTreeMap::new();
    for (id, name) in ours {
        let p = programs.entry(name).or_default();
        p.instances += 1;
        let (runs, ns) = delta(&c1, &c2, id);
        p.runs += runs;
        p.run_time_ns += ns;
        p.idle_runs += delta(&c0, &c1, id).0 + delta(&c2, &c3, id).0;
    }
    Ok(Run {
        variant: v,
        sent,
        received: r1.saturating_sub(r0),
        namespaces,
        idle,
        window,
        programs,
    })
}
