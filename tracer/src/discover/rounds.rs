//! Rounds of discovery: every namespace of the node found, opened, read and named, once
//! (`tracer discover`, start-up) or round after round for a running whole-path session.
use std::{
    collections::BTreeMap,
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use super::{
    classify,
    enumerate::{container_hostname, crictl_pods, enumerate, host_ns, parse_pod_uid, Found},
    read_state, Class, Discovery, Namespace,
};
use crate::netns::Netns;

/// Pids listed per namespace (the host's has hundreds).
const MAX_PIDS: usize = 8;
/// Processes of a namespace asked for their pod (cgroup, hostname).
const MAX_HINT_PIDS: usize = 16;

/// Finds, names and classifies every network namespace of the node.
pub async fn discover() -> Discovery {
    let host_net = host_ns("net");
    let host_uts = host_ns("uts");
    let pods = crictl_pods();
    let mut namespaces = Vec::new();
    for found in enumerate() {
        if let Some(ns) = inspect(found, host_net, host_uts, &pods).await {
            namespaces.push(ns);
        }
    }
    sort(&mut namespaces);
    Discovery { namespaces }
}

/// Discovery for a running session, once a second: reading every namespace's routing state
/// (and asking crictl for pod names) each round costs the node more than the answer is
/// worth, so a namespace is inspected when it first appears, every round while it is young
/// (a pod's network is set up after its namespace exists), and then every `RECHECK`. The
/// traced ones are followed between inspections by their netlink watchers anyway.
#[derive(Default)]
pub struct Rounds {
    known: BTreeMap<(u64, u64), Cached>,
}

struct Cached {
    ns: Namespace,
    first_seen: Instant,
    inspected: Instant,
}

impl Cached {
    fn due(&self, now: Instant) -> bool {
        inspection_due(self.first_seen, self.inspected, now)
    }
}

/// Whether a namespace first seen and last inspected at these times is inspected again.
pub(super) fn inspection_due(first_seen: Instant, inspected: Instant, now: Instant) -> bool {
    now.duration_since(first_seen) < YOUNG || now.duration_since(inspected) >= RECHECK
}

/// A namespace this young is inspected every round.
const YOUNG: Duration = Duration::from_secs(30);
/// An older one, at most this often.
const RECHECK: Duration = Duration::from_secs(10);

impl Rounds {
    /// One round: what `discover` finds, inspecting only the namespaces that need it.
    pub async fn next(&mut self) -> Discovery {
        let now = Instant::now();
        let found = enumerate();
        let pods = if found
            .iter()
            .any(|f| self.known.get(&f.id).is_none_or(|c| c.due(now)))
        {
            crictl_pods()
        } else {
            BTreeMap::new()
        };
        let (host_net, host_uts) = (host_ns("net"), host_ns("uts"));
        let mut known = BTreeMap::new();
        for f in found {
            let id = f.id;
            let cached = self.known.remove(&id);
            let entry = match cached {
                Some(mut c) if !c.due(now) => {
                    // Still there: only who holds it may have changed.
                    c.ns.path = f
                        .files
                        .first()
                        .cloned()
                        .or_else(|| {
                            f.pids
                                .first()
                                .map(|p| PathBuf::from(format!("/proc/{p}/ns/net")))
                        })
                        .unwrap_or(c.ns.path);
                    c.ns.pid_count = f.pids.len();
                    c.ns.pids = f.pids.iter().take(MAX_PIDS).copied().collect();
                    c.ns.files = f.files;
                    c
                }
                cached => {
                    let Some(ns) = inspect(f, host_net, host_uts, &pods).await else {
                        continue; // gone meanwhile
                    };
                    Cached {
                        ns,
                        first_seen: cached.map_or(now, |c| c.first_seen),
                        inspected: now,
                    }
                }
            };
            known.insert(id, entry);
        }
        self.known = known;
        let mut namespaces: Vec<Namespace> = self.known.values().map(|c| c.ns.clone()).collect();
        sort(&mut namespaces);
        Discovery { namespaces }
    }
}

fn sort(namespaces: &mut [Namespace]) {
    namespaces.sort_by(|a, b| {
        (a.class.role, !a.host, &a.name, &a.path).cmp(&(b.class.role, !b.host, &b.name, &b.path))
    });
}

/// Opens, reads and names one namespace; `None` when it vanished meanwhile.
async fn inspect(
    found: Found,
    host_net: Option<(u64, u64)>,
    host_uts: Option<(u64, u64)>,
    pods: &BTreeMap<String, String>,
) -> Option<Namespace> {
    let candidates = found.files.iter().cloned().chain(
        found
            .pids
            .iter()
            .map(|p| PathBuf::from(format!("/proc/{p}/ns/net"))),
    );
    let mut opened = None;
    for path in candidates {
        let label = path.display().to_string();
        // A pid may have been reused by a process elsewhere: the identity must match.
        if let Ok(ns) = Netns::open_path(&path, &label) {
            if ns.id().ok() == Some(found.id) {
                opened = Some((ns, path));
                break;
            }
        }
    }
    let (ns, path) = opened?;
    let host = Some(found.id) == host_net;
    let (class, error) = match read_state(&ns).await {
        Ok((state, addrs)) => (classify(&state, &addrs), None),
        Err(e) => (Class::other(), Some(format!("{e:#}"))),
    };

    let (mut pod_uid, mut hostname) = (None, None);
    if !host {
        for pid in found.pids.iter().take(MAX_HINT_PIDS) {
            if pod_uid.is_none() {
                pod_uid = fs::read_to_string(format!("/proc/{pid}/cgroup"))
                    .ok()
                    .and_then(|c| parse_pod_uid(&c));
            }
            if hostname.is_none() {
                hostname = container_hostname(*pid, host_uts);
            }
            if pod_uid.is_some() && hostname.is_some() {
                break;
            }
        }
    }
    let pod = pod_uid.as_ref().and_then(|u| pods.get(u)).cloned();
    let name = if host {
        "host".to_string()
    } else if let Some(p) = &pod {
        p.clone()
    } else if let Some(h) = &hostname {
        h.clone()
    } else if let Some(u) = &pod_uid {
        format!("pod:{u}")
    } else if let Some(f) = found.files.first().and_then(|f| f.file_name()) {
        f.to_string_lossy().into_owned()
    } else {
        path.display().to_string()
    };
    Some(Namespace {
        path,
        inode: found.id.1,
        files: found.files,
        pids: found.pids.iter().take(MAX_PIDS).copied().collect(),
        pid_count: found.pids.len(),
        host,
        name,
        pod,
        pod_uid,
        hostname,
        class,
        error,
    })
}
