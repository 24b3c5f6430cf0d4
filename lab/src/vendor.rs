//! Meridio's own load balancer (nfqlb) and test client/server (mconnect), built from their
//! upstream tarballs, kept outside the repository in a vendor folder next to the workspace:
//! finds them, checks them against the sha256 sums pinned here, installs the Debian build
//! dependencies when missing, builds both into `<workspace>/target/vendor/bin` and reuses
//! the binaries while they are there. None of their code is in this repository.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::cmd::{self, run_visible, which};

/// Overrides where the tarballs are (default: the vendor folder next to the workspace,
/// see [`vendor_dir`]).
pub const VENDOR_DIR_ENV: &str = "MERIDIO_VENDOR_DIR";

const NFQLB_TARBALL: &str = "nfqueue-loadbalancer-6f2007b.tar.gz";
const NFQLB_SHA256: &str = "b35d31ae569f48fe438bafbdb6dc10dbe59c200f2621c29874be9887111ab326";
const NFQLB_VERSION: &str = "6f2007b";
const MCONNECT_TARBALL: &str = "mconnect-d0fb693.tar.gz";
const MCONNECT_SHA256: &str = "93280ce0bb97c5f758b261ab1ad7d5ea6573c6d2127e80e29fc6b366efab676e";

/// Debian packages that building nfqlb and mconnect and queueing to nfqlb need.
const BUILD_PACKAGES: &[&str] = &[
    "libnetfilter-queue-dev",
    "libmnl-dev",
    "golang-go",
    "iptables",
    "make",
    "gcc",
    "libc6-dev",
];

/// The built binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorTools {
    pub nfqlb: PathBuf,
    pub mconnect: PathBuf,
}

/// The workspace root (the lab crate sits one level below it).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the lab crate lives inside the workspace")
        .to_path_buf()
}

/// Where the binaries go: `<workspace>/target/vendor`.
pub fn out_dir() -> PathBuf {
    workspace_root().join("target").join("vendor")
}

/// Where the tarballs are: `$MERIDIO_VENDOR_DIR`, else the vendor folder kept next to the
/// workspace (outside the repository).
pub fn vendor_dir() -> PathBuf {
    match std::env::var_os(VENDOR_DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => workspace_root().join("..").join("shared").join("vendor"),
    }
}

/// The binaries, built first if they are not in `target/vendor/bin` yet (one build at a
/// time: a lock file serialises concurrent callers).
pub fn ensure() -> Result<VendorTools> {
    let out = out_dir();
    let bin = out.join("bin");
    let tools = VendorTools {
        nfqlb: bin.join("nfqlb"),
        mconnect: bin.join("mconnect"),
    };
    let present = |t: &VendorTools| t.nfqlb.is_file() && t.mconnect.is_file();
    // iptables-legacy is needed at run time when the kernel lacks nft's queue expression.
    if present(&tools) && which("iptables-legacy").is_some() {
        return Ok(tools);
    }
    std::fs::create_dir_all(&bin).with_context(|| format!("could not create {}", bin.display()))?;
    let _lock = lock(&out.join(".lock"))?;
    ensure_build_deps()?;
    if present(&tools) {
        return Ok(tools);
    }
    let dir = vendor_dir();
    let nfqlb_tgz = tarball(&dir, NFQLB_TARBALL, NFQLB_SHA256)?;
    let mconnect_tgz = tarball(&dir, MCONNECT_TARBALL, MCONNECT_SHA256)?;
    if !tools.nfqlb.is_file() {
        build_nfqlb(&nfqlb_tgz, &out, &tools.nfqlb)?;
    }
    if !tools.mconnect.is_file() {
        build_mconnect(&mconnect_tgz, &out, &tools.mconnect)?;
    }
    Ok(tools)
}

/// An exclusive flock on `path`, released when the file is dropped.
fn lock(path: &Path) -> Result<File> {
    let f = File::create(path).with_context(|| format!("could not create {}", path.display()))?;
    if let Err(e) = rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive) {
        bail!("could not lock {}: {e}", path.display());
    }
    Ok(f)
}

/// The tarball `name` in `dir`, checked against its sha256.
fn tarball(dir: &Path, name: &str, sha256: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{name} is not in {} (set {VENDOR_DIR_ENV} to the directory holding the vendored tarballs)",
            dir.display()
        );
    }
    let mut f = File::open(&path).with_context(|| format!("could not open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("could not read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let got: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if got != sha256 {
        bail!(
            "{} has sha256 {got}, not the {sha256} the vendored release is pinned to",
            path.display()
        );
    }
    Ok(path)
}

/// Installs the build dependencies with apt-get when a file or command they provide is
/// missing (apt-get update once first).
fn ensure_build_deps() -> Result<()> {
    let missing = [
        (
            "/usr/include/libnetfilter_queue/libnetfilter_queue.h",
            "libnetfilter-queue-dev",
        ),
        ("/usr/include/libmnl/libmnl.h", "libmnl-dev"),
    ]
    .iter()
    .any(|(f, _)| !Path::new(f).is_file())
        || ["go", "iptables-legacy", "ip6tables-legacy", "make", "cc"]
            .iter()
            .any(|c| which(c).is_none());
    if !missing {
        return Ok(());
    }
    if !cmd::is_root() || which("apt-get").is_none() {
        bail!(
            "building nfqlb and mconnect needs the Debian packages {} (apt-get install {})",
            BUILD_PACKAGES.join(", "),
            BUILD_PACKAGES.join(" ")
        );
    }
    println!(
        "installing {} (to build nfqlb and mconnect and queue to nfqlb)",
        BUILD_PACKAGES.join(", ")
    );
    let mut update = cmd::command("apt-get");
    update
        .env("DEBIAN_FRONTEND", "noninteractive")
        .arg("update");
    run_visible(update).context("apt-get update failed")?;
    let mut install = cmd::command("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends"])
        .args(BUILD_PACKAGES);
    run_visible(install).with_context(|| {
        format!(
            "could not install the packages nfqlb and mconnect need: {}",
            BUILD_PACKAGES.join(", ")
        )
    })
}

