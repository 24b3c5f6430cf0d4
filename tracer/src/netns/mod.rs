//! Network namespaces: resolving what the operator names (`--netns`) to a namespace file,
//! and running code inside a namespace; what a namespace's kernel holds
//! ([`kernel_state`]) and what changed in it ([`changes`]).
//!
//! aya and netlink sockets have no netns parameter: a socket, an ifindex lookup or a TCX
//! attach all act in the calling thread's namespace. So namespace-bound work runs on a
//! short-lived OS thread (never a tokio worker) that has entered the namespace with
//! `setns(CLONE_NEWNET)`; sockets created there stay bound to that namespace afterwards.
pub mod changes;
pub mod kernel_state;

use std::{
    fs::File,
    os::fd::{AsFd, AsRawFd},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use rustix::{
    fs::{Mode, OFlags},
    thread::{move_into_link_name_space, LinkNameSpaceType::Network},
};

pub const NETNS_DIRS: [&str; 2] = ["/var/run/netns", "/run/netns"];

/// An opened network namespace and how to call it in output.
#[derive(Debug)]
pub struct Netns {
    pub label: String,
    file: File,
}

impl Netns {
    /// Resolves `spec`: a name under /var/run/netns (or /run/netns), a path to a netns
    /// file (such as /proc/<pid>/ns/net), or a pid.
    pub fn open(spec: &str) -> Result<Netns> {
        let path = resolve(spec)?;
        Self::open_path(&path, spec)
    }

    /// Opens a namespace file found by discovery (a file under /var/run/netns or a
    /// /proc/<pid>/ns/net); `label` is how output names it.
    pub fn open_path(path: &Path, label: &str) -> Result<Netns> {
        // Non-blocking: a FIFO or a device someone put under /run/netns opens at once
        // instead of hanging discovery, and is then refused as no nsfs file.
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open network namespace {}", path.display()))?;
        let file = File::from(fd);
        if !is_netns(&file) {
            bail!("{} is not a network namespace file", path.display());
        }
        Ok(Netns {
            label: label.to_string(),
            file,
        })
    }

    /// The namespace's identity: (st_dev, st_ino) of its nsfs inode, the same whichever
    /// file (netns name, /proc/<pid>/ns/net) it was opened through.
    pub fn id(&self) -> Result<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let m = self
            .file
            .metadata()
            .with_context(|| format!("cannot stat network namespace {}", self.label))?;
        Ok((m.dev(), m.ino()))
    }

    /// Runs `f` on a new thread inside this namespace and returns its result.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                // Only this (new) thread's netns changes.
                if let Err(e) = move_into_link_name_space(self.file.as_fd(), Some(Network)) {
                    return Err(std::io::Error::from(e))
                        .with_context(|| format!("cannot enter network namespace {}", self.label));
                }
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread inside netns {} panicked", self.label))?
        })
    }
}

fn resolve(spec: &str) -> Result<PathBuf> {
    if spec.is_empty() {
        bail!("--netns is empty: give a netns name, a path to a netns file or a pid");
    }
    if spec.contains('/') {
        let p = Path::new(spec);
        if !p.exists() {
            bail!("network namespace file {spec} does not exist");
        }
        return Ok(p.to_path_buf());
    }
    if spec.bytes().all(|b| b.is_ascii_digit()) {
        let p = PathBuf::from(format!("/proc/{spec}/ns/net"));
        if !Path::new(&format!("/proc/{spec}")).exists() {
            bail!("no process with pid {spec}, so no network namespace to trace");
        }
        if !p.exists() {
            bail!(
                "process {spec} has no network namespace file {}",
                p.display()
            );
        }
        return Ok(p);
    }
    for dir in NETNS_DIRS {
        let p = Path::new(dir).join(spec);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("network namespace {spec:?} not found under /var/run/netns or /run/netns (`ip netns list` shows the names; a pid or a path also works)")
}

/// True when `file` is a network namespace (nsfs inode whose NS_GET_NSTYPE is NEWNET).
/// The file system is checked first: the ioctl is only asked of an nsfs file, never of a
/// device whose driver would read its number as something else.
fn is_netns(file: &File) -> bool {
    const NSFS_MAGIC: u64 = 0x6e73_6673;
    // `f_type` is signed on some targets: compared as the magic's bits.
    if !rustix::fs::fstatfs(file).is_ok_and(|st| st.f_type as u64 == NSFS_MAGIC) {
        return false;
    }
    // _IO(0xb7, 0x3). rustix has no safe call for it (its ioctl is as unsafe as libc's).
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: ioctl on an open fd with no argument.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    kind == libc::CLONE_NEWNET
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_names_pids_and_paths() {
        let e = Netns::open("no-such-netns-xyz").unwrap_err().to_string();
        assert!(e.contains("not found"), "{e}");
        let e = Netns::open("999999999").unwrap_err().to_string();
        assert!(e.contains("no process with pid"), "{e}");
        let e = Netns::open("/nonexistent/ns").unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn own_process_netns_opens_and_a_plain_file_does_not() {
        let me = std::process::id().to_string();
        assert!(Netns::open(&me).is_ok());
        let e = Netns::open("/etc/hostname").unwrap_err().to_string();
        assert!(e.contains("not a network namespace"), "{e}");
    }

    #[test]
    fn the_same_namespace_has_the_same_id_through_any_file() {
        let me = Netns::open(&std::process::id().to_string()).unwrap();
        let by_path = Netns::open_path(Path::new("/proc/self/ns/net"), "self").unwrap();
        assert_eq!(me.id().unwrap(), by_path.id().unwrap());
        assert_eq!(by_path.label, "self");
        let e = Netns::open_path(Path::new("/etc/hostname"), "x").unwrap_err();
        assert!(e.to_string().contains("not a network namespace"), "{e}");
    }

    #[test]
    fn a_fifo_or_a_device_is_refused_without_blocking() {
        // A blocking open of a FIFO waits for a writer forever; this one must return.
        let fifo = std::env::temp_dir().join(format!("netns-fifo-{}", std::process::id()));
        let _ = std::fs::remove_file(&fifo);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::RUSR | Mode::WUSR,
            0,
        )
        .unwrap();
        let e = Netns::open_path(&fifo, "fifo").unwrap_err().to_string();
        assert!(e.contains("not a network namespace"), "{e}");
        std::fs::remove_file(&fifo).unwrap();
        let e = Netns::open("/dev/null").unwrap_err().to_string();
        assert!(e.contains("not a network namespace"), "{e}");
    }
}
