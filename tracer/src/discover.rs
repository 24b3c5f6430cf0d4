//! Discovery (`tracer discover`, and the choice of proxy when `--netns` is not given): every
//! network namespace on the node, found through the netns directories and `/proc/*/ns/net`
//! and deduplicated by nsfs inode, named by its pod where the node can tell, and classified
//! by what its kernel holds.
//!
//! Classification is structural: interface names, table numbers and addresses differ
//! between clusters, so none is matched. A proxy is a bridge with ports whose VIP source
//! rules lead to a default route through it; a stateless-lb-frontend has fwmark rules to
//! tables with a default route (toward the targets) and VIP source rules to a table with a
//! default route out of another interface (toward the gateways); a target holds the VIPs as
//! local host addresses that are also sources of policy rules.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::Read,
    net::IpAddr,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use serde_json::json;

use crate::{
    netns::kernel_state::{Address, KernelState, Netlink, Rule},
    netns::{Netns, NETNS_DIRS},
};

/// Pids listed per namespace (the host's has hundreds).
const MAX_PIDS: usize = 8;
/// Processes of a namespace asked for their pod (cgroup, hostname).
const MAX_HINT_PIDS: usize = 16;
const NETLINK_TIMEOUT: Duration = Duration::from_secs(5);
const CRICTL_TIMEOUT: Duration = Duration::from_secs(5);

// Routing tables that are not a VIP's: unspec, default, main, local.
const RESERVED_TABLES: [u32; 4] = [0, 253, 254, 255];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Proxy,
    /// stateless-lb-frontend
    Frontend,
    Target,
    Other,
}

impl Role {
    /// The roles on a Meridio path, in the order the whole path traces them.
    pub const MERIDIO: [Role; 3] = [Role::Proxy, Role::Frontend, Role::Target];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Proxy => "proxy",
            Role::Frontend => "frontend",
            Role::Target => "target",
            Role::Other => "other",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum IfaceKind {
    /// A proxy's bridge.
    Bridge,
    /// A port of a proxy's bridge (toward a frontend or a target).
    Port,
    /// A frontend's interface toward the gateways.
    External,
    /// A frontend's interface toward the targets (through the proxy).
    Conduit,
    /// A target's interface holding the VIPs.
    Vip,
}

impl IfaceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IfaceKind::Bridge => "bridge",
            IfaceKind::Port => "port",
            IfaceKind::External => "external",
            IfaceKind::Conduit => "conduit",
            IfaceKind::Vip => "vip",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub kind: IfaceKind,
}

/// What a namespace was found to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Class {
    pub role: Role,
    pub vips: Vec<IpAddr>,
    pub interfaces: Vec<Iface>,
    pub note: Option<String>,
}

impl Class {
    fn other() -> Class {
        Class {
            role: Role::Other,
            vips: Vec::new(),
            interfaces: Vec::new(),
            note: None,
        }
    }
}

fn host_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn usable_table(rule: &Rule) -> Option<u32> {
    rule.table.filter(|t| !RESERVED_TABLES.contains(t))
}

/// `from <host address> lookup T` with no other selector: the VIP rules of all three pods.
fn host_source_rules(state: &KernelState) -> impl Iterator<Item = (IpAddr, u32, &Rule)> {
    state.rules.iter().filter_map(|r| {
        let (ip, len) = r.src?;
        let t = usable_table(r)?;
        (len == host_len(ip) && r.fwmark.is_none() && r.iif.is_none() && !r.other_selectors)
            .then_some((ip, t, r))
    })
}

fn is_local(addrs: &[Address], ip: IpAddr) -> bool {
    addrs.iter().any(|a| a.ip == ip)
}

fn link_name(state: &KernelState, ifindex: u32) -> String {
    state
        .link(ifindex)
        .map_or_else(|| format!("if{ifindex}"), |l| l.name.clone())
}

fn push_vip(vips: &mut Vec<IpAddr>, ip: IpAddr) {
    if !vips.contains(&ip) {
        vips.push(ip);
    }
}

/// Sorted: IPv4 first, then IPv6, each in address order.
fn sorted(mut vips: Vec<IpAddr>) -> Vec<IpAddr> {
    vips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    vips
}

/// Classifies one namespace from its links, rules, routes and local addresses.
pub fn classify(state: &KernelState, addrs: &[Address]) -> Class {
    as_proxy(state, addrs)
        .or_else(|| as_frontend(state, addrs))
        .or_else(|| as_target(state, addrs))
        .unwrap_or_else(Class::other)
}

