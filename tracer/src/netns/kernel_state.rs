//! What the traced namespace's kernel holds: links, neighbours, policy rules and routes,
//! read over rtnetlink from inside that namespace (never by parsing `ip` output).
//!
//! [`KernelState`] is a plain snapshot with the lookups the flow table needs; [`Netlink`]
//! owns the socket (bound to the namespace when it was created) and takes snapshots.
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::{Context, Result};
use futures::TryStreamExt;
use rtnetlink::{
    packet_route::{
        link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage},
        neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage},
        route::{RouteAddress, RouteAttribute, RouteMessage, RouteNextHopFlags},
        rule::{RuleAction, RuleAttribute, RuleMessage},
        tc::TcHandle,
        AddressFamily,
    },
    Handle, IpVersion,
};

use crate::{events::Mac, netns::Netns};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<Mac>,
    /// Index of the bridge (or other controller) this link is enslaved to.
    pub master: Option<u32>,
    pub is_bridge: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: IpAddr,
    pub mac: Mac,
    pub ifindex: u32,
}

/// One local address (`ip addr`): where a VIP sits in a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub ifindex: u32,
    pub ip: IpAddr,
    pub prefix_len: u8,
}

/// One `ip rule`. Only the selectors Meridio uses are kept; a rule with any other selector
/// is marked `other_selectors` so it is never mistaken for a plain source rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub priority: u32,
    pub src: Option<(IpAddr, u8)>,
    pub dst: Option<(IpAddr, u8)>,
    pub fwmark: Option<u32>,
    pub fwmask: Option<u32>,
    pub iif: Option<String>,
    pub other_selectors: bool,
    /// Table for `lookup` rules; `None` for other actions.
    pub table: Option<u32>,
    pub v6: bool,
}

impl Rule {
    /// `from 20.0.0.1`, `fwmark 0x1389`, ... as `ip rule` would print the selector.
    pub fn selector(&self) -> String {
        let mut parts = Vec::new();
        match self.src {
            Some((ip, len)) if len == host_len(ip) => parts.push(format!("from {ip}")),
            Some((ip, len)) => parts.push(format!("from {ip}/{len}")),
            None => parts.push("from all".to_string()),
        }
        if let Some((ip, len)) = self.dst {
            parts.push(format!("to {ip}/{len}"));
        }
        match (self.fwmark, self.fwmask) {
            (Some(m), Some(mask)) if mask != u32::MAX => {
                parts.push(format!("fwmark {m:#x}/{mask:#x}"))
            }
            (Some(m), _) => parts.push(format!("fwmark {m:#x}")),
            _ => {}
        }
        if let Some(i) = &self.iif {
            parts.push(format!("iif {i}"));
        }
        parts.join(" ")
    }

