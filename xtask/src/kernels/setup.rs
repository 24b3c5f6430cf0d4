//! What the machines need on the host: qemu, kmod, busybox (virtme-ng's initramfs) and
//! virtme-ng itself; the lab's tools (the guest runs the host's binaries); Debian's kernel
//! packages from pinned apt suites, unpacked with their modules under /lib/modules.
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::toolchain::{ensure_host_tools, LAB_TOOLS};
use anyhow::{bail, Context, Result};
use lab::cmd::{self, run, run_visible, which};

use super::Kernel;

const SOURCES: &str = "/etc/apt/sources.list.d/meridio-kernels.sources";
const PINS: &str = "/etc/apt/preferences.d/meridio-kernels";
const VIRTME_NG: &str = "1.42";

/// Installs what booting and testing need; returns the `vng` to run.
pub fn host_tools() -> Result<PathBuf> {
    ensure_host_tools(LAB_TOOLS)?;
    ensure_host_tools(&[
        ("bpftool", "bpftool"),
        ("setpriv", "util-linux"),
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("depmod", "kmod"),
        ("busybox", "busybox-static"),
        ("dpkg-deb", "dpkg"),
    ])?;
    vng()
}

/// virtme-ng from PyPI (Debian 12 has no package of it).
fn vng() -> Result<PathBuf> {
    if let Some(p) = which("vng") {
        return Ok(p);
    }
    let scripts = || -> Option<PathBuf> {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sysconfig; print(sysconfig.get_path('scripts'))",
            ])
            .output()
            .ok()?;
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("vng");
        p.is_file().then_some(p)
    };
    if let Some(p) = scripts() {
        return Ok(p);
    }
    // Pinned: the version the matrix was run with (a new release may boot differently).
    println!("installing virtme-ng from PyPI (python3 -m pip install virtme-ng=={VIRTME_NG})");
    let pip = |extra: &[&str]| {
        let mut c = Command::new("python3");
        c.args(["-m", "pip", "install", "--quiet"])
            .arg(format!("virtme-ng=={VIRTME_NG}"))
            .args(extra);
        run_visible(c)
    };
    if pip(&[]).is_err() {
        // Debian's own python3 refuses pip installs outside a venv unless told.
        println!("pip refused; trying again with --break-system-packages");
        pip(&["--break-system-packages"]).context("could not install virtme-ng with pip")?;
    }
    which("vng")
        .or_else(scripts)
        .context("virtme-ng installed but `vng` is not on PATH nor in python3's scripts dir")
}

/// Adds bullseye and trixie to apt, pinned to priority 1 so only packages asked for by
/// name come from them; returns whether anything changed (then apt needs an update).
fn ensure_apt_sources() -> Result<bool> {
    let sources = "# Added by `cargo xtask kernels`: Debian kernels for the VM test matrix. Pinned to\n\
                   # priority 1 in /etc/apt/preferences.d/meridio-kernels: nothing else comes from here.\n\
                   Types: deb\n\
                   URIs: http://deb.debian.org/debian\n\
                   Suites: bullseye trixie\n\
                   Components: main\n\
                   Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";
    let pins =
        "# Added by `cargo xtask kernels`: take only what is asked for by name from these.\n\
                Package: *\nPin: release n=bullseye\nPin-Priority: 1\n\n\
                Package: *\nPin: release n=trixie\nPin-Priority: 1\n";
    let mut changed = false;
    // The pins first: a sources file without them would let the next upgrade pull
    // bullseye's or trixie's libc.
    for (path, text) in [(PINS, pins), (SOURCES, sources)] {
        if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
            std::fs::write(path, text).with_context(|| format!("cannot write {path}"))?;
            println!("wrote {path}");
            changed = true;
        }
    }
    Ok(changed)
}

/// The newest package of this kernel line apt knows, e.g. linux-image-6.1.0-57-amd64-unsigned.
fn newest_package(k: &Kernel) -> Result<Option<String>> {
    let pattern = format!("^{}", k.prefix.replace('.', "\\.").replace('+', "\\+"));
    let out = run("apt-cache", &["search", "--names-only", &pattern])?;
    let mut best: Option<(u32, String)> = None;
    for line in out.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(middle) = name
            .strip_prefix(k.prefix)
            .and_then(|r| r.strip_suffix(k.suffix))
        else {
            continue;
        };
        let Ok(n) = middle.parse::<u32>() else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| n > *b) {
            best = Some((n, name.to_string()));
        }
    }
    Ok(best.map(|(_, n)| n))
}

/// A kernel ready to boot.
pub struct Image {
    pub vmlinuz: PathBuf,
    /// `uname -r` of it.
    pub release: String,
    pub package: String,
}

/// Fetches (once; cached under `cache`) and unpacks the kernel package, and puts its
/// modules under /lib/modules where virtme-ng's initramfs and the guest's modprobe look.
pub fn kernel_image(k: &Kernel, cache: &Path) -> Result<Image> {
    let dir = cache.join(k.name);
    let stamp = dir.join("package");
    if ensure_apt_sources()? {
        apt_update()?;
    }
    let package = match newest_package(k)? {
        Some(p) => p,
        None => {
            apt_update()?;
            newest_package(k)?.with_context(|| {
                format!(
                    "apt knows no {}<N>{} package (suite {})",
                    k.prefix, k.suffix, k.suite
                )
            })?
        }
    };
    let release = package
        .strip_prefix("linux-image-")
        .and_then(|r| r.strip_suffix("-unsigned"))
        .context("unexpected kernel package name")?
        .to_string();
    let vmlinuz = dir.join(format!("vmlinuz-{release}"));
    let modules = PathBuf::from("/lib/modules").join(&release);
    let cached = std::fs::read_to_string(&stamp).ok().as_deref() == Some(package.as_str())
        && vmlinuz.is_file()
        && modules.join("modules.dep").is_file();
    if !cached {
        println!("fetching {package} ({} {})", k.debian, k.suite);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut c = cmd::command("apt-get");
        c.current_dir(&dir).args(["download", "-q", &package]);
        run_visible(c).with_context(|| format!("apt-get download {package} failed"))?;
        let deb = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .context("apt-get download left no .deb")?;
        let tree = dir.join("tree");
        run(
            "dpkg-deb",
            &[OsStr::new("-x"), deb.as_os_str(), tree.as_os_str()],
        )?;
        std::fs::copy(tree.join(format!("boot/vmlinuz-{release}")), &vmlinuz)
            .context("the package has no boot/vmlinuz")?;
        // bookworm and bullseye ship /lib/modules, trixie /usr/lib/modules.
        let from = ["lib/modules", "usr/lib/modules"]
            .iter()
            .map(|d| tree.join(d).join(&release))
            .find(|p| p.is_dir())
            .context("the package has no modules directory")?;
        let _ = std::fs::remove_dir_all(&modules);
        std::fs::create_dir_all("/lib/modules")?;
        run(
            "cp",
            &[OsStr::new("-a"), from.as_os_str(), modules.as_os_str()],
        )?;
        run("depmod", &["-a", &release])?;
        std::fs::remove_dir_all(&tree)?;
        std::fs::remove_file(&deb)?;
        std::fs::write(&stamp, &package)?;
    }
    Ok(Image {
        vmlinuz,
        release,
        package,
    })
}

fn apt_update() -> Result<()> {
    let mut c = cmd::command("apt-get");
    c.args(["update", "-q"]);
    run_visible(c).context("apt-get update failed")?;
    if !Path::new(PINS).is_file() {
        bail!("{PINS} is missing");
    }
    Ok(())
}
