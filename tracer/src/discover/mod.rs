//! Discovery (`tracer discover`, and the choice of proxy when `--netns` is not given): every
//! network namespace on the node ([`enumerate`]), named by its pod where the node can tell,
//! and classified by what its kernel holds ([`classify`]: structurally, as interface names,
//! table numbers and addresses differ between clusters); `tracer discover` prints the
//! result ([`render`]). Here: one round of discovery, and the rounds of the whole-path mode
//! that inspect only namespaces that are new or due.
mod classify;
mod enumerate;
pub mod nfqlb;
mod render;

use std::{
    collections::BTreeMap,
    fs,
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use crate::{
    netns::kernel_state::{Address, KernelState, Netlink},
    netns::Netns,
};
pub use classify::{classify, Class, IfaceKind, Role};
use enumerate::{container_hostname, crictl_pods, enumerate, host_ns, parse_pod_uid, Found};
use render::{render_json, render_text};

/// Pids listed per namespace (the host's has hundreds).
const MAX_PIDS: usize = 8;
/// Processes of a namespace asked for their pod (cgroup, hostname).
const MAX_HINT_PIDS: usize = 16;
const NETLINK_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Classifies one namespace as discovery would (the `--netns` one, whose role, with no
/// `--role`, is discovery's), without looking at the rest of the node.
pub async fn classify_netns(ns: &Netns) -> Result<Class> {
    let (state, addrs) = read_state(ns).await?;
    Ok(classify(&state, &addrs))
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

#[cfg(test)]
mod tests {
    use super::classify::host_len;
    use super::render::interfaces_text;
    use super::*;
    use crate::netns::kernel_state::{Link, NextHop, Route, Rule};

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
