//! `cargo xtask dist`: the tracer as one static x86_64 binary, the eBPF object embedded
//! (the tracer's build script builds it and `include_bytes!` puts it in), needing nothing
//! on a node but the kernel. musl where rustup can add its target; otherwise glibc linked
//! statically (the tracer uses no NSS lookup: the hostname comes from uname).
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use lab::cmd::run_visible;

pub const MUSL: &str = "x86_64-unknown-linux-musl";
pub const GNU: &str = "x86_64-unknown-linux-gnu";

/// Where the dist binary goes, under the workspace's target directory.
pub fn dist_path(target_dir: &Path) -> PathBuf {
    target_dir.join("dist").join("meridio-tracer")
}

/// Builds the static binary and copies it to [`dist_path`]; returns the path and the
/// Rust target it was built for.
pub fn build(workspace: &Path, target_dir: &Path) -> Result<(PathBuf, &'static str)> {
    let target = if musl_available() {
        MUSL
    } else {
        println!("the {MUSL} target could not be installed with rustup: linking glibc statically ({GNU}, +crt-static) instead");
        GNU
    };
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace).args([
        "build",
        "--release",
        "--locked",
        "-p",
        "tracer",
        "--target",
        target,
    ]);
    if target == GNU {
        // Only for this target: the build script (host) stays dynamically linked.
        c.env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            "-C target-feature=+crt-static",
        );
    }
    run_visible(c).context("building the static tracer failed")?;
    let built = target_dir.join(target).join("release").join("tracer");
    let out = dist_path(target_dir);
    std::fs::create_dir_all(out.parent().expect("dist dir"))?;
    std::fs::copy(&built, &out)
        .with_context(|| format!("could not copy {} to {}", built.display(), out.display()))?;
    if let Some(interp) = elf_interpreter(&std::fs::read(&out)?)? {
        bail!(
            "{} is not static: it asks for the loader {interp}",
            out.display()
        );
    }
    Ok((out, target))
}

/// Whether the musl target is installed, adding it with rustup when missing.
fn musl_available() -> bool {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == MUSL)
        })
        .unwrap_or(false);
    if installed {
        return true;
    }
    println!("installing the {MUSL} target: rustup target add {MUSL}");
    Command::new("rustup")
        .args(["target", "add", MUSL])
        .status()
        .is_ok_and(|s| s.success())
}

/// The program interpreter (dynamic loader) an x86_64 ELF file names, if any: a static
/// binary has none.
pub fn elf_interpreter(elf: &[u8]) -> Result<Option<String>> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        bail!("not a 64-bit little-endian ELF file");
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().expect("8 bytes")) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if ph + 0x28 > elf.len() {
            bail!("truncated ELF program headers");
        }
        // PT_INTERP: p_offset at +8, p_filesz at +0x20.
        if u32::from_le_bytes(elf[ph..ph + 4].try_into().expect("4 bytes")) == 3 {
            let (off, len) = (u64_at(ph + 8), u64_at(ph + 0x20));
            let name = elf.get(off..off + len).context("truncated PT_INTERP")?;
            return Ok(Some(
                String::from_utf8_lossy(name)
                    .trim_end_matches('\0')
                    .to_string(),
            ));
        }
    }
    Ok(None)
}

pub const IMAGE: &str = concat!("localhost/meridio-tracer:", env!("CARGO_PKG_VERSION"));

/// A container tool that can build here: podman or buildah (daemonless, preferred), else
/// docker when its daemon answers. Returns its name, or why none can.
pub fn container_tool() -> std::result::Result<&'static str, String> {
    for tool in ["podman", "buildah"] {
        if lab::cmd::which(tool).is_some() {
            return Ok(tool);
        }
    }
    if lab::cmd::which("docker").is_some() {
        let up = Command::new("docker")
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success());
        if up {
            return Ok("docker");
        }
        return Err(
            "podman and buildah are not installed and the docker client finds no daemon".into(),
        );
    }
    Err("none of podman, buildah or docker is installed".into())
}

/// The Debian packages podman runs containers with here: Debian's podman defaults to crun,
/// and installed alone with `--no-install-recommends` it takes crun or runc, whichever apt
/// picks; naming runc makes it runc, which `tests/image.rs` asks for (`--runtime runc`).
pub const PODMAN_TOOLS: &[(&str, &str)] = &[("podman", "podman"), ("runc", "runc")];

/// The tool [`image`] builds with: [`container_tool`]'s, else podman and runc installed
/// from Debian when we are root and have apt-get. When there is none, the error is one
/// sentence saying what to install.
pub fn ensure_container_tool() -> Result<&'static str> {
    match container_tool() {
        Ok(tool) => Ok(tool),
        Err(why) if lab::cmd::is_root() && lab::cmd::which("apt-get").is_some() => {
            println!("{why}: installing podman and runc from Debian");
            match crate::toolchain::ensure_host_tools(PODMAN_TOOLS) {
                Ok(()) => Ok("podman"),
                Err(e) => bail!(
                    "{why}, and installing podman and runc with apt-get failed ({e:#}); \
                     install podman, buildah or docker and run `cargo xtask image` again"
                ),
            }
        }
        Err(why) => bail!(
            "{why}, and they cannot be installed here (that needs root and apt-get); install \
             podman (apt-get install podman runc), buildah or docker and run `cargo xtask image` again"
        ),
    }
}

/// Builds [`IMAGE`] from deploy/Containerfile with the dist binary as the whole context.
pub fn image(workspace: &Path, dist: &Path, tool: &str) -> Result<()> {
    let context = dist.parent().expect("dist dir");
    let file = workspace.join("deploy").join("Containerfile");
    let mut c = Command::new(tool);
    match tool {
        "buildah" => c.args(["bud", "--layers=false"]),
        _ => c.arg("build"),
    };
    c.arg("-f").arg(&file).args(["-t", IMAGE]).arg(context);
    run_visible(c).with_context(|| format!("`{tool} build` failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_binary_names_its_loader() {
        // This test binary is dynamically linked (the host toolchain's default).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let interp = elf_interpreter(&me).unwrap().expect("a loader");
        assert!(interp.contains("ld-linux"), "{interp}");
        assert!(elf_interpreter(b"#!/bin/sh\n").is_err());
    }
}
