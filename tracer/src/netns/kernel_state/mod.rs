//! What the traced namespace's kernel holds: links, neighbours, policy rules and routes,
//! read over rtnetlink from inside that namespace (never by parsing `ip` output).
//!
//! [`KernelState`] is a plain snapshot with the lookups the flow table needs; [`Netlink`]
//! owns the socket (bound to the namespace when it was created) and takes snapshots.
//!
//! By what each part owns: [`links`] (links and addresses), [`neighbours`] (neighbours,
//! the bridge FDB and their notifications), [`rules`] and [`routes`] (policy routing), and
//! [`netlink`] (the socket: snapshots, dumps, the change watcher).
mod links;
mod neighbours;
mod netlink;
mod routes;
mod rules;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, net::IpAddr};

use crate::{events::Mac, netns::Netns};

pub use links::{Address, Link};
pub use neighbours::{FdbEntry, Neighbour, NeighbourUpdate};
pub use netlink::{ConnTask, Netlink, Watcher};
pub use routes::{NextHop, Route};
pub use rules::Rule;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelState {
    pub links: BTreeMap<u32, Link>,
    pub neighbours: Vec<Neighbour>,
    pub rules: Vec<Rule>,
    pub routes: Vec<Route>,
    /// `net.ipv4.fib_multipath_hash_policy`, `net.ipv6.fib_multipath_hash_policy`.
    pub hash_policy: [Option<u8>; 2],
    /// Bridge forwarding database: which port a MAC was learned on.
    pub fdb: Vec<FdbEntry>,
}

impl KernelState {
    pub fn link(&self, ifindex: u32) -> Option<&Link> {
        self.links.get(&ifindex)
    }

    pub fn link_by_name(&self, name: &str) -> Option<&Link> {
        self.links.values().find(|l| l.name == name)
    }

    /// Every bridge with the ports enslaved to it: the interfaces of a Meridio proxy.
    pub fn bridges_and_ports(&self) -> Vec<&Link> {
        let bridges: Vec<u32> = self
            .links
            .values()
            .filter(|l| l.is_bridge)
            .map(|l| l.index)
            .collect();
        self.links
            .values()
            .filter(|l| l.is_bridge || l.master.is_some_and(|m| bridges.contains(&m)))
            .collect()
    }

    /// The bridge port a frame to `mac` leaves by, when the FDB knows the MAC; `None`
    /// means the bridge floods it on every port.
    pub fn fdb_port(&self, mac: &Mac) -> Option<u32> {
        self.fdb
            .iter()
            .find(|e| &e.mac == mac && self.is_bridge_port(e.ifindex))
            .map(|e| e.ifindex)
    }

    pub fn is_bridge_port(&self, ifindex: u32) -> bool {
        self.link(ifindex)
            .and_then(|l| l.master)
            .and_then(|m| self.link(m))
            .is_some_and(|m| m.is_bridge)
    }

    /// The IP whose neighbour entry on `ifindex` holds `mac`: how a routed packet's
    /// Ethernet destination names the next-hop the kernel chose.
    pub fn neighbour_ip(&self, ifindex: u32, mac: &Mac, v6: bool) -> Option<IpAddr> {
        self.neighbours
            .iter()
            .filter(|n| n.ifindex == ifindex && &n.mac == mac && n.ip.is_ipv6() == v6)
            // A global address beats a link-local one for the same MAC (IPv6 routers).
            .min_by_key(|n| matches!(n.ip, IpAddr::V6(a) if a.is_unicast_link_local()))
            .map(|n| n.ip)
    }

    /// The first rule, in priority order, that sends traffic from `src` to a table by a
    /// source selector alone: Meridio's per-VIP rule (`from <VIP> lookup <T>`).
    pub fn source_rule(&self, src: IpAddr) -> Option<&Rule> {
        let mut rules: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.v6 == src.is_ipv6())
            .collect();
        rules.sort_by_key(|r| r.priority);
        rules.into_iter().find(|r| {
            r.table.is_some()
                && r.fwmark.is_none()
                && r.iif.is_none()
                && !r.other_selectors
                && r.src
                    .is_some_and(|(net, len)| prefix_contains(net, len, src))
        })
    }

    /// The rule that sent a lookup to `table`: the first rule, in priority order, whose
    /// selectors match the packet and whose action is that table (earlier matching rules
    /// sent it to tables that did not resolve it, such as `local`).
    pub fn rule_for(
        &self,
        table: u32,
        src: IpAddr,
        dst: IpAddr,
        mark: u32,
        iif: Option<&str>,
    ) -> Option<&Rule> {
        let mut rules: Vec<&Rule> = self.rules.iter().collect();
        rules.sort_by_key(|r| r.priority);
        rules
            .into_iter()
            .find(|r| r.table == Some(table) && r.matches(src, dst, mark, iif))
    }

    pub fn hash_policy(&self, v6: bool) -> Option<u8> {
        self.hash_policy[usize::from(v6)]
    }

    /// Next-hops of the default route in `table` for the family of `v6`.
    pub fn default_nexthops(&self, table: u32, v6: bool) -> Vec<NextHop> {
        self.routes
            .iter()
            .find(|r| r.table == table && r.v6 == v6 && r.dst.is_none_or(|(_, len)| len == 0))
            .map(|r| r.nexthops.clone())
            .unwrap_or_default()
    }
}

/// The prefix length of one host address: 32 for IPv4, 128 for IPv6.
pub fn host_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

pub fn prefix_contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// `fib_multipath_hash_policy` for IPv4 and IPv6 as the namespace sees it (the /proc/sys/net
/// files show the values of the netns of the thread that opens them).
pub fn read_hash_policy(ns: &Netns) -> [Option<u8>; 2] {
    let read = |family: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/{family}/fib_multipath_hash_policy"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    };
    ns.run(|| [read("ipv4"), read("ipv6")])
        .unwrap_or([None, None])
}
