//! Sharing the node object's maps with each object of TC programs: `LAST_INGRESS` (how a
//! route lookup finds the traced packet it routes) and `LAST_LOOKUP` (how a packet's egress
//! hook finds the lookup that routed it after the load balancer's queue, and `DEFER_ARMED`, when
//! to look for such lookups), `EVENTS` (one ring buffer for every
//! program, so the records of one packet's path come out in the order they were written,
//! and one reader serves the whole node), and the maps that are the same for every site:
//! the per-hop counts (`HOPS`), the per-VIP totals (`TOTALS`), the traced interfaces
//! (`L3_IFACES`, `DEVICES`), the counters, the traced namespaces (`NETNS_INUMS`) and the fragments'
//! ports (`FRAGS`). Whether the TC
//! programs are loaded once or once per site, userspace reads each of these in one place.
//!
//! aya 0.14 hands an existing map to a loading object only through a pin path in bpffs
//! (`EbpfLoader::map_pin_path`: a pinned map is reused, not created). So the maps are
//! pinned for the moment one object of TC programs loads, and unpinned straight after: nothing of
//! ours stays in bpffs while the tracer runs.
//!
//! The pins go in a directory of the run's own ([`PinDir`]): made with a random name, 0700,
//! and held locked (`flock`) for the whole run. A pid would not do: tracers in two pid
//! namespaces (one per node in a pod each) can have the same pid and would adopt or remove
//! each other's maps. A directory a killed run left is one whose lock nobody holds, whatever
//! namespace its tracer ran in; the next start removes it. Pins named by pid, as earlier
//! versions made them, are still removed once that pid is gone.
use std::{
    ops::Deref,
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
};

use rustix::fs::{flock, FlockOperation, Mode, OFlags};

use anyhow::{bail, Context, Result};

use aya::{
    maps::{Map, MapData},
    programs::SchedClassifier,
    Ebpf, EbpfLoader,
};

/// The shared maps, by their names in the object.
pub const SHARED_MAPS: [&str; 11] = [
    "LAST_INGRESS",
    "LAST_LOOKUP",
    "DEFER_ARMED",
    "EVENTS",
    "HOPS",
    "TOTALS",
    "L3_IFACES",
    "DEVICES",
    "COUNTERS",
    "NETNS_INUMS",
    "FRAGS",
];
const BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: u64 = 0xcafe_4a11;
const PIN_PREFIX: &str = "meridio-tracer-";
/// The run directories' names: this, then random hex.
const RUN_PREFIX: &str = "meridio-tracer-run-";

/// The run's own directory in bpffs, locked while it lives and removed with what is in it
/// when dropped.
pub struct PinDir {
    path: PathBuf,
    /// The directory open with an exclusive `flock`: released only when the run ends (or
    /// the kernel closes it for a killed one).
    _lock: OwnedFd,
}

impl PinDir {
    fn create(bpffs: &Path) -> Result<PinDir> {
        for _ in 0..8 {
            let path = bpffs.join(format!("{RUN_PREFIX}{}", random_hex()?));
            match rustix::fs::mkdir(&path, Mode::RWXU) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot make the pin directory {}", path.display())
                    })
                }
            }
            let lock = lock(&path, FlockOperation::LockExclusive)
                .with_context(|| format!("cannot lock the pin directory {}", path.display()))?;
            return Ok(PinDir { path, _lock: lock });
        }
        bail!(
            "cannot make a pin directory of its own in {}",
            bpffs.display()
        )
    }
}

impl Deref for PinDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        empty_and_remove(&self.path);
    }
}

/// Opens directory `dir` (never through a symlink) and takes `op` on it.
fn lock(dir: &Path, op: FlockOperation) -> rustix::io::Result<OwnedFd> {
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    flock(&fd, op)?;
    Ok(fd)
}