/// Unpacks `tgz` into a fresh `<out>/src/<stem>` and returns that directory.
fn unpack(tgz: &Path, out: &Path, stem: &str) -> Result<PathBuf> {
    let src = out.join("src").join(stem);
    if src.exists() {
        std::fs::remove_dir_all(&src)
            .with_context(|| format!("could not remove {}", src.display()))?;
    }
    std::fs::create_dir_all(&src).with_context(|| format!("could not create {}", src.display()))?;
    cmd::run(
        "tar",
        &[
            "xzf".as_ref(),
            tgz.as_os_str(),
            "-C".as_ref(),
            src.as_os_str(),
        ],
    )
    .with_context(|| format!("could not unpack {}", tgz.display()))?;
    Ok(src)
}

/// `make -C nfqueue-loadbalancer/src -j2 O=<build> X=<bin> VERSION=6f2007b`.
fn build_nfqlb(tgz: &Path, out: &Path, dest: &Path) -> Result<()> {
    println!("building nfqlb from {}", tgz.display());
    let src = unpack(tgz, out, "nfqlb")?;
    let tmp = dest.with_extension("tmp");
    let mut make = cmd::command("make");
    make.arg("-C")
        .arg(src.join("nfqueue-loadbalancer").join("src"))
        .arg("-j2")
        .arg(format!("O={}", out.join("build").join("nfqlb").display()))
        .arg(format!("X={}", tmp.display()))
        .arg(format!("VERSION={NFQLB_VERSION}"));
    run_quiet(make).context("building nfqlb failed")?;
    std::fs::rename(&tmp, dest).with_context(|| format!("could not write {}", dest.display()))
}

/// `go mod edit` (pkg/rndip from the tarball), then `go build ./cmd/mconnect` offline.
fn build_mconnect(tgz: &Path, out: &Path, dest: &Path) -> Result<()> {
    println!("building mconnect from {}", tgz.display());
    let src = unpack(tgz, out, "mconnect")?.join("mconnect");
    let go_env = |c: &mut std::process::Command| {
        // Caches inside target/, so the build needs no HOME and leaves nothing elsewhere.
        c.current_dir(&src)
            .env("GOPROXY", "off")
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", out.join("go-cache"))
            .env("GOPATH", out.join("go-path"));
    };
    let mut edit = cmd::command("go");
    go_env(&mut edit);
    edit.args([
        "mod",
        "edit",
        "-require=github.com/Nordix/mconnect/pkg/rndip@v0.0.0",
        "-replace=github.com/Nordix/mconnect/pkg/rndip=./pkg/rndip",
    ]);
    run_quiet(edit).context("`go mod edit` for mconnect failed")?;
    let tmp = dest.with_extension("tmp");
    let mut build = cmd::command("go");
    go_env(&mut build);
    build.args(["build", "-o"]).arg(&tmp).arg("./cmd/mconnect");
    run_quiet(build).context("building mconnect failed")?;
    std::fs::rename(&tmp, dest).with_context(|| format!("could not write {}", dest.display()))
}

/// Runs `c`, keeping its output for the error only.
fn run_quiet(mut c: std::process::Command) -> Result<()> {
    let line = format!("{c:?}").replace('"', "");
    let out = c
        .output()
        .with_context(|| format!("could not start `{line}`"))?;
    if !out.status.success() {
        let tail = |b: &[u8]| {
            let s = String::from_utf8_lossy(b);
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        };
        bail!(
            "`{line}` failed ({}):\n{}\n{}",
            out.status,
            tail(&out.stdout),
            tail(&out.stderr)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarball_missing_or_altered_is_one_clear_error() {
        let dir = std::env::temp_dir().join(format!("lab-vendor-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = tarball(&dir, MCONNECT_TARBALL, MCONNECT_SHA256).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains(MCONNECT_TARBALL) && msg.contains(VENDOR_DIR_ENV),
            "{msg}"
        );
        assert!(msg.contains(&dir.display().to_string()), "{msg}");
        std::fs::write(dir.join(MCONNECT_TARBALL), b"not the tarball").unwrap();
        let e = tarball(&dir, MCONNECT_TARBALL, MCONNECT_SHA256).unwrap_err();
        assert!(format!("{e:#}").contains("sha256"), "{e:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_vendored_tarballs_match_their_sums() {
        let dir = vendor_dir();
        if !dir.is_dir() && std::env::var_os("CI").is_none() {
            eprintln!("SKIPPED: no {} here", dir.display());
            return;
        }
        tarball(&dir, NFQLB_TARBALL, NFQLB_SHA256).unwrap();
        tarball(&dir, MCONNECT_TARBALL, MCONNECT_SHA256).unwrap();
    }
}