    /// Whether this rule's selectors match a packet (rules with selectors the tracer does
    /// not model never match, so they are never blamed wrongly).
    pub fn matches(&self, src: IpAddr, dst: IpAddr, mark: u32, iif: Option<&str>) -> bool {
        !self.other_selectors
            && self.v6 == src.is_ipv6()
            && self.src.is_none_or(|(n, l)| prefix_contains(n, l, src))
            && self.dst.is_none_or(|(n, l)| prefix_contains(n, l, dst))
            && self
                .fwmark
                .is_none_or(|m| mark & self.fwmask.unwrap_or(u32::MAX) == m)
            && self.iif.as_deref().is_none_or(|i| Some(i) == iif)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    pub gw: Option<IpAddr>,
    pub ifindex: u32,
    pub weight: u32,
    /// False for next-hops the kernel marks dead: the multipath hash skips them.
    pub alive: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub table: u32,
    pub dst: Option<(IpAddr, u8)>,
    pub v6: bool,
    pub nexthops: Vec<NextHop>,
}

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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdbEntry {
    pub mac: Mac,
    /// The bridge port (or the bridge itself, for its own addresses).
    pub ifindex: u32,
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

fn host_len(ip: IpAddr) -> u8 {
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

/// A netlink socket subscribed to the namespace's link, neighbour, route and rule
/// notifications. A neighbour or FDB message is applied as it comes ([`NeighbourUpdate`]):
/// they are frequent, and carry the whole entry. Any other message only says "something
/// changed": the session re-reads the state and diffs it (see `changes`).
pub struct Watcher {
    /// Keeps the connection (and with it the socket in the namespace) alive; dropping it
    /// closes the socket, so a namespace we stop tracing is not held open by us.
    pub task: ConnTask,
    pub messages: futures::channel::mpsc::UnboundedReceiver<(
        rtnetlink::packet_core::NetlinkMessage<rtnetlink::packet_route::RouteNetlinkMessage>,
        rtnetlink::sys::SocketAddr,
    )>,
}

/// RTNLGRP_IPV6_RULE (19) has no RTMGRP_* constant; legacy group bit n-1.
const RTMGRP_IPV6_RULE: u32 = 1 << (19 - 1);

impl Watcher {
    pub fn start(ns: &Netns) -> Result<Watcher> {
        use rtnetlink::{constants::*, sys::AsyncSocket};
        let groups = RTMGRP_LINK
            | RTMGRP_NEIGH
            | RTMGRP_IPV4_ROUTE
            | RTMGRP_IPV6_ROUTE
            | RTMGRP_IPV4_RULE
            | RTMGRP_IPV6_RULE;
        let rt = tokio::runtime::Handle::current();
        let (conn, handle, messages) = ns
            .run(|| -> std::io::Result<_> {
                let _guard = rt.enter();
                let (mut conn, handle, messages) = rtnetlink::new_connection()?;
                conn.socket_mut()
                    .socket_mut()
                    .bind(&rtnetlink::sys::SocketAddr::new(0, groups))?;
                Ok((conn, handle, messages))
            })?
            .context("cannot subscribe to netlink notifications in the traced namespace")?;
        Ok(Watcher {
            task: ConnTask {
                task: tokio::spawn(conn),
                _handle: handle,
            },
            messages,
        })
    }
}

/// One neighbour or bridge FDB entry that changed, as a notification carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NeighbourUpdate {
    /// The entry for `ip` on `ifindex` now resolves to `mac`; `None`: it no longer resolves
    /// (deleted, or failed: the kernel sends no link-layer address for an invalid entry).
    Neighbour {
        ifindex: u32,
        ip: IpAddr,
        mac: Option<Mac>,
    },
    /// `mac` was learned on bridge port `ifindex` (`present`), or forgotten there.
    Fdb {
        ifindex: u32,
        mac: Mac,
        present: bool,
    },
}

impl NeighbourUpdate {
    /// The update a notification carries; `None` for every other kind of message.
    pub fn from_message(
        msg: &rtnetlink::packet_core::NetlinkMessage<rtnetlink::packet_route::RouteNetlinkMessage>,
    ) -> Option<NeighbourUpdate> {
        use rtnetlink::{packet_core::NetlinkPayload, packet_route::RouteNetlinkMessage as M};
        let (m, present) = match &msg.payload {
            NetlinkPayload::InnerMessage(M::NewNeighbour(m)) => (m, true),
            NetlinkPayload::InnerMessage(M::DelNeighbour(m)) => (m, false),
            _ => return None,
        };
        let ifindex = m.header.ifindex;
        let lladdr = m.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::LinkLocalAddress(b) => mac_of(b),
            _ => None,
        });
        if m.header.family == AddressFamily::Bridge {
            return Some(NeighbourUpdate::Fdb {
                ifindex,
                mac: lladdr?,
                present,
            });
        }
        let ip = m.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
            _ => None,
        })?;
        Some(NeighbourUpdate::Neighbour {
            ifindex,
            ip,
            mac: if present { lladdr } else { None },
        })
    }
}

