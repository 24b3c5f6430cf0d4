//! Enumeration: every network namespace on the node, through the netns directories and
//! `/proc/*/ns/net`, deduplicated by nsfs inode, with the hints that name its pod (cgroup
//! pod UID, a containerised process's hostname, crictl).
use std::{
    collections::BTreeMap,
    fs,
    io::Read,
    os::{fd::AsFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType::HostNameAndNISDomainName};

use crate::netns::{Netns, NETNS_DIRS};

const CRICTL_TIMEOUT: Duration = Duration::from_secs(5);

/// The pod UID in a /proc/<pid>/cgroup text: `kubepods` paths, in the systemd form
/// (`...-pod<uid with _>.slice`) or the cgroupfs form (`.../pod<uid>/...`).
pub fn parse_pod_uid(cgroup: &str) -> Option<String> {
    for line in cgroup.lines() {
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        if !path.contains("kubepods") {
            continue;
        }
        for seg in path.split('/').rev() {
            let seg = seg.strip_suffix(".slice").unwrap_or(seg);
            if let Some(i) = seg.rfind("pod") {
                let uid = &seg[i + 3..];
                if is_uid(uid) {
                    return Some(uid.replace('_', "-"));
                }
            }
        }
    }
    None
}

fn is_uid(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-' || c == '_'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// One namespace as enumerated: its identity, the netns files naming it and its processes.
#[derive(Clone, Debug, Default)]
pub(super) struct Found {
    pub id: (u64, u64),
    pub files: Vec<PathBuf>,
    pub pids: Vec<u32>,
}

fn stat_id(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The host's namespace of this type: init's, or ours when init's cannot be read (the
/// tracer runs in the node's namespaces).
pub(super) fn host_ns(kind: &str) -> Option<(u64, u64)> {
    stat_id(Path::new(&format!("/proc/1/ns/{kind}")))
        .or_else(|| stat_id(Path::new(&format!("/proc/self/ns/{kind}"))))
}

/// Every network namespace: the netns files first (by name), then the ones only processes
/// hold (by lowest pid).
pub(super) fn enumerate() -> Vec<Found> {
    let mut by_id: BTreeMap<(u64, u64), Found> = BTreeMap::new();
    let mut order: Vec<(u64, u64)> = Vec::new();
    let mut dirs_seen = Vec::new();
    for dir in NETNS_DIRS {
        // /var/run is usually a link to /run: one directory, listed once.
        let Ok(canonical) = fs::canonicalize(dir) else {
            continue;
        };
        if dirs_seen.contains(&canonical) {
            continue;
        }
        dirs_seen.push(canonical);
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            // A name whose namespace is gone is a plain file: not a netns, skipped.
            let Ok(ns) = Netns::open_path(&path, &path.display().to_string()) else {
                continue;
            };
            let Ok(id) = ns.id() else { continue };
            let f = by_id.entry(id).or_insert_with(|| {
                order.push(id);
                Found {
                    id,
                    ..Default::default()
                }
            });
            f.files.push(path);
        }
    }
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    for pid in pids {
        // Gone meanwhile, or a kernel that does not show it: skipped.
        let Some(id) = stat_id(Path::new(&format!("/proc/{pid}/ns/net"))) else {
            continue;
        };
        let f = by_id.entry(id).or_insert_with(|| {
            order.push(id);
            Found {
                id,
                ..Default::default()
            }
        });
        f.pids.push(pid);
    }
    order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect()
}

/// The hostname seen inside `pid`'s UTS namespace, when that is not the host's: in a pod,
/// the pod's name. Falls back to the process's HOSTNAME variable.
pub(super) fn container_hostname(pid: u32, host_uts: Option<(u64, u64)>) -> Option<String> {
    let uts = format!("/proc/{pid}/ns/uts");
    let id = stat_id(Path::new(&uts))?;
    if Some(id) == host_uts {
        return None;
    }
    uts_hostname(&uts).or_else(|| environ_hostname(pid))
}

fn uts_hostname(uts: &str) -> Option<String> {
    let file = fs::File::open(uts).ok()?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // Only this (new) thread's UTS namespace moves.
            move_into_link_name_space(file.as_fd(), Some(HostNameAndNISDomainName)).ok()?;
            // The nodename uname gives is the hostname (what gethostname reads).
            let uname = rustix::system::uname();
            let name = String::from_utf8_lossy(uname.nodename().to_bytes())
                .trim()
                .to_string();
            (!name.is_empty()).then_some(name)
        })
        .join()
        .ok()
        .flatten()
    })
}

fn environ_hostname(pid: u32) -> Option<String> {
    let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0).find_map(|kv| {
        let v = kv.strip_prefix(b"HOSTNAME=")?;
        let v = String::from_utf8_lossy(v).trim().to_string();
        (!v.is_empty()).then_some(v)
    })
}

/// `pod UID -> namespace/name` from `crictl pods -o json`, when crictl is installed (where
/// only root can change it) and answers within 5 s; empty otherwise.
pub(super) fn crictl_pods() -> BTreeMap<String, String> {
    let mut pods = BTreeMap::new();
    let Some(crictl) = crate::privilege::tools::find("crictl") else {
        return pods;
    };
    let Some(out) = output_within(Command::new(crictl).args(["pods", "-o", "json"])) else {
        log::info!("crictl pods did not answer; pods are named from /proc only");
        return pods;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out) else {
        return pods;
    };
    for item in v["items"].as_array().into_iter().flatten() {
        let m = &item["metadata"];
        if let (Some(uid), Some(name)) = (m["uid"].as_str(), m["name"].as_str()) {
            let name = match m["namespace"].as_str() {
                Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
                _ => name.to_string(),
            };
            pods.insert(uid.to_string(), name);
        }
    }
    pods
}

/// Stdout of a successful command that ends within [`CRICTL_TIMEOUT`].
fn output_within(cmd: &mut Command) -> Option<Vec<u8>> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let deadline = Instant::now() + CRICTL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    let out = reader.join().ok()?.ok()?;
    status.success().then_some(out)
}
