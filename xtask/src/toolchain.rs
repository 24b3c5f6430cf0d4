//! Installing what building and testing need, so a fresh machine (or CI) gets there with
//! one `cargo xtask` command: the nightly toolchain with rust-src and bpf-linker 0.10.2 for
//! the eBPF object, iproute2 and nftables for the lab (plus iptables and Go for the lab
//! with nfqlb), a mounted tracefs for the tracer.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use lab::cmd::{self, run_visible, which};

/// The bpf-linker release that works with the nightly's own LLVM; newer ones want a
/// system LLVM that Debian does not ship.
const BPF_LINKER_VERSION: &str = "0.10.2";

/// Commands the lab needs, with the Debian packages that provide them (`unshare` and
/// `nsenter` for the lab's long-lived processes and its proc-only target).
pub const LAB_TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("nft", "nftables"),
    ("unshare", "util-linux"),
    ("nsenter", "util-linux"),
];

/// What the lab with `--lb nfqlb` needs besides [`LAB_TOOLS`]: iptables-legacy where the
/// kernel has no nft queue expression, and Go, make and a C compiler to build nfqlb and
/// mconnect (whose headers the lab's vendor module installs itself when missing).
pub const NFQLB_TOOLS: &[(&str, &str)] = &[
    ("iptables-legacy", "iptables"),
    ("ip6tables-legacy", "iptables"),
    ("go", "golang-go"),
    ("make", "make"),
    ("cc", "gcc"),
];

/// Makes sure nightly with rust-src and bpf-linker 0.10.2 are installed.
pub fn ensure_ebpf_toolchain() -> Result<()> {
    if which("rustup").is_none() {
        bail!("rustup is not installed; install rustup, which the eBPF build needs for its nightly toolchain");
    }
    let toolchains = cmd::run("rustup", &["toolchain", "list"])?;
    let has_nightly = toolchains.lines().any(|l| l.starts_with("nightly"));
    if !has_nightly {
        println!("installing the nightly toolchain with rust-src (needed to build eBPF)");
        let mut c = cmd::command("rustup");
        c.args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]);
        run_visible(c).context("could not install the nightly toolchain")?;
    } else {
        let components = cmd::run(
            "rustup",
            &["component", "list", "--toolchain", "nightly", "--installed"],
        )?;
        if !components.lines().any(|l| l.starts_with("rust-src")) {
            println!("installing nightly rust-src (needed to build eBPF)");
            let mut c = cmd::command("rustup");
            c.args(["component", "add", "rust-src", "--toolchain", "nightly"]);
            run_visible(c).context("could not install the nightly rust-src component")?;
        }
    }

    let found = cmd::run("bpf-linker", &["--version"]).ok();
    let ok = found
        .as_deref()
        .is_some_and(|v| v.split_whitespace().any(|w| w == BPF_LINKER_VERSION));
    if !ok {
        let why = match &found {
            Some(v) => format!("found {}", v.trim()),
            None => "not installed".to_string(),
        };
        println!(
            "installing bpf-linker {BPF_LINKER_VERSION} ({why}; newer releases need a system LLVM that Debian lacks)"
        );
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut c = Command::new(cargo);
        c.args([
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--locked",
            "--force",
        ]);
        run_visible(c).context("could not install bpf-linker")?;
    }
    Ok(())
}

/// Makes sure each (command, Debian package) is there, installing missing packages with
/// apt-get when running as root.
pub fn ensure_host_tools(tools: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&(&str, &str)> = tools.iter().filter(|(c, _)| which(c).is_none()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut pkgs: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    pkgs.sort_unstable();
    pkgs.dedup();
    let cmds: Vec<&str> = missing.iter().map(|(c, _)| *c).collect();
    if !cmd::is_root() || which("apt-get").is_none() {
        bail!(
            "`{}` is missing; install the Debian package {} (apt-get install {})",
            cmds.join("`, `"),
            pkgs.join(", "),
            pkgs.join(" ")
        );
    }
    println!(
        "installing {} (needed for `{}`)",
        pkgs.join(", "),
        cmds.join("`, `")
    );
    let install = || {
        let mut c = cmd::command("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&pkgs);
        run_visible(c)
    };
    if install().is_err() {
        // A fresh machine often has no package lists yet.
        println!("apt-get install failed; running apt-get update and trying again");
        let mut c = cmd::command("apt-get");
        c.arg("update");
        run_visible(c).context("apt-get update failed")?;
        install().with_context(|| format!("could not install {}", pkgs.join(", ")))?;
    }
    if let Some((c, p)) = tools.iter().find(|(c, _)| which(c).is_none()) {
        bail!("`{c}` is still missing after installing {p}");
    }
    Ok(())
}

/// Mounts tracefs on /sys/kernel/tracing if it is not there (the tracer reads tracepoint
/// formats from it).
pub fn ensure_tracefs() -> Result<()> {
    if Path::new("/sys/kernel/tracing/events").exists() {
        return Ok(());
    }
    println!("mounting tracefs on /sys/kernel/tracing (the tracer reads tracepoint formats there)");
    cmd::run(
        "mount",
        &["-t", "tracefs", "tracefs", "/sys/kernel/tracing"],
    )
    .context(
        "tracefs is not mounted and mounting it on /sys/kernel/tracing failed (root needed)",
    )?;
    Ok(())
}