/// A bridge with at least two ports, and VIP source rules whose table's default route has
/// next-hops through that bridge (the ECMP over the frontends' conduit addresses). When
/// every frontend is gone the VIP tables are empty: the bridge, its ports and the rules
/// still make a proxy (the outage someone reaches for the tracer in), noted "no next-hops".
fn as_proxy(state: &KernelState, addrs: &[Address]) -> Option<Class> {
    let bridges: BTreeSet<u32> = state
        .links
        .values()
        .filter(|b| b.is_bridge)
        .filter(|b| {
            state
                .links
                .values()
                .filter(|p| p.master == Some(b.index))
                .count()
                >= 2
        })
        .map(|b| b.index)
        .collect();
    if bridges.is_empty() {
        return None;
    }
    let mut vips = Vec::new();
    let mut used = BTreeSet::new();
    // VIP rules whose table holds no route of the rule's family at all.
    let mut empty: Vec<(IpAddr, u32)> = Vec::new();
    for (vip, table, rule) in host_source_rules(state) {
        let via: Vec<u32> = state
            .default_nexthops(table, rule.v6)
            .iter()
            .map(|h| h.ifindex)
            .filter(|i| bridges.contains(i))
            .collect();
        if !via.is_empty() {
            push_vip(&mut vips, vip);
            used.extend(via);
        } else if !is_local(addrs, vip)
            && !state
                .routes
                .iter()
                .any(|r| r.table == table && r.v6 == rule.v6)
        {
            // A target holds its VIPs; a proxy only routes them.
            empty.push((vip, table));
        }
    }
    if vips.is_empty() {
        if empty.is_empty() {
            return None;
        }
        used = bridges;
    }
    for (vip, _) in &empty {
        push_vip(&mut vips, *vip);
    }
    let note = (!empty.is_empty()).then(|| {
        let tables: Vec<String> = empty
            .iter()
            .map(|(vip, t)| format!("table {t} (from {vip})"))
            .collect();
        format!(
            "no next-hops: {} empty (every frontend gone?); the VIP's egress traffic is dropped or leaves by another rule",
            tables.join(", ")
        )
    });
    let mut interfaces = Vec::new();
    for b in used {
        interfaces.push(Iface {
            name: link_name(state, b),
            kind: IfaceKind::Bridge,
        });
        let mut ports: Vec<String> = state
            .links
            .values()
            .filter(|p| p.master == Some(b))
            .map(|p| p.name.clone())
            .collect();
        ports.sort();
        interfaces.extend(ports.into_iter().map(|name| Iface {
            name,
            kind: IfaceKind::Port,
        }));
    }
    Some(Class {
        role: Role::Proxy,
        vips: sorted(vips),
        interfaces,
        note,
    })
}

/// fwmark rules to tables with a default route (nfqlb's per-target tables, out of the
/// conduit interfaces), and VIP source rules to a table with a default route out of another,
/// non-bridge interface (the BGP egress table, 4096 in Meridio, toward the gateways). A
/// frontend no target has connected to yet has the VIP rules only, and is still one.
fn as_frontend(state: &KernelState, addrs: &[Address]) -> Option<Class> {
    let mut conduits = BTreeSet::new();
    for r in state.rules.iter().filter(|r| r.fwmark.is_some()) {
        if let Some(t) = usable_table(r) {
            conduits.extend(state.default_nexthops(t, r.v6).iter().map(|h| h.ifindex));
        }
    }
    let mut vips = Vec::new();
    let mut external = BTreeSet::new();
    for (vip, table, rule) in host_source_rules(state) {
        if conduits.is_empty() && is_local(addrs, vip) {
            // Source routing of an address of its own is a target's (or a host's) affair.
            continue;
        }
        let out: Vec<u32> = state
            .default_nexthops(table, rule.v6)
            .iter()
            .map(|h| h.ifindex)
            .collect();
        let elsewhere = !out.is_empty()
            && out
                .iter()
                .all(|i| !conduits.contains(i) && !state.link(*i).is_some_and(|l| l.is_bridge));
        if elsewhere {
            push_vip(&mut vips, vip);
            external.extend(out);
        }
    }
    if vips.is_empty() {
        return None;
    }
    let mut interfaces: Vec<Iface> = external
        .iter()
        .map(|i| Iface {
            name: link_name(state, *i),
            kind: IfaceKind::External,
        })
        .collect();
    interfaces.extend(conduits.iter().map(|i| Iface {
        name: link_name(state, *i),
        kind: IfaceKind::Conduit,
    }));
    let note = conduits
        .is_empty()
        .then(|| "no fwmark rules toward targets yet (no target connected?)".to_string());
    Some(Class {
        role: Role::Frontend,
        vips: sorted(vips),
        interfaces,
        note,
    })
}

