//! `cargo xtask bench`: the preparation around the bench (the `tracer-bench` crate): root,
//! the tools it measures with, an optimized harness, the release tracer, and where its
//! figures go.
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use lab::cmd::{self, run_visible};
use tracer_bench::{Opts, Part};

use crate::toolchain::{ensure_host_tools, ensure_tracefs, LAB_TOOLS};
use crate::{build, require_root, tracer_path, workspace_root};

pub fn bench(reps: usize, seconds: f64, out: Option<PathBuf>, only: Vec<Part>) -> Result<()> {
    let out = out.unwrap_or_else(default_bench_file);
    require_root("bench")?;
    if reps == 0 || !seconds.is_finite() || seconds <= 0.0 {
        bail!("--reps must be at least 1 and --seconds more than 0");
    }
    let opts = Opts {
        reps,
        seconds,
        out,
        only,
        tracer: tracer_path(true),
        workspace: workspace_root(),
    };
    if cfg!(debug_assertions) {
        return reexec_optimized(&opts);
    }
    ensure_host_tools(LAB_TOOLS)?;
    ensure_host_tools(&[("tcpdump", "tcpdump"), ("bpftool", "bpftool")])?;
    ensure_tracefs()?;
    build(true)?;
    tracer_bench::bench(opts)
}

/// `docs/bench/<YYYY-MM-DDTHHMM>-<short commit>.json`: a run's figures are data, one file a
/// run, next to the docs that read them.
fn default_bench_file() -> PathBuf {
    let root = workspace_root();
    let say = |p: &str, a: &[&str]| {
        cmd::run(p, a)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    };
    let date = say("date", &["-u", "+%Y-%m-%dT%H%M"]);
    let commit = say(
        "git",
        &[
            "-C",
            &root.to_string_lossy(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    root.join("docs")
        .join("bench")
        .join(format!("{date}-{commit}.json"))
}

/// `cargo xtask` is a debug build, and unoptimized the harness spends about 3 µs per
/// tracer line it reads: at the rates measured here that is more CPU than the tracer's own
/// on a 2-core machine. So the bench builds xtask with optimizations and runs from there.
fn reexec_optimized(opts: &Opts) -> Result<()> {
    println!("building xtask with optimizations (the harness reads every tracer record and must not be what limits it)");
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root())
        .args(["build", "--release", "-p", "xtask"]);
    run_visible(c).context("building xtask with optimizations failed")?;
    let exe = tracer_path(true).with_file_name("xtask");
    let mut c = Command::new(&exe);
    c.arg("bench")
        .args(["--reps", &opts.reps.to_string()])
        .args(["--seconds", &opts.seconds.to_string()])
        .arg("--out")
        .arg(&opts.out);
    if !opts.only.is_empty() {
        let only: Vec<&str> = opts.only.iter().map(|p| p.name()).collect();
        c.args(["--only", &only.join(",")]);
    }
    let err = c.exec();
    Err(err).with_context(|| format!("could not run {}", exe.display()))
}
