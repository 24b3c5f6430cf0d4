//! Sharing the node object's `LAST_INGRESS` map with each site object.
//!
//! aya 0.14 hands an existing map to a loading object only through a pin path in bpffs
//! (`EbpfLoader::map_pin_path`: a pinned map is reused, not created). So the map is pinned
//! for the moment one site object loads, and unpinned straight after: nothing of ours stays
//! in bpffs while the tracer runs. A pin left by a run killed in that moment is named by
//! its pid, and the next start removes it once that pid is gone.
use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use aya::{maps::Map, Ebpf, EbpfLoader};

/// The shared map, by its name in the object.
pub const SHARED_MAP: &str = "LAST_INGRESS";
const BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
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
    let Ok(path) = CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the struct we own; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(path.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

/// Removes pins of ours whose process is gone (a run killed while a site object loaded);
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

/// Loads a site object whose `LAST_INGRESS` is `map` (the node object's): pinned for the
/// load, unpinned after it whatever the outcome.
pub fn load_sharing(
    bpffs: &Path,
    map: &Map,
    load: impl FnOnce(&mut dyn FnMut(&mut EbpfLoader)) -> Result<Ebpf>,
) -> Result<Ebpf> {
    let path = bpffs.join(format!(
        "{PIN_PREFIX}{}-{}",
        std::process::id(),
        SHARED_MAP.to_lowercase()
    ));
    let _ = std::fs::remove_file(&path);
    map.pin(&path)
        .with_context(|| format!("cannot pin the shared map at {}", path.display()))?;
    let result = load(&mut |loader: &mut EbpfLoader| {
        loader.map_pin_path(SHARED_MAP, path.clone());
    });
    let unpinned = std::fs::remove_file(&path);
    let ebpf = result?;
    unpinned.with_context(|| format!("cannot remove the pin {}", path.display()))?;
    Ok(ebpf)
}
