//! The load balancer's own table: nfqlb (Meridio's stateless-lb-frontend) keeps its Maglev
//! table in POSIX shared memory under the pod's /dev/shm, which a node sees as
//! `/proc/<nfqlb pid>/root/dev/shm/<name>`. Read at the end of a run, it says which targets
//! (fwmarks) are active and what share of the lookup table each holds, to set beside the
//! flows each target got.
//!
//! The file is nfqlb's C structs as laid out in memory (nfqueue-loadbalancer
//! `lib/nfqueue.h` `SharedData`, `lib/maglevdyn.c` `MagDataDynInternal`), native endian:
//! `i32 ownFwmark; u32 M, N, len; i32 lookup[M]; u32 permutation[N][M]; i32 active[N]`.
//! No crate reads it; it is parsed here by hand, every size checked against the file's.
use std::{fs, os::unix::fs::MetadataExt, path::Path};

use anyhow::{bail, Result};

/// Larger tables than this are not nfqlb's (Meridio uses M = 100 * N, N = 100).
const MAX_M: u64 = 1 << 22;
const MAX_N: u64 = 1 << 12;
/// Files larger than this in /dev/shm are not read.
const MAX_FILE: u64 = 64 << 20;

/// One nfqlb Maglev table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaglevTable {
    /// The shared memory's name (`tshm-<stream>` in Meridio).
    pub name: String,
    /// Lookup table size.
    pub m: u32,
    /// Active targets: (fwmark, lookup entries pointing at it), in slot order.
    pub active: Vec<(u32, u32)>,
}

/// Parses one shared memory file of nfqlb; an error for anything that is not one.
pub fn parse(name: &str, bytes: &[u8]) -> Result<MaglevTable> {
    let word = |i: usize| -> Option<[u8; 4]> { bytes.get(i * 4..i * 4 + 4)?.try_into().ok() };
    let (Some(m), Some(n)) = (word(1), word(2)) else {
        bail!("{name}: too short for an nfqlb table");
    };
    let (m, n) = (
        u64::from(u32::from_ne_bytes(m)),
        u64::from(u32::from_ne_bytes(n)),
    );
    if !(3..=MAX_M).contains(&m) || !(1..=MAX_N).contains(&n) {
        bail!("{name}: M={m}, N={n} are not an nfqlb table's");
    }
    // Header (4 words), lookup (M), permutation (N x M), active (N).
    let words = 4 + m + n * m + n;
    if (bytes.len() as u64) < words * 4 {
        bail!(
            "{name}: {} bytes, an nfqlb table of M={m}, N={n} needs {}",
            bytes.len(),
            words * 4
        );
    }
    let int = |i: u64| i32::from_ne_bytes(word(i as usize).expect("size checked above"));
    let active_at = 4 + m + n * m;
    let marks: Vec<i32> = (0..n).map(|j| int(active_at + j)).collect();
    let mut slots = vec![0u32; n as usize];
    for i in 0..m {
        match usize::try_from(int(4 + i)) {
            Ok(j) if j < slots.len() => slots[j] += 1,
            Ok(j) => bail!("{name}: lookup entry {i} names slot {j} of {n}"),
            Err(_) => {} // -1: no target (none active)
        }
    }
    let active = marks
        .iter()
        .zip(&slots)
        .filter_map(|(&mark, &count)| u32::try_from(mark).ok().map(|mark| (mark, count)))
        .collect();
    Ok(MaglevTable {
        name: name.to_string(),
        m: m as u32,
        active,
    })
}

/// The tables of every nfqlb process in the network namespace with inode `netns_inode`,
/// once per /dev/shm (processes sharing a mount namespace share it).
pub fn tables_in(netns_inode: u64) -> Vec<MaglevTable> {
    let mut seen_shm = Vec::new();
    let mut out = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return out;
    };
    for pid in procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let dir = Path::new("/proc").join(pid.to_string());
        let is_nfqlb = fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == "nfqlb");
        if !is_nfqlb || fs::metadata(dir.join("ns/net")).map(|m| m.ino()).ok() != Some(netns_inode)
        {
            continue;
        }
        let shm = dir.join("root/dev/shm");
        let Ok(shm_id) = fs::metadata(&shm).map(|m| (m.dev(), m.ino())) else {
            continue;
        };
        if seen_shm.contains(&shm_id) {
            continue;
        }
        seen_shm.push(shm_id);
        let Ok(files) = fs::read_dir(&shm) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            // A FIFO or socket there would block or fail a read: regular files only.
            let regular = f
                .metadata()
                .is_ok_and(|m| m.file_type().is_file() && m.len() <= MAX_FILE);
            if !regular {
                continue;
            }
            if let Ok(t) = fs::read(f.path())
                .map_err(anyhow::Error::from)
                .and_then(|b| parse(&name, &b))
            {
                out.push(t);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table as nfqlb lays it out: M=7, N=3, slots 0 and 2 active (marks 5001, 5003).
    fn table(lookup: [i32; 7], active: [i32; 3]) -> Vec<u8> {
        let mut words: Vec<i32> = vec![0, 7, 3, 0];
        words.extend(lookup);
        words.extend(std::iter::repeat_n(0, 21));
        words.extend(active);
        words.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    #[test]
    fn reads_the_active_targets_and_their_share_of_the_lookup_table() {
        let t = parse("tshm-a", &table([0, 2, 0, 2, 0, 2, 0], [5001, -1, 5003])).unwrap();
        assert_eq!((t.m, t.active), (7, vec![(5001, 4), (5003, 3)]));
        let none = parse("tshm-b", &table([-1; 7], [-1; 3])).unwrap();
        assert!(none.active.is_empty());
    }

    #[test]
    fn refuses_what_is_not_an_nfqlb_table() {
        let bytes = table([0; 7], [5001, -1, -1]);
        assert!(parse("short", &bytes[..bytes.len() - 1]).is_err());
        assert!(parse("tiny", &[0; 8]).is_err());
        assert!(parse("slot", &table([0, 0, 0, 9, 0, 0, 0], [5001, -1, -1])).is_err());
        let mut huge = bytes.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse("huge", &huge).is_err());
    }
}