/// Host addresses (/32, /128) on a non-loopback interface that are also the source of a
/// policy rule: the VIPs a target holds, with their rule toward the proxy.
fn as_target(state: &KernelState, addrs: &[Address]) -> Option<Class> {
    let sources: BTreeSet<IpAddr> = host_source_rules(state).map(|(ip, _, _)| ip).collect();
    let mut vips = Vec::new();
    let mut on = BTreeSet::new();
    for a in addrs {
        let loopback = a.ip.is_loopback() || state.link(a.ifindex).is_some_and(|l| l.name == "lo");
        if a.prefix_len == host_len(a.ip) && !loopback && sources.contains(&a.ip) {
            push_vip(&mut vips, a.ip);
            on.insert(a.ifindex);
        }
    }
    if vips.is_empty() {
        return None;
    }
    Some(Class {
        role: Role::Target,
        vips: sorted(vips),
        interfaces: on
            .iter()
            .map(|i| Iface {
                name: link_name(state, *i),
                kind: IfaceKind::Vip,
            })
            .collect(),
        note: None,
    })
}

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
struct Found {
    id: (u64, u64),
    files: Vec<PathBuf>,
    pids: Vec<u32>,
}

/// One namespace as discovered.
#[derive(Clone, Debug)]
pub struct Namespace {
    /// The file it was read through: a netns file when there is one, else /proc/<pid>/ns/net.
    pub path: PathBuf,
    pub inode: u64,
    /// Every netns file (under /var/run/netns, /run/netns) naming it.
    pub files: Vec<PathBuf>,
    /// Processes in it, lowest first (the first few).
    pub pids: Vec<u32>,
    pub pid_count: usize,
    pub host: bool,
    pub name: String,
    /// `namespace/name` of its pod, from crictl.
    pub pod: Option<String>,
    pub pod_uid: Option<String>,
    /// The hostname of a containerised process in it (a pod's name).
    pub hostname: Option<String>,
    pub class: Class,
    /// Why the namespace could not be read (it is then listed as `other`).
    pub error: Option<String>,
}

pub struct Discovery {
    pub namespaces: Vec<Namespace>,
}

impl Discovery {
    pub fn meridio(&self) -> impl Iterator<Item = &Namespace> {
        self.namespaces
            .iter()
            .filter(|n| n.class.role != Role::Other)
    }

    fn count(&self, role: Role) -> usize {
        self.namespaces
            .iter()
            .filter(|n| n.class.role == role)
            .count()
    }
}

