//! `cargo xtask kernels`: the kernel matrix. Fetches Debian's kernel packages (5.10 from
//! bullseye, 6.1 from bookworm, 6.12 from trixie; apt suites pinned to priority 1 so
//! nothing else comes from them), boots each under virtme-ng with TCG (nested KVM fails on
//! the machines we run on), runs the kernel-sensitive end-to-end tests inside as root, and
//! prints one row per kernel: TC attach mode, fib hook, drop hook, hash source, tests
//! passed, time. The guest shares the host's root read-only, so the test binaries built
//! here run there as they are; `target/` is shared writable for the results.
//!
//! - [`setup`]: host tools, apt sources and pins, package download and modules.
//! - [`guest`]: the script run inside a machine and the results it leaves.
//! - [`matrix`]: one row per kernel from those results.

mod guest;
mod matrix;
mod setup;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::toolchain::ensure_ebpf_toolchain;
use anyhow::{bail, Context, Result};

use crate::workspace_root;

/// One kernel of the matrix.
pub struct Kernel {
    /// What `--kernel` takes: "5.10", "6.1", "6.12".
    pub name: &'static str,
    /// Where it comes from, for the matrix.
    pub debian: &'static str,
    /// Debian suite holding it.
    pub suite: &'static str,
    /// Package name: `prefix<number>suffix`, the highest number wins.
    pub prefix: &'static str,
    pub suffix: &'static str,
    /// Tests that need a hook only some kernels allow, run here too.
    pub fexit: bool,
    /// The low-`RLIMIT_MEMLOCK` tests run here: kernels that charge maps to it (before
    /// 5.11) and one that does not, where the same start must trace.
    pub memlock: bool,
}

pub const KERNELS: [Kernel; 3] = [
    Kernel {
        name: "5.10",
        debian: "Debian 11",
        suite: "bullseye",
        prefix: "linux-image-5.10.0-",
        suffix: "-amd64-unsigned",
        fexit: false,
        memlock: true,
    },
    Kernel {
        name: "6.1",
        debian: "Debian 12",
        suite: "bookworm",
        prefix: "linux-image-6.1.0-",
        suffix: "-amd64-unsigned",
        fexit: true,
        memlock: true,
    },
    Kernel {
        name: "6.12",
        debian: "Debian 13",
        suite: "trixie",
        prefix: "linux-image-6.12.",
        suffix: "+deb13-amd64-unsigned",
        fexit: true,
        memlock: false,
    },
];

/// A test run in every machine: (test binary, exact name, needs `--include-ignored`).
#[derive(Clone, Copy)]
pub struct TestRef {
    pub binary: &'static str,
    pub name: &'static str,
    pub ignored: bool,
}

const fn t(binary: &'static str, name: &'static str, ignored: bool) -> TestRef {
    TestRef {
        binary,
        name,
        ignored,
    }
}

/// The kernel-sensitive tests: next-hop and ports against the frontends' counters (IPv4
/// and IPv6), rule and table attribution (fib tracepoints), the netlink path's clean exit
/// after SIGINT/SIGTERM and SIGKILL plus the next start's clean-up, a drop with its reason
/// (or saying there is none), what the ready record says, the hash hooks, and the TC
/// parser on fragments (IPv4, and IPv6's extension header walk: a verifier-sensitive loop),
/// the `--pcap` capture path, and the whole path (a frontend's lookup with a mark netfilter
/// set, tied to its packet at the egress hook: `LAST_LOOKUP` through every verifier), and
/// a start under a 64 KiB `RLIMIT_MEMLOCK` with and without `CAP_SYS_RESOURCE`.
pub const TESTS: [TestRef; 12] = [
    t(
        "kernels",
        "the_ready_record_says_what_this_kernel_offers",
        false,
    ),
    t(
        "e2e",
        "egress_next_hop_and_ports_match_the_frontends_for_v4_and_v6",
        false,
    ),
    t(
        "routing",
        "rule_table_and_candidates_are_the_configured_ones",
        false,
    ),
    t(
        "e2e",
        "netlink_mode_cleans_up_after_itself_and_after_a_killed_run",
        false,
    ),
    t(
        "routing",
        "a_flow_dropped_in_the_proxy_is_reported_with_a_reason",
        false,
    ),
    t(
        "real_traffic",
        "fragments_are_counted_in_their_flow_per_next_hop",
        false,
    ),
    // The capture path (--pcap): a bounded copy of the frame into the ring, through
    // every verifier.
    t(
        "pcap",
        "the_pcapng_file_holds_one_commented_packet_per_hop_record",
        false,
    ),
    t(
        "whole_path",
        "one_flow_is_one_timeline_through_frontend_proxy_and_target",
        false,
    ),
    t(
        "kernels",
        "a_low_memlock_limit_is_raised_where_maps_are_charged_to_it",
        false,
    ),
    t(
        "kernels",
        "a_low_hard_memlock_limit_without_cap_sys_resource_is_one_sentence_where_it_matters",
        false,
    ),
    t(
        "kernels",
        "fexit_hash_hook_predicts_every_routed_packet",
        true,
    ),
    t(
        "kernels",
        "kretprobe_hash_hook_predicts_every_routed_packet",
        true,
    ),
];