fn empty_and_remove(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// 16 random hex digits, from the kernel (a name no other run can guess or hold).
fn random_hex() -> Result<String> {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .context("cannot read /proc/sys/kernel/random/uuid")?;
    Ok(uuid.trim().replace('-', "")[..16].to_string())
}

/// The run's pin directory in bpffs. When bpffs is not mounted, mounts it at /sys/fs/bpf
/// (what systemd, bpftool and every CNI using eBPF do; the mount is harmless and stays) and
/// says so in `notes`.
pub fn bpffs(notes: &mut Vec<String>) -> Result<PinDir> {
    let dir = PathBuf::from(BPFFS);
    if is_bpffs(&dir) {
        return PinDir::create(&dir);
    }
    let mount = crate::privilege::tools::find("mount").with_context(|| {
        format!("bpffs is not mounted at {BPFFS} and no `mount` is in a PATH directory only root can write")
    })?;
    let status = std::process::Command::new(mount)
        .args(["-t", "bpf", "bpf", BPFFS])
        .status()
        .context("bpffs is not mounted and `mount` could not be run")?;
    if !status.success() || !is_bpffs(&dir) {
        bail!("bpffs is not mounted at {BPFFS} and mounting it failed; mount it with `mount -t bpf bpf {BPFFS}`");
    }
    notes.push(format!("mounted bpffs at {BPFFS} (it was not mounted)"));
    PinDir::create(&dir)
}

fn is_bpffs(dir: &Path) -> bool {
    // `f_type` is signed on some targets: compared as the magic's bits.
    rustix::fs::statfs(dir).is_ok_and(|st| st.f_type as u64 == BPF_FS_MAGIC)
}

/// Removes what killed runs left beside `pins` (this run's directory): run directories
/// nobody holds locked, and pins named by a pid that is gone; returns how many pins.
pub fn remove_stale(pins: &Path) -> usize {
    let Some(Ok(entries)) = pins.parent().map(std::fs::read_dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.path() != pins)
        .map(|e| {
            let name = e.file_name();
            let is_run = name.to_str().is_some_and(|n| n.starts_with(RUN_PREFIX));
            if is_run {
                stale_run(&e.path())
            } else {
                usize::from(stale_pid_pin(&e))
            }
        })
        .sum()
}

/// Empties and removes a run directory whose lock nobody holds; how many pins it held.
fn stale_run(dir: &Path) -> usize {
    let Ok(_held) = lock(dir, FlockOperation::NonBlockingLockExclusive) else {
        return 0; // a running tracer's, in whatever pid namespace
    };
    let pins = std::fs::read_dir(dir).map_or(0, |d| d.count());
    empty_and_remove(dir);
    pins
}

/// Removes `e` if it is a pin named by a pid (`meridio-tracer-<pid>-...`) that is gone.
fn stale_pid_pin(e: &std::fs::DirEntry) -> bool {
    let name = e.file_name();
    let Some(pid) = name
        .to_str()
        .and_then(|n| n.strip_prefix(PIN_PREFIX))
        .and_then(|n| n.split('-').next())
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return false;
    };
    !Path::new(&format!("/proc/{pid}")).exists() && std::fs::remove_file(e.path()).is_ok()
}

/// A handle of its own on one of the node object's shared maps (a duplicated fd): the
/// ring buffer itself goes to the reader, and later sites still need it pinned.
pub fn handle(map: &Map) -> Result<MapData> {
    let data = match map {
        Map::Array(d)
        | Map::PerCpuArray(d)
        | Map::RingBuf(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d) => d,
        _ => bail!("a shared map is of a type the tracer does not share"),
    };
    let fd = data.fd().as_fd().try_clone_to_owned()?;
    Ok(MapData::from_fd(fd)?)
}

/// Loads an object whose shared maps are `maps` (the node object's, in `SHARED_MAPS`
/// order): pinned in the run's directory `bpffs` for the load, unpinned after it whatever the outcome.
pub fn load_sharing(
    bpffs: &Path,
    maps: &[MapData],
    load: impl FnOnce(&mut dyn FnMut(&mut EbpfLoader)) -> Result<Ebpf>,
) -> Result<Ebpf> {
    let pins = SHARED_MAPS.map(|name| bpffs.join(name.to_lowercase()));
    let pinned = pins.iter().zip(maps).try_for_each(|(path, map)| {
        let _ = std::fs::remove_file(path);
        map.pin(path)
            .with_context(|| format!("cannot pin a shared map at {}", path.display()))
    });
    let result = pinned.and_then(|()| {
        load(&mut |loader: &mut EbpfLoader| {
            for (name, path) in SHARED_MAPS.iter().zip(&pins) {
                loader.map_pin_path(name, path.clone());
            }
        })
    });
    let mut unpinned = Ok(());
    for path in &pins {
        if let Err(e) = std::fs::remove_file(path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                unpinned =
                    Err(e).with_context(|| format!("cannot remove the pin {}", path.display()));
            }
        }
    }
    let ebpf = result?;
    unpinned?;
    Ok(ebpf)
}

/// A handle of its own on a loaded TC program (the same kernel program, a new fd), through
/// a pin that lives only for the call: aya 0.14 makes a program handle from a pin path
/// only, and a handle owns the links it attaches.
pub fn duplicate(prog: &mut SchedClassifier, bpffs: &Path, name: &str) -> Result<SchedClassifier> {
    let path = bpffs.join(format!("prog-{name}"));
    let _ = std::fs::remove_file(&path);
    prog.pin(&path)
        .with_context(|| format!("cannot pin {name} at {}", path.display()))?;
    let handle = SchedClassifier::from_pin(&path);
    let unpinned = std::fs::remove_file(&path);
    let handle = handle.with_context(|| format!("cannot open the pinned {name}"))?;
    unpinned.with_context(|| format!("cannot remove the pin {}", path.display()))?;
    Ok(handle)
}