impl KernelState {
    /// Applies a neighbour or FDB notification, as a fresh dump would show it.
    pub fn apply(&mut self, update: &NeighbourUpdate) {
        match *update {
            NeighbourUpdate::Neighbour { ifindex, ip, mac } => {
                self.neighbours
                    .retain(|n| !(n.ifindex == ifindex && n.ip == ip));
                if let Some(mac) = mac {
                    self.neighbours.push(Neighbour { ip, mac, ifindex });
                }
            }
            NeighbourUpdate::Fdb {
                ifindex,
                mac,
                present,
            } => {
                // A MAC is learned on one port at a time: a move replaces the old entry.
                self.fdb
                    .retain(|e| e.mac != mac || (!present && e.ifindex != ifindex));
                if present {
                    self.fdb.push(FdbEntry { mac, ifindex });
                }
            }
        }
    }
}

/// An rtnetlink connection whose socket lives in the traced namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
    _task: std::sync::Arc<ConnTask>,
}

/// A netlink connection task, stopped (socket closed) when dropped.
pub struct ConnTask {
    task: tokio::task::JoinHandle<()>,
    _handle: Handle,
}

impl Drop for ConnTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Netlink {
    /// Opens the socket inside `ns`; the connection task runs on the current tokio runtime.
    pub fn connect(ns: &Netns) -> Result<Netlink> {
        let rt = tokio::runtime::Handle::current();
        let (conn, handle, _) = ns
            .run(|| {
                let _guard = rt.enter();
                rtnetlink::new_connection()
            })?
            .context("cannot open a netlink socket in the traced namespace")?;
        let task = ConnTask {
            task: tokio::spawn(conn),
            _handle: handle.clone(),
        };
        Ok(Netlink {
            handle,
            _task: std::sync::Arc::new(task),
        })
    }

    pub async fn snapshot(&self) -> Result<KernelState> {
        let links = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect::<Vec<LinkMessage>>()
            .await
            .context("netlink: listing links")?;
        let mut rules = Vec::new();
        let mut routes = Vec::new();
        for (version, v6) in [(IpVersion::V4, false), (IpVersion::V6, true)] {
            let msgs: Vec<RuleMessage> = self
                .handle
                .rule()
                .get(version)
                .execute()
                .try_collect()
                .await
                .context("netlink: listing rules")?;
            rules.extend(msgs.iter().map(|m| parse_rule(m, v6)));
            let mut req = RouteMessage::default();
            req.header.address_family = if v6 {
                AddressFamily::Inet6
            } else {
                AddressFamily::Inet
            };
            let msgs: Vec<RouteMessage> = self
                .handle
                .route()
                .get(req)
                .execute()
                .try_collect()
                .await
                .context("netlink: listing routes")?;
            routes.extend(msgs.iter().map(|m| parse_route(m, v6)));
        }
        let (neighbours, fdb) = self.neighbours().await?;
        Ok(KernelState {
            links: links.iter().map(parse_link).map(|l| (l.index, l)).collect(),
            neighbours,
            fdb,
            rules,
            routes,
            hash_policy: [None; 2],
        })
    }

    /// Deletes the `clsact` qdisc of `ifindex` unless a filter is still on it (someone
    /// else's: ours are detached by then). Returns whether it was deleted.
    pub async fn remove_clsact_if_empty(&self, ifindex: u32) -> Result<bool> {
        let index = i32::try_from(ifindex)?;
        let filters: Vec<_> = self
            .handle
            .clone()
            .traffic_filter(index)
            .get()
            .execute()
            .try_collect()
            .await
            .context("netlink: listing tc filters")?;
        // Dumps list filters of every parent; any left means the clsact is in use.
        if !filters.is_empty() {
            return Ok(false);
        }
        let mut req = self.handle.clone().qdisc().del(index);
        let header = &mut req.message_mut().header;
        header.handle = TcHandle::from(0xffff_0000u32);
        header.parent = TcHandle::from(0xffff_fff1u32);
        req.execute()
            .await
            .context("netlink: deleting the clsact qdisc")?;
        Ok(true)
    }

