//! Classification: what a namespace is (proxy, stateless-lb-frontend, target or other),
//! told from the structure of what its kernel holds, never from names: a proxy is a bridge
//! with ports whose VIP source rules lead to a default route through it; a
//! stateless-lb-frontend has fwmark rules to tables with a default route (toward the
//! targets) and VIP source rules to a table with a default route out of another interface
//! (toward the gateways); a target holds the VIPs as local host addresses that are also
//! sources of policy rules.
use std::{collections::BTreeSet, net::IpAddr};

use crate::netns::kernel_state::{host_len, Address, KernelState, Rule};

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
    pub(super) fn other() -> Class {
        Class {
            role: Role::Other,
            vips: Vec::new(),
            interfaces: Vec::new(),
            note: None,
        }
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
