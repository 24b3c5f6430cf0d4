//! Builds the eBPF object (`tracer-ebpf`) with the nightly toolchain and `bpf-linker`, and
//! hands its path to the tracer through `TRACER_EBPF_OBJECT`.
//!
//! Hand-written rather than `aya_build::build_ebpf` on purpose: that helper builds the eBPF
//! package through the host workspace, which would pull the no_std crate into every
//! `cargo test` / `cargo clippy` of the workspace. Keeping `tracer-ebpf` as its own
//! workspace keeps the host side on stable. Run `cargo xtask build` once to install the
//! nightly `rust-src` component and `bpf-linker` 0.10.2.
use std::{env, path::PathBuf, process::Command};

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir.parent().context("tracer has no parent dir")?;
    let ebpf_dir = root.join("tracer-ebpf");
    for watched in [
        "tracer-ebpf/src",
        "tracer-ebpf/Cargo.toml",
        "tracer-common/src",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let target_dir = out_dir.join("ebpf-target");
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "build", "--release", "--locked"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--manifest-path")
        .arg(ebpf_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // Same flags aya-build passes: BTF for the maps, debug info for the verifier log.
        // And LLVM's own expansion of memset/memcpy/memmove into stores: with bpf-linker's
        // default (`--bpf-expand-memcpy-in-order`) every zeroed key and copied address was a
        // call to a byte-at-a-time loop (a 47-byte memset: 235 instructions), on every packet.
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-Cdebuginfo=2\x1f-Clink-arg=--btf\x1f-Clink-arg=--disable-expand-memcpy-in-order",
        );
    // The outer (stable) cargo's settings must not leak into the nightly build.
    for var in [
        "RUSTC",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .context("could not run `rustup run nightly cargo`; run `cargo xtask build` first")?;
    if !status.success() {
        bail!(
            "building the eBPF programs failed; `cargo xtask build` installs the nightly \
             rust-src component and bpf-linker 0.10.2 they need"
        );
    }
    let object = target_dir.join("bpfel-unknown-none/release/tracer");
    println!("cargo:rustc-env=TRACER_EBPF_OBJECT={}", object.display());
    Ok(())
}
