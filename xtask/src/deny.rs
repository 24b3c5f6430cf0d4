//! `cargo xtask deny`: the supply chain checked with cargo-deny against `deny.toml`, for the
//! host workspace and for the eBPF crate (a workspace of its own with its own lock file):
//! licences, banned and duplicate crates, and sources always (offline, from the lock
//! files); RustSec advisories when the advisory database can be fetched. It lives on
//! GitHub, which some machines (CI's here) cannot reach: then the run says in one line
//! that advisories were not checked, and the rest still fails on any finding.
use std::{path::Path, process::Command};

use anyhow::{Context, Result};
use lab::cmd::{self, run_visible};

/// The cargo-deny release `deny.toml` is written for.
const CARGO_DENY_VERSION: &str = "0.20.2";

/// The manifests checked: the host workspace's and the eBPF crate's.
const MANIFESTS: [&str; 2] = ["Cargo.toml", "tracer-ebpf/Cargo.toml"];

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Installs cargo-deny CARGO_DENY_VERSION (from crates.io, its lock file honoured) when
/// another or none is installed.
fn ensure_cargo_deny() -> Result<()> {
    let found = cmd::run("cargo", &["deny", "--version"]).ok();
    if found
        .as_deref()
        .is_some_and(|v| v.split_whitespace().any(|w| w == CARGO_DENY_VERSION))
    {
        return Ok(());
    }
    println!("installing cargo-deny {CARGO_DENY_VERSION} (a few minutes)");
    let mut c = cargo();
    c.args([
        "install",
        &format!("cargo-deny@{CARGO_DENY_VERSION}"),
        "--locked",
        "--force",
    ]);
    run_visible(c).context("could not install cargo-deny")
}

pub fn check(root: &Path) -> Result<()> {
    ensure_cargo_deny()?;
    let config = root.join("deny.toml");
    let advisories = fetch_advisories(root);
    for manifest in MANIFESTS {
        let mut c = cargo();
        // Offline: the lock files as they are, the advisory database as fetched above.
        c.current_dir(root)
            .args(["deny", "--offline", "--locked", "--manifest-path", manifest])
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
    let mut c = cargo();
    c.current_dir(root).args(["deny", "fetch", "db"]);
    c.output().is_ok_and(|o| o.status.success())
}