    /// The neighbour tables (IP -> MAC) and the bridge FDB (MAC -> port).
    pub async fn neighbours(&self) -> Result<(Vec<Neighbour>, Vec<FdbEntry>)> {
        let msgs: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .execute()
            .try_collect()
            .await
            .context("netlink: listing neighbours")?;
        let mut req = self.handle.neighbours().get();
        req.message_mut().header.family = AddressFamily::Bridge;
        let fdb_msgs: Vec<NeighbourMessage> = req
            .execute()
            .try_collect()
            .await
            .context("netlink: listing the bridge FDB")?;
        let fdb = fdb_msgs
            .iter()
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::LinkLocalAddress(b) => mac_of(b).map(|mac| FdbEntry {
                        mac,
                        ifindex: m.header.ifindex,
                    }),
                    _ => None,
                })
            })
            .collect();
        Ok((msgs.iter().filter_map(parse_neighbour).collect(), fdb))
    }
    /// Every local address of the namespace, both families.
    pub async fn addresses(&self) -> Result<Vec<Address>> {
        let msgs: Vec<rtnetlink::packet_route::address::AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .context("netlink: listing addresses")?;
        Ok(msgs.iter().filter_map(parse_address).collect())
    }
}

fn parse_address(m: &rtnetlink::packet_route::address::AddressMessage) -> Option<Address> {
    use rtnetlink::packet_route::address::AddressAttribute;
    // IFA_LOCAL is the local address of a point-to-point link; IFA_ADDRESS otherwise.
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    Some(Address {
        ifindex: m.header.index,
        ip: local.or(address)?,
        prefix_len: m.header.prefix_len,
    })
}

fn mac_of(bytes: &[u8]) -> Option<Mac> {
    bytes.try_into().ok()
}

fn parse_link(m: &LinkMessage) -> Link {
    let mut link = Link {
        index: m.header.index,
        name: String::new(),
        mac: None,
        master: None,
        is_bridge: false,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(b) => link.mac = mac_of(b),
            LinkAttribute::Controller(i) => link.master = Some(*i),
            LinkAttribute::LinkInfo(infos) => {
                link.is_bridge = infos
                    .iter()
                    .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge)))
            }
            _ => {}
        }
    }
    link
}

fn parse_neighbour(m: &NeighbourMessage) -> Option<Neighbour> {
    let mut ip = None;
    let mut mac = None;
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                ip = Some(IpAddr::V4(*v4))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                ip = Some(IpAddr::V6(*v6))
            }
            NeighbourAttribute::LinkLocalAddress(b) => mac = mac_of(b),
            _ => {}
        }
    }
    Some(Neighbour {
        ip: ip?,
        mac: mac?,
        ifindex: m.header.ifindex,
    })
}