fn stat_id(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The host's namespace of this type: init's, or ours when init's cannot be read (the
/// tracer runs in the node's namespaces).
fn host_ns(kind: &str) -> Option<(u64, u64)> {
    stat_id(Path::new(&format!("/proc/1/ns/{kind}")))
        .or_else(|| stat_id(Path::new(&format!("/proc/self/ns/{kind}"))))
}

/// Every network namespace: the netns files first (by name), then the ones only processes
/// hold (by lowest pid).
fn enumerate() -> Vec<Found> {
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
fn container_hostname(pid: u32, host_uts: Option<(u64, u64)>) -> Option<String> {
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
            // SAFETY: setns on a fd we own; it only moves this (new) thread's UTS namespace.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWUTS) } != 0 {
                return None;
            }
            let mut buf = [0u8; 256];
            // SAFETY: the buffer is writable for its whole length.
            if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
                return None;
            }
            let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
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

/// `pod UID -> namespace/name` from `crictl pods -o json`, when crictl is installed and
/// answers within 5 s; empty otherwise.
fn crictl_pods() -> BTreeMap<String, String> {
    let mut pods = BTreeMap::new();
    let Some(crictl) = which("crictl") else {
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

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
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

async fn read_state(ns: &Netns) -> Result<(KernelState, Vec<Address>)> {
    let netlink = Netlink::connect(ns)?;
    let read = async {
        let state = netlink.snapshot().await?;
        let addrs = netlink.addresses().await?;
        anyhow::Ok((state, addrs))
    };
    match tokio::time::timeout(NETLINK_TIMEOUT, read).await {
        Ok(r) => r,
        Err(_) => bail!("netlink did not answer within 5 s"),
    }
}

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
fn inspection_due(first_seen: Instant, inspected: Instant, now: Instant) -> bool {
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

fn ip_list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The namespaces the whole-path mode traces: the Meridio namespaces of `roles` that
/// carry one of `vips`, proxies first. With none, one sentence saying what was looked at.
pub fn to_trace(d: &Discovery, roles: &[Role], vips: &[IpAddr]) -> Result<Vec<Namespace>> {
    let mut found: Vec<Namespace> = d
        .meridio()
        .filter(|n| roles.contains(&n.class.role))
        .filter(|n| n.class.vips.iter().any(|v| vips.contains(v)))
        .cloned()
        .collect();
    found.sort_by_key(|n| n.class.role);
    if found.is_empty() {
        let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        bail!(
            "no Meridio {} on this node carries {} ({} looked at); `tracer discover` lists what was found",
            roles.join(", "),
            ip_list(vips),
            plural(d.namespaces.len(), "network namespace", "network namespaces")
        );
    }
    Ok(found)
}

/// The VIPs to trace when none is given: every VIP of the Meridio namespaces of `roles`
/// (the VIPS column of `tracer discover`), or of the one namespace with `inode` (--netns),
/// in the order first seen, IPv4 and IPv6 alike. With none, one sentence saying so.
pub fn vips_on_node(d: &Discovery, roles: &[Role], inode: Option<u64>) -> Result<Vec<IpAddr>> {
    let mut vips: Vec<IpAddr> = Vec::new();
    let carriers = d.meridio().filter(|n| match inode {
        Some(i) => n.inode == i,
        None => roles.contains(&n.class.role),
    });
    for v in carriers.flat_map(|n| n.class.vips.iter()) {
        if !vips.contains(v) {
            vips.push(*v);
        }
    }
    if vips.is_empty() {
        let looked = plural(
            d.namespaces.len(),
            "network namespace",
            "network namespaces",
        );
        match inode {
            Some(_) => bail!("discovery finds no VIP in the --netns namespace (it does not look like a Meridio proxy, frontend or target); give the VIPs with --vip"),
            None => bail!(
                "discovery finds no VIP on this node: no Meridio {} carries one ({looked} looked at); give the VIPs with --vip, or see `tracer discover`",
                roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    Ok(vips)
}

/// `tracer discover`: the table (or JSON lines) of what was found.
pub async fn run(json: bool, all: bool) -> Result<()> {
    let d = discover().await;
    for n in &d.namespaces {
        if let Some(e) = &n.error {
            eprintln!("warning: could not read netns {}: {e}", n.path.display());
        }
    }
    let out = if json {
        render_json(&d, all)
    } else {
        render_text(&d, all)
    };
    print!("{out}");
    Ok(())
}

fn interfaces_text(c: &Class) -> String {
    let names = |kind: IfaceKind| -> Vec<&str> {
        c.interfaces
            .iter()
            .filter(|i| i.kind == kind)
            .map(|i| i.name.as_str())
            .collect()
    };
    match c.role {
        Role::Proxy => {
            // Bridges, each followed by its ports.
            let mut parts: Vec<String> = Vec::new();
            for i in &c.interfaces {
                match i.kind {
                    IfaceKind::Bridge => parts.push(format!("bridge {}:", i.name)),
                    _ => parts.push(i.name.clone()),
                }
            }
            parts.join(" ")
        }
        Role::Frontend => {
            let mut parts = vec![format!("external {}", names(IfaceKind::External).join(" "))];
            let conduits = names(IfaceKind::Conduit);
            if !conduits.is_empty() {
                parts.push(format!("conduit {}", conduits.join(" ")));
            }
            parts.join(", ")
        }
        Role::Target => names(IfaceKind::Vip).join(" "),
        Role::Other => String::new(),
    }
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s
    }
}

/// Columns padded to their widest cell, two spaces apart (as `kubectl get` prints them).
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn summary_sentence(d: &Discovery, all: bool) -> String {
    let looked = plural(d.namespaces.len(), "namespace", "namespaces");
    let other = d.count(Role::Other);
    if d.meridio().next().is_none() {
        return format!(
            "no Meridio proxy, frontend or target namespace found on this node ({looked} looked at)"
        );
    }
    let mut s = format!(
        "{looked} looked at: {}, {}, {}, {other} other",
        plural(d.count(Role::Proxy), "proxy", "proxies"),
        plural(d.count(Role::Frontend), "frontend", "frontends"),
        plural(d.count(Role::Target), "target", "targets"),
    );
    if !all && other > 0 {
        s.push_str(" (`tracer discover --all` lists them)");
    }
    s
}

pub fn render_text(d: &Discovery, all: bool) -> String {
    let shown: Vec<&Namespace> = d
        .namespaces
        .iter()
        .filter(|n| all || n.class.role != Role::Other)
        .collect();
    let mut out = String::new();
    if !shown.is_empty() {
        let mut rows = vec![["ROLE", "NAME", "NETNS", "VIPS", "INTERFACES"]
            .map(String::from)
            .to_vec()];
        for n in &shown {
            rows.push(vec![
                n.class.role.as_str().to_string(),
                n.name.clone(),
                n.path.display().to_string(),
                or_dash(
                    n.class
                        .vips
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                or_dash(interfaces_text(&n.class)),
            ]);
        }
        out.push_str(&table(&rows));
        for n in &shown {
            if let Some(note) = &n.class.note {
                out.push_str(&format!("note: {}: {note}\n", n.name));
            }
        }
    }
    out.push_str(&summary_sentence(d, all));
    out.push('\n');
    out
}

pub fn render_json(d: &Discovery, all: bool) -> String {
    let mut out = String::new();
    for n in d
        .namespaces
        .iter()
        .filter(|n| all || n.class.role != Role::Other)
    {
        let v = json!({
            "type": "netns",
            "role": n.class.role.as_str(),
            "name": n.name,
            "path": n.path.display().to_string(),
            "inode": n.inode,
            "files": n.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "pids": n.pids,
            "pid_count": n.pid_count,
            "host": n.host,
            "pod": n.pod,
            "pod_uid": n.pod_uid,
            "hostname": n.hostname,
            "vips": n.class.vips.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            "interfaces": n.class.interfaces.iter()
                .map(|i| json!({"name": i.name, "kind": i.kind.as_str()}))
                .collect::<Vec<_>>(),
            "note": n.class.note,
            "error": n.error,
        });
        out.push_str(&v.to_string());
        out.push('\n');
    }
    let v = json!({
        "type": "summary",
        "namespaces": d.namespaces.len(),
        "proxies": d.count(Role::Proxy),
        "frontends": d.count(Role::Frontend),
        "targets": d.count(Role::Target),
        "other": d.count(Role::Other),
        "message": summary_sentence(d, all),
    });
    out.push_str(&v.to_string());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::kernel_state::{Link, NextHop, Route};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn link(index: u32, name: &str, master: Option<u32>, is_bridge: bool) -> (u32, Link) {
        (
            index,
            Link {
                index,
                name: name.into(),
                mac: None,
                master,
                is_bridge,
            },
        )
    }

    fn rule(src: Option<&str>, fwmark: Option<u32>, table: u32) -> Rule {
        let src = src.map(ip);
        Rule {
            priority: 100,
            src: src.map(|a| (a, host_len(a))),
            dst: None,
            fwmark,
            fwmask: None,
            iif: None,
            other_selectors: false,
            table: Some(table),
            v6: src.is_some_and(|a| a.is_ipv6()),
        }
    }

    fn default_route(table: u32, v6: bool, hops: &[(&str, u32)]) -> Route {
        Route {
            table,
            dst: None,
            v6,
            nexthops: hops
                .iter()
                .map(|(gw, ifindex)| NextHop {
                    gw: Some(ip(gw)),
                    ifindex: *ifindex,
                    weight: 1,
                    alive: true,
                })
                .collect(),
        }
    }

    fn addr(ifindex: u32, a: &str, prefix_len: u8) -> Address {
        Address {
            ifindex,
            ip: ip(a),
            prefix_len,
        }
    }

    /// The kernel's own rules, present in every namespace.
    fn base_rules() -> Vec<Rule> {
        let mut v = Vec::new();
        for v6 in [false, true] {
            for t in [255, 254, 253] {
                v.push(Rule {
                    priority: 0,
                    src: None,
                    dst: None,
                    fwmark: None,
                    fwmask: None,
                    iif: None,
                    other_selectors: false,
                    table: Some(t),
                    v6,
                });
            }
        }
        v
    }

    /// Names and tables unlike the tutorial's: classification must not care.
    fn proxy() -> KernelState {
        let mut rules = base_rules();
        rules.push(rule(Some("10.9.9.9"), None, 31));
        rules.push(rule(Some("3000::9"), None, 31));
        KernelState {
            links: [
                link(1, "lo", None, false),
                link(7, "brx", None, true),
                link(8, "a", Some(7), false),
                link(9, "b", Some(7), false),
                link(10, "c", Some(7), false),
            ]
            .into_iter()
            .collect(),
            rules,
            routes: vec![
                default_route(31, false, &[("172.30.0.3", 7), ("172.30.0.5", 7)]),
                default_route(31, true, &[("fd30::3", 7)]),
                default_route(254, false, &[("172.30.0.254", 7)]),
            ],
            ..Default::default()
        }
    }

    fn frontend() -> KernelState {
        let mut rules = base_rules();
        rules.push(rule(None, Some(5003), 5003));
        rules.push(rule(Some("10.9.9.9"), None, 77));
        KernelState {
            links: [
                link(1, "lo", None, false),
                link(2, "up0", None, false),
                link(3, "toward-px", None, false),
            ]
            .into_iter()
            .collect(),
            rules,
            routes: vec![
                default_route(5003, false, &[("172.30.0.6", 3)]),
                default_route(77, false, &[("192.0.2.1", 2), ("192.0.2.2", 2)]),
            ],
            ..Default::default()
        }
    }

    fn target() -> (KernelState, Vec<Address>) {
        let mut rules = base_rules();
        rules.push(rule(Some("10.9.9.9"), None, 4));
        rules.push(rule(Some("3000::9"), None, 5));
        let state = KernelState {
            links: [link(1, "lo", None, false), link(5, "app0", None, false)]
                .into_iter()
                .collect(),
            rules,
            routes: vec![default_route(4, false, &[("172.30.0.1", 5)])],
            ..Default::default()
        };
        let addrs = vec![
            addr(1, "127.0.0.1", 8),
            addr(5, "172.30.0.6", 24),
            addr(5, "10.9.9.9", 32),
            addr(5, "3000::9", 128),
        ];
        (state, addrs)
    }

    #[test]
    fn a_proxy_is_a_bridge_whose_vip_rules_route_through_it() {
        let c = classify(&proxy(), &[]);
        assert_eq!(c.role, Role::Proxy);
        assert_eq!(c.vips, vec![ip("10.9.9.9"), ip("3000::9")]);
        let names: Vec<(&str, IfaceKind)> = c
            .interfaces
            .iter()
            .map(|i| (i.name.as_str(), i.kind))
            .collect();
        assert_eq!(
            names,
            [
                ("brx", IfaceKind::Bridge),
                ("a", IfaceKind::Port),
                ("b", IfaceKind::Port),
                ("c", IfaceKind::Port)
            ]
        );
        assert_eq!(interfaces_text(&c), "bridge brx: a b c");
    }

    #[test]
    fn a_bridge_without_vip_rules_or_with_one_port_is_not_a_proxy() {
        // docker0-like: a bridge with ports, no source rules.
        let mut s = proxy();
        s.rules = base_rules();
        assert_eq!(classify(&s, &[]).role, Role::Other);
        // Source rules through a bridge of one port.
        let mut s = proxy();
        s.links.retain(|i, _| *i != 9 && *i != 10);
        assert_ne!(classify(&s, &[]).role, Role::Proxy);
        // A rule whose table's default route does not use the bridge.
        let mut s = proxy();
        s.routes = vec![
            default_route(31, false, &[("192.0.2.1", 8)]),
            default_route(31, true, &[("3000::1", 8)]),
        ];
        assert_ne!(classify(&s, &[]).role, Role::Proxy);
    }

    #[test]
    fn a_proxy_whose_vip_tables_are_empty_is_a_proxy_with_no_next_hops() {
        let mut s = proxy();
        s.routes.retain(|r| r.table != 31);
        let c = classify(&s, &[]);
        assert_eq!(c.role, Role::Proxy);
        assert_eq!(c.vips, vec![ip("10.9.9.9"), ip("3000::9")]);
        assert_eq!(interfaces_text(&c), "bridge brx: a b c");
        let note = c.note.unwrap();
        assert!(
            note.starts_with(
                "no next-hops: table 31 (from 10.9.9.9), table 31 (from 3000::9) empty"
            ),
            "{note}"
        );
        // Only the IPv6 table emptied: a proxy by its IPv4 VIP, noted for the IPv6 one.
        let mut s = proxy();
        s.routes.retain(|r| !(r.table == 31 && r.v6));
        let c = classify(&s, &[]);
        assert_eq!(c.role, Role::Proxy);
        assert!(c.note.unwrap().contains("(from 3000::9)"));
        // Holding the VIP makes it a target's rule, not an emptied proxy table.
        let mut s = proxy();
        s.routes.retain(|r| r.table != 31);
        let addrs = [addr(7, "10.9.9.9", 32), addr(7, "3000::9", 128)];
        assert_ne!(classify(&s, &addrs).role, Role::Proxy);
    }

    #[test]
    fn a_frontend_has_fwmark_tables_and_a_vip_rule_out_of_another_interface() {
        let c = classify(&frontend(), &[]);
        assert_eq!(c.role, Role::Frontend);
        assert_eq!(c.vips, vec![ip("10.9.9.9")]);
        assert_eq!(interfaces_text(&c), "external up0, conduit toward-px");
        assert_eq!(c.note, None);
        // Before any target connects there are no fwmark rules: still a frontend.
        let mut s = frontend();
        s.rules.retain(|r| r.fwmark.is_none());
        let c = classify(&s, &[]);
        assert_eq!(c.role, Role::Frontend);
        assert!(c.note.is_some());
        // A VIP rule whose table leaves by the conduit is not the egress rule.
        let mut s = frontend();
        s.routes[1] = default_route(77, false, &[("172.30.0.6", 3)]);
        assert_eq!(classify(&s, &[]).role, Role::Other);
    }

    #[test]
    fn a_target_holds_its_vips_as_host_addresses_with_source_rules() {
        let (s, a) = target();
        let c = classify(&s, &a);
        assert_eq!(c.role, Role::Target);
        assert_eq!(c.vips, vec![ip("10.9.9.9"), ip("3000::9")]);
        assert_eq!(interfaces_text(&c), "app0");
        // Host addresses without rules (or only on lo) make no target.
        let mut s2 = s.clone();
        s2.rules = base_rules();
        assert_eq!(classify(&s2, &a).role, Role::Other);
        let on_lo: Vec<Address> = a
            .iter()
            .map(|x| Address {
                ifindex: 1,
                ..x.clone()
            })
            .collect();
        assert_eq!(classify(&s, &on_lo).role, Role::Other);
        // A /24 address with a source rule is host source routing, not a VIP.
        let mut s3 = s.clone();
        s3.rules.push(rule(Some("172.30.0.6"), None, 9));
        let c = classify(&s3, &a);
        assert_eq!(c.vips, vec![ip("10.9.9.9"), ip("3000::9")]);
    }

    #[test]
    fn a_plain_namespace_is_other() {
        let s = KernelState {
            links: [link(1, "lo", None, false), link(2, "eth0", None, false)]
                .into_iter()
                .collect(),
            rules: base_rules(),
            routes: vec![default_route(254, false, &[("10.0.0.1", 2)])],
            ..Default::default()
        };
        let c = classify(&s, &[addr(2, "10.0.0.5", 24), addr(1, "127.0.0.1", 8)]);
        assert_eq!(c, Class::other());
        assert_eq!(classify(&KernelState::default(), &[]), Class::other());
    }

    #[test]
    fn pod_uids_from_both_cgroup_drivers() {
        let systemd = "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice/cri-containerd-1234.scope\n";
        assert_eq!(
            parse_pod_uid(systemd).as_deref(),
            Some("0a1b2c3d-4e5f-6789-abcd-ef0123456789")
        );
        let cgroupfs = "12:memory:/kubepods/burstable/pod0a1b2c3d-4e5f-6789-abcd-ef0123456789/0123abcd\n0::/\n";
        assert_eq!(
            parse_pod_uid(cgroupfs).as_deref(),
            Some("0a1b2c3d-4e5f-6789-abcd-ef0123456789")
        );
        assert_eq!(parse_pod_uid("0::/system.slice/ssh.service\n"), None);
        assert_eq!(parse_pod_uid("0::/kubepods/podnotauid/x\n"), None);
    }

    fn ns(name: &str, class: Class) -> Namespace {
        Namespace {
            path: PathBuf::from(format!("/var/run/netns/{name}")),
            inode: 4026530000,
            files: vec![],
            pids: vec![],
            pid_count: 0,
            host: false,
            name: name.into(),
            pod: None,
            pod_uid: None,
            hostname: None,
            class,
            error: None,
        }
    }

    #[test]
    fn nothing_meridio_like_gets_one_clear_sentence() {
        let d = Discovery {
            namespaces: vec![ns("host", Class::other()), ns("x", Class::other())],
        };
        let text = render_text(&d, false);
        assert_eq!(
            text,
            "no Meridio proxy, frontend or target namespace found on this node (2 namespaces looked at)\n"
        );
        let json = render_json(&d, false);
        let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(v["type"], "summary");
        assert_eq!(v["proxies"], 0);
        let all = [Role::Proxy, Role::Frontend, Role::Target];
        let e = to_trace(&d, &all, &[ip("20.0.0.1")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "no Meridio proxy, frontend, target on this node carries 20.0.0.1 (2 network namespaces looked at); `tracer discover` lists what was found"
        );
    }

    #[test]
    fn the_whole_path_is_every_namespace_carrying_a_vip_proxies_first() {
        let p1 = ns("p1", classify(&proxy(), &[]));
        let mut other_vips = proxy();
        for r in &mut other_vips.rules {
            if let Some((a, len)) = r.src {
                let moved = if a.is_ipv6() { "3000::8" } else { "10.8.8.8" };
                r.src = Some((ip(moved), len));
            }
        }
        let p2 = ns("p2", classify(&other_vips, &[]));
        let fe = ns("fe", classify(&frontend(), &[]));
        let d = Discovery {
            namespaces: vec![fe.clone(), p1.clone(), p2.clone()],
        };
        let all = [Role::Proxy, Role::Frontend, Role::Target];
        let names = |v: Vec<Namespace>| v.into_iter().map(|n| n.name).collect::<Vec<_>>();
        assert_eq!(
            names(to_trace(&d, &all, &[ip("10.9.9.9")]).unwrap()),
            ["p1", "fe"]
        );
        assert_eq!(
            names(to_trace(&d, &all, &[ip("10.8.8.8")]).unwrap()),
            ["p2"]
        );
        assert_eq!(
            names(to_trace(&d, &all, &[ip("10.9.9.9"), ip("10.8.8.8")]).unwrap()),
            ["p1", "p2", "fe"]
        );
        assert_eq!(
            names(to_trace(&d, &[Role::Frontend], &[ip("10.9.9.9")]).unwrap()),
            ["fe"]
        );
        let e = to_trace(&d, &all, &[ip("10.7.7.7")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("no Meridio proxy, frontend, target on this node carries 10.7.7.7"),
            "{e}"
        );
    }

    #[test]
    fn without_vips_every_vip_discovery_found_is_traced() {
        let mut moved = proxy();
        for r in &mut moved.rules {
            if let Some((a, len)) = r.src {
                let to = if a.is_ipv6() { "3000::8" } else { "10.8.8.8" };
                r.src = Some((ip(to), len));
            }
        }
        let mut p2 = ns("p2", classify(&moved, &[]));
        p2.inode += 1;
        let d = Discovery {
            namespaces: vec![
                ns("p1", classify(&proxy(), &[])),
                p2,
                ns("fe", classify(&frontend(), &[])),
                ns("gw", Class::other()),
            ],
        };
        let all = [Role::Proxy, Role::Frontend, Role::Target];
        assert_eq!(
            vips_on_node(&d, &all, None).unwrap(),
            [ip("10.9.9.9"), ip("3000::9"), ip("10.8.8.8"), ip("3000::8")]
        );
        assert_eq!(
            vips_on_node(&d, &all, Some(4026530001)).unwrap(),
            [ip("10.8.8.8"), ip("3000::8")]
        );
        let none = Discovery {
            namespaces: vec![ns("gw", Class::other())],
        };
        let e = vips_on_node(&none, &all, None).unwrap_err().to_string();
        assert!(e.starts_with("discovery finds no VIP on this node"), "{e}");
        assert!(e.contains("(1 network namespace looked at)"), "{e}");
        let e = vips_on_node(&d, &all, Some(1)).unwrap_err().to_string();
        assert!(e.contains("--netns"), "{e}");
    }

    #[test]
    fn the_table_is_aligned_and_hides_other_unless_asked() {
        let (t, a) = target();
        let d = Discovery {
            namespaces: vec![
                ns("proxy-x", classify(&proxy(), &[])),
                ns("fe-x", classify(&frontend(), &[])),
                ns("tg-x", classify(&t, &a)),
                ns("gw", Class::other()),
            ],
        };
        let text = render_text(&d, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        let col = |l: &str| l.find("/var/run").unwrap();
        assert!(lines[0].starts_with("ROLE"));
        assert_eq!(col(lines[1]), lines[0].find("NETNS").unwrap());
        assert_eq!(col(lines[1]), col(lines[3]));
        assert!(lines[1].contains("10.9.9.9,3000::9") && lines[1].contains("bridge brx: a b c"));
        assert!(!text.contains(" gw "));
        assert!(lines[4].contains("4 namespaces looked at: 1 proxy, 1 frontend, 1 target, 1 other (`tracer discover --all` lists them)"), "{text}");
        assert!(render_text(&d, true).contains("other     gw"));
    }

    #[test]
    fn a_namespace_is_inspected_while_young_then_every_recheck() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Young: every round, however recently inspected.
        assert!(inspection_due(t0, at(5), at(6)));
        // Settled: not until RECHECK has passed since the last inspection.
        assert!(!inspection_due(t0, at(31), at(32)));
        assert!(!inspection_due(t0, at(31), at(40)));
        assert!(inspection_due(t0, at(31), at(41)));
    }
}
