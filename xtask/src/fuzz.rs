//! `cargo xtask fuzz`: builds the `fuzz/` targets (cargo-fuzz's layout) and runs each for a
//! fixed time from its committed corpus; a crash fails the run, naming the target and the
//! input it left in `fuzz/artifacts/<target>/`.
//!
//! It passes cargo-fuzz 0.13's own build flags rather than installing cargo-fuzz: the
//! install measured 36 s here, small, but it is one more tool to fetch and pin in CI for
//! what comes down to one `cargo build` with these flags and one run of the binary
//! (libFuzzer is linked into it). `cargo fuzz run <target>` builds the same way.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context, Result};
use lab::cmd::run_visible;

/// The targets, each with its corpus in `fuzz/corpus/<name>` (fuzz/Cargo.toml's bins).
pub const TARGETS: [&str; 5] = [
    "decode",
    "btf_layout",
    "tracefs_format",
    "merge_read",
    "merge",
];

const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// cargo-fuzz 0.13's defaults (`cargo fuzz build`: release, address sanitizer, trace
/// compares, one codegen unit), plus `-Cdebug-assertions` (its `-a`) so overflows and
/// broken invariants crash; fuzz/Cargo.toml's release profile turns those on for
/// `cargo fuzz run` as well.
const RUSTFLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg",
    "fuzzing",
    "-Cllvm-args=-simplifycfg-branch-fold-threshold=0",
    "-Zsanitizer=address",
    "-Cllvm-args=-sanitizer-coverage-stack-depth",
    "-Cdebug-assertions",
    "-Ccodegen-units=1",
];

pub struct Opts {
    pub seconds: u64,
    pub targets: Vec<String>,
}

pub fn fuzz(root: &Path, target_dir: &Path, o: Opts) -> Result<()> {
    let targets: Vec<&str> = if o.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        for t in &o.targets {
            if !TARGETS.contains(&t.as_str()) {
                bail!("no fuzz target {t}; the targets are {}", TARGETS.join(", "));
            }
        }
        o.targets.iter().map(String::as_str).collect()
    };
    // libfuzzer-sys compiles libFuzzer (C++); the tracer's build script wants nightly
    // and bpf-linker for its eBPF object.
    crate::toolchain::ensure_host_tools(&[("c++", "g++")])?;
    crate::toolchain::ensure_ebpf_toolchain()?;
    let dir = target_dir.join("fuzz");
    let started = Instant::now();
    build(root, &dir, &targets)?;
    println!(
        "fuzz targets built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    for t in targets {
        run(root, &dir, t, o.seconds)?;
    }
    Ok(())
}

fn build(root: &Path, dir: &Path, targets: &[&str]) -> Result<()> {
    let mut c = Command::new("rustup");
    c.args(["run", "nightly", "cargo", "build", "--locked", "--release"])
        // --target keeps the flags off build scripts and proc macros (cargo-fuzz does so).
        .args(["--target", TRIPLE])
        .args(["--config", "profile.release.debug=\"line-tables-only\""])
        .arg("--manifest-path")
        .arg(root.join("fuzz/Cargo.toml"))
        .arg("--target-dir")
        .arg(dir)
        .env("CARGO_ENCODED_RUSTFLAGS", RUSTFLAGS.join("\x1f"));
    for t in targets {
        c.args(["--bin", t]);
    }
    // The outer (stable) cargo's settings must not reach the nightly build.
    for var in ["RUSTC", "RUSTC_WORKSPACE_WRAPPER", "RUSTFLAGS", "CARGO"] {
        c.env_remove(var);
    }
    run_visible(c).context("building the fuzz targets failed")
}

/// Runs one target for `seconds` on a scratch copy of its corpus (what it finds stays out of
/// the repository); a crash, leak, timeout or out-of-memory fails with the input's path.
fn run(root: &Path, dir: &Path, target: &str, seconds: u64) -> Result<()> {
    let bin = dir.join(TRIPLE).join("release").join(target);
    let seeds = root.join("fuzz/corpus").join(target);
    let scratch = dir.join("corpus").join(target);
    let artifacts = root.join("fuzz/artifacts").join(target);
    for d in [&scratch, &artifacts] {
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let log = dir.join(format!("{target}.log"));
    let since = SystemTime::now();
    println!("fuzzing {target} for {seconds} s (log: {})", log.display());
    let status = Command::new(&bin)
        // The first directory takes what the run finds; the seeds are only read.
        .arg(&scratch)
        .arg(&seeds)
        .arg(format!("-max_total_time={seconds}"))
        // One input taking over 10 s is a hang worth a failure.
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        // The target's own stderr closed (merge says what it skipped there, once per
        // case); libFuzzer keeps a copy of it for its reports.
        .arg("-close_fd_mask=2")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // What cargo-fuzz sets: Rust's statics trip the ODR check.
        .env("ASAN_OPTIONS", "detect_odr_violation=0")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log)?)
        .status()
        .with_context(|| format!("could not run {}", bin.display()))?;
    let text = fs::read_to_string(&log).unwrap_or_default();
    if status.success() {
        let stat = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
                .map_or("?".to_string(), |v| v.trim().to_string())
        };
        println!(
            "  {target}: {} inputs run, peak RSS {} MB, no crash",
            stat("number_of_executed_units"),
            stat("peak_rss_mb")
        );
        return Ok(());
    }
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    for l in tail.iter().rev() {
        eprintln!("  | {l}");
    }
    match newest_artifact(&artifacts, since) {
        Some(input) => bail!(
            "fuzz target {target} crashed ({status}); the input is {} (replay: {} {0})",
            input.display(),
            bin.display()
        ),
        None => bail!(
            "fuzz target {target} failed ({status}) and left no input in {}; see {}",
            artifacts.display(),
            log.display()
        ),
    }
}

/// The input libFuzzer wrote for this run (crash-, leak-, timeout-, oom-...).
fn newest_artifact(dir: &Path, since: SystemTime) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .filter(|(t, _)| *t >= since - Duration::from_secs(1))
        .max()
        .map(|(_, p)| p)
}