fn parse_rule(m: &RuleMessage, v6: bool) -> Rule {
    let mut rule = Rule {
        priority: 0,
        src: None,
        dst: None,
        fwmark: None,
        fwmask: None,
        iif: None,
        other_selectors: m.header.tos != 0,
        table: (m.header.action == RuleAction::ToTable).then_some(u32::from(m.header.table)),
        v6,
    };
    for a in &m.attributes {
        match a {
            RuleAttribute::Priority(p) => rule.priority = *p,
            RuleAttribute::Source(ip) => rule.src = Some((*ip, m.header.src_len)),
            RuleAttribute::Destination(ip) => rule.dst = Some((*ip, m.header.dst_len)),
            RuleAttribute::FwMark(mark) => rule.fwmark = Some(*mark),
            RuleAttribute::FwMask(mask) => rule.fwmask = Some(*mask),
            RuleAttribute::Iifname(i) => rule.iif = Some(i.clone()),
            RuleAttribute::Table(t) if rule.table.is_some() => rule.table = Some(*t),
            RuleAttribute::Oifname(_)
            | RuleAttribute::UidRange(_)
            | RuleAttribute::IpProtocol(_)
            | RuleAttribute::SourcePortRange(_)
            | RuleAttribute::DestinationPortRange(_) => rule.other_selectors = true,
            _ => {}
        }
    }
    rule
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn parse_route(m: &RouteMessage, v6: bool) -> Route {
    let mut table = u32::from(m.header.table);
    let mut dst = None;
    let mut single = NextHop {
        gw: None,
        ifindex: 0,
        weight: 1,
        alive: true,
    };
    let mut nexthops = Vec::new();
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => {
                dst = route_ip(d).map(|ip| (ip, m.header.destination_prefix_length))
            }
            RouteAttribute::Gateway(g) => single.gw = route_ip(g),
            RouteAttribute::Oif(i) => single.ifindex = *i,
            RouteAttribute::MultiPath(hops) => {
                nexthops = hops
                    .iter()
                    .map(|h| NextHop {
                        gw: h.attributes.iter().find_map(|a| match a {
                            RouteAttribute::Gateway(g) => route_ip(g),
                            _ => None,
                        }),
                        ifindex: h.interface_index,
                        weight: u32::from(h.hops) + 1,
                        alive: !h.flags.contains(RouteNextHopFlags::Dead),
                    })
                    .collect()
            }
            _ => {}
        }
    }
    if nexthops.is_empty() && (single.gw.is_some() || single.ifindex != 0) {
        nexthops.push(single);
    }
    if dst.is_none() && m.header.destination_prefix_length != 0 {
        // A prefix length without an address cannot happen; keep the route unmatched.
        let unspecified = if v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        dst = Some((unspecified, m.header.destination_prefix_length));
    }
    Route {
        table,
        dst,
        v6,
        nexthops,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn rule(priority: u32, src: Option<(&str, u8)>, fwmark: Option<u32>, table: u32) -> Rule {
        Rule {
            priority,
            src: src.map(|(a, l)| (ip(a), l)),
            dst: None,
            fwmark,
            fwmask: None,
            iif: None,
            other_selectors: false,
            table: Some(table),
            v6: false,
        }
    }

    #[test]
    fn source_rule_takes_the_first_plain_source_rule_by_priority() {
        let state = KernelState {
            rules: vec![
                rule(0, None, None, 255),
                rule(32766, None, None, 254),
                rule(32765, Some(("20.0.0.1", 32)), None, 7),
                rule(100, Some(("20.0.0.0", 24)), Some(0x1389), 9),
                rule(32000, Some(("30.0.0.1", 32)), None, 8),
            ],
            ..Default::default()
        };
        let r = state.source_rule(ip("20.0.0.1")).unwrap();
        assert_eq!((r.priority, r.table), (32765, Some(7)));
        assert_eq!(r.selector(), "from 20.0.0.1");
        assert!(state.source_rule(ip("2000::1")).is_none());
    }

    #[test]
    fn neighbour_ip_maps_mac_back_to_the_next_hop() {
        let mac = [2, 0, 0, 0, 0, 3];
        let state = KernelState {
            neighbours: vec![
                Neighbour {
                    ip: ip("fe80::3"),
                    mac,
                    ifindex: 4,
                },
                Neighbour {
                    ip: ip("fd00::3"),
                    mac,
                    ifindex: 4,
                },
                Neighbour {
                    ip: ip("172.16.0.3"),
                    mac,
                    ifindex: 4,
                },
                Neighbour {
                    ip: ip("172.16.0.5"),
                    mac: [2, 0, 0, 0, 0, 5],
                    ifindex: 4,
                },
            ],
            ..Default::default()
        };
        assert_eq!(state.neighbour_ip(4, &mac, false), Some(ip("172.16.0.3")));
        assert_eq!(state.neighbour_ip(4, &mac, true), Some(ip("fd00::3")));
        assert_eq!(state.neighbour_ip(5, &mac, false), None);
    }

    #[test]
    fn prefixes() {
        assert!(prefix_contains(ip("20.0.0.0"), 24, ip("20.0.0.9")));
        assert!(!prefix_contains(ip("20.0.0.0"), 32, ip("20.0.0.9")));
        assert!(prefix_contains(ip("0.0.0.0"), 0, ip("1.2.3.4")));
        assert!(prefix_contains(ip("2000::"), 64, ip("2000::1")));
        assert!(!prefix_contains(ip("2000::"), 64, ip("20.0.0.1")));
    }

    fn neighbour_message(
        family: AddressFamily,
        ifindex: u32,
        ip: Option<IpAddr>,
        mac: Option<Mac>,
        new: bool,
    ) -> rtnetlink::packet_core::NetlinkMessage<rtnetlink::packet_route::RouteNetlinkMessage> {
        use rtnetlink::packet_route::RouteNetlinkMessage as M;
        let mut m = NeighbourMessage::default();
        m.header.family = family;
        m.header.ifindex = ifindex;
        if let Some(ip) = ip {
            m.attributes.push(NeighbourAttribute::Destination(match ip {
                IpAddr::V4(a) => NeighbourAddress::Inet(a),
                IpAddr::V6(a) => NeighbourAddress::Inet6(a),
            }));
        }
        if let Some(mac) = mac {
            m.attributes
                .push(NeighbourAttribute::LinkLocalAddress(mac.to_vec()));
        }
        let inner = if new {
            M::NewNeighbour(m)
        } else {
            M::DelNeighbour(m)
        };
        rtnetlink::packet_core::NetlinkMessage::from(inner)
    }

    #[test]
    fn neighbour_notifications_update_the_state_as_a_dump_would() {
        let (a, b) = ([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]);
        let gw = ip("172.16.0.3");
        let mut state = KernelState::default();
        let apply = |state: &mut KernelState, msg| {
            let update = NeighbourUpdate::from_message(&msg).expect("a neighbour message");
            state.apply(&update);
        };
        // Resolved, then re-resolved to another MAC: one entry, the newest MAC.
        apply(
            &mut state,
            neighbour_message(AddressFamily::Inet, 5, Some(gw), Some(a), true),
        );
        apply(
            &mut state,
            neighbour_message(AddressFamily::Inet, 5, Some(gw), Some(b), true),
        );
        assert_eq!(state.neighbour_ip(5, &b, false), Some(gw));
        assert_eq!(state.neighbours.len(), 1);
        // Failed (the kernel sends no link-layer address for an invalid entry): gone.
        apply(
            &mut state,
            neighbour_message(AddressFamily::Inet, 5, Some(gw), None, true),
        );
        assert!(state.neighbours.is_empty());
        apply(
            &mut state,
            neighbour_message(AddressFamily::Inet, 5, Some(gw), Some(a), true),
        );
        apply(
            &mut state,
            neighbour_message(AddressFamily::Inet, 5, Some(gw), Some(a), false),
        );
        assert!(state.neighbours.is_empty());

        // The FDB: learned on port 3, moved to port 4, forgotten there.
        state.links = [
            (
                2,
                Link {
                    index: 2,
                    name: "bridge0".into(),
                    mac: None,
                    master: None,
                    is_bridge: true,
                },
            ),
            (
                3,
                Link {
                    index: 3,
                    name: "p3".into(),
                    mac: None,
                    master: Some(2),
                    is_bridge: false,
                },
            ),
            (
                4,
                Link {
                    index: 4,
                    name: "p4".into(),
                    mac: None,
                    master: Some(2),
                    is_bridge: false,
                },
            ),
        ]
        .into();
        apply(
            &mut state,
            neighbour_message(AddressFamily::Bridge, 3, None, Some(a), true),
        );
        assert_eq!(state.fdb_port(&a), Some(3));
        apply(
            &mut state,
            neighbour_message(AddressFamily::Bridge, 4, None, Some(a), true),
        );
        assert_eq!(state.fdb_port(&a), Some(4));
        apply(
            &mut state,
            neighbour_message(AddressFamily::Bridge, 3, None, Some(a), false),
        );
        assert_eq!(
            state.fdb_port(&a),
            Some(4),
            "a deletion on another port is not this one"
        );
        apply(
            &mut state,
            neighbour_message(AddressFamily::Bridge, 4, None, Some(a), false),
        );
        assert_eq!(state.fdb_port(&a), None);

        // Anything else is not a neighbour update.
        let other = rtnetlink::packet_core::NetlinkMessage::from(
            rtnetlink::packet_route::RouteNetlinkMessage::NewRoute(Default::default()),
        );
        assert_eq!(NeighbourUpdate::from_message(&other), None);
    }
}
