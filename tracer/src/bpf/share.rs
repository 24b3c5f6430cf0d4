//! Sharing the node object's maps with each object of TC programs: `LAST_INGRESS` (how a
//! route lookup finds the traced packet it routes) and `LAST_LOOKUP` (how a packet's egress
//! hook finds the lookup that routed it after the load balancer's queue, and `DEFER_ARMED`, when
//! to look for such lookups), `EVENTS` (one ring buffer for every
//! program, so the records of one packet's path come out in the order they were written,
//! and one reader serves the whole node), and the maps that are the same for every site:
//! the per-hop counts (`HOPS`), the per-VIP totals (`TOTALS`), the routed interfaces
//! (`L3_IFACES`), the counters, the traced namespaces (`NETNS_INUMS`) and the fragments'
//! ports (`FRAGS`). Whether the TC
//! programs are loaded once or once per site, userspace reads each of these in one place.
//!
//! aya 0.14 hands an existing map to a loading object only through a pin path in bpffs
//! (`EbpfLoader::map_pin_path`: a pinned map is reused, not created). So the maps are
//! pinned for the moment one object of TC programs loads, and unpinned straight after: nothing of
//! ours stays in bpffs while the tracer runs. A pin left by a run killed in that moment is
//! named by its pid, and the next start removes it once that pid is gone.
use std::{
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};

use aya::{
    maps::{Map, MapData},
    programs::SchedClassifier,
    Ebpf, EbpfLoader,
};

/// The shared maps, by their names in the object.
pub const SHARED_MAPS: [&str; 10] = [
    "LAST_INGRESS",
    "LAST_LOOKUP",
    "DEFER_ARMED",
    "EVENTS",
    "HOPS",
    "TOTALS",
    "L3_IFACES",
    "COUNTERS",
    "NETNS_INUMS",
    "FRAGS",
];
const BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: u64 = 0xcafe_4a11;
const PIN_PREFIX: &str = "meridio-tracer-";

/// Where bpffs is. When it is not mounted, mounts it at /sys/fs/bpf (what systemd, bpftool
/// and every CNI using eBPF do; the mount is harmless and stays) and says so in `notes`.
pub fn bpffs(notes: &mut Vec<String>) -> Result<PathBuf> {
    let dir = PathBuf::from(BPFFS);
    if is_bpffs(&dir) {
        return Ok(dir);
    }
    let status = std::process::Command::new("mount")
        .args(["-t", "bpf", "bpf", BPFFS])
        .status()
        .context("bpffs is not mounted and `mount` could not be run")?;
    if !status.success() || !is_bpffs(&dir) {
        bail!("bpffs is not mounted at {BPFFS} and mounting it failed; mount it with `mount -t bpf bpf {BPFFS}`");
    }
    notes.push(format!("mounted bpffs at {BPFFS} (it was not mounted)"));
    Ok(dir)
}

fn is_bpffs(dir: &Path) -> bool {
    // `f_type` is signed on some targets: compared as the magic's bits.
    rustix::fs::statfs(dir).is_ok_and(|st| st.f_type as u64 == BPF_FS_MAGIC)
}

/// Removes pins of ours whose process is gone (a run killed while an object loaded);
/// returns how many.
pub fn remove_stale(bpffs: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(bpffs) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
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
        })
        .count()
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
/// order): pinned for the load, unpinned after it whatever the outcome.
pub fn load_sharing(
    bpffs: &Path,
    maps: &[MapData],
    load: impl FnOnce(&mut dyn FnMut(&mut EbpfLoader)) -> Result<Ebpf>,
) -> Result<Ebpf> {
    let pins = SHARED_MAPS.map(|name| {
        bpffs.join(format!(
            "{PIN_PREFIX}{}-{}",
            std::process::id(),
            name.to_lowercase()
        ))
    });
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
    let path = bpffs.join(format!("{PIN_PREFIX}{}-prog-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    prog.pin(&path)
        .with_context(|| format!("cannot pin {name} at {}", path.display()))?;
    let handle = SchedClassifier::from_pin(&path);
    let unpinned = std::fs::remove_file(&path);
    let handle = handle.with_context(|| format!("cannot open the pinned {name}"))?;
    unpinned.with_context(|| format!("cannot remove the pin {}", path.display()))?;
    Ok(handle)
}