impl Kernel {
    /// The tests this kernel runs: all, but the fexit one only where fexit loads and the
    /// memlock ones only where `memlock`.
    pub fn tests(&self, filter: Option<&str>) -> Vec<TestRef> {
        TESTS
            .iter()
            .filter(|t| self.fexit || !t.name.starts_with("fexit"))
            .filter(|t| self.memlock || !t.name.contains("memlock"))
            .filter(|t| filter.is_none_or(|f| t.name.contains(f)))
            .copied()
            .collect()
    }
}

pub struct Opts {
    /// "5.10", "6.1", "6.12" or "all".
    pub kernels: Vec<String>,
    pub test: Option<String>,
    /// Per machine, from boot to power-off.
    pub timeout: Duration,
}

pub fn kernels(opts: Opts) -> Result<()> {
    crate::require_root("kernels")?;
    let chosen = choose(&opts.kernels)?;
    let started = Instant::now();
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let cache = target.join("kernels");
    std::fs::create_dir_all(&cache)?;

    let vng = setup::host_tools()?;
    let binaries = build_tests(&root)?;
    let mut rows = Vec::new();
    for k in chosen {
        let tests = k.tests(opts.test.as_deref());
        if tests.is_empty() {
            bail!(
                "no test of the matrix matches `{}`",
                opts.test.as_deref().unwrap_or_default()
            );
        }
        let image = setup::kernel_image(k, &cache)?;
        let out = cache.join(format!("run-{}", k.name));
        let t0 = Instant::now();
        let result = guest::run(
            &vng,
            &image,
            &out,
            &root,
            &target,
            &binaries,
            &tests,
            opts.timeout,
        );
        let secs = t0.elapsed().as_secs();
        let row = matrix::row(k, &image, &out, &tests, secs, result.err());
        println!("{}", matrix::header());
        println!("{}", row.line());
        rows.push(row);
    }
    let table = matrix::table(&rows);
    std::fs::write(cache.join("matrix.md"), &table)?;
    println!(
        "\nkernel matrix (`cargo xtask kernels --kernel {}`{}), {} s in all:\n\n{table}",
        opts.kernels.join(" --kernel "),
        opts.test
            .as_deref()
            .map(|t| format!(" --test {t}"))
            .unwrap_or_default(),
        started.elapsed().as_secs()
    );
    let failed: Vec<String> = rows.iter().flat_map(|r| r.failures()).collect();
    if !failed.is_empty() {
        bail!(
            "the kernel matrix failed:\n  {}\n(logs under {})",
            failed.join("\n  "),
            cache.display()
        );
    }
    Ok(())
}

fn choose(names: &[String]) -> Result<Vec<&'static Kernel>> {
    let mut chosen: Vec<&'static Kernel> = Vec::new();
    for n in names {
        if n == "all" {
            chosen.extend(KERNELS.iter());
            continue;
        }
        let k = KERNELS.iter().find(|k| k.name == n).with_context(|| {
            format!("kernel {n} is not in the matrix; pick 5.10, 6.1, 6.12 or all")
        })?;
        chosen.push(k);
    }
    chosen.dedup_by_key(|k| k.name);
    Ok(chosen)
}

/// Builds the test binaries (and the tracer they start: `tracer-tests`' own binary, which
/// cargo builds with them) on the host; returns each test target's executable by name.
fn build_tests(root: &Path) -> Result<HashMap<String, PathBuf>> {
    ensure_ebpf_toolchain()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = Command::new(&cargo);
    c.current_dir(root)
        .args([
            "test",
            "--no-run",
            "--message-format=json",
            "-p",
            "tracer-tests",
        ])
        .args(["--test", "e2e", "--test", "routing", "--test", "kernels"])
        .args([
            "--test",
            "real_traffic",
            "--test",
            "pcap",
            "--test",
            "whole_path",
        ]);
    let out = c
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("could not run cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the test binaries failed");
    }
    let mut found = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" {
            continue;
        }
        if let (Some(name), Some(exe)) = (v["target"]["name"].as_str(), v["executable"].as_str()) {
            if v["target"]["kind"][0] == "test" {
                found.insert(name.to_string(), PathBuf::from(exe));
            }
        }
    }
    for b in ["e2e", "routing", "kernels", "real_traffic"] {
        if !found.contains_key(b) {
            bail!("cargo did not report the `{b}` test binary");
        }
    }
    Ok(found)
}
