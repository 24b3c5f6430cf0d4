//! The rtnetlink socket inside the traced namespace: snapshots of its state, the dumps
//! the session repeats, the clsact clean-up, and the change watcher.
use anyhow::{Context, Result};
use futures::TryStreamExt;
use rtnetlink::{
    packet_route::{
        link::LinkMessage,
        neighbour::{NeighbourAttribute, NeighbourMessage},
        route::RouteMessage,
        rule::RuleMessage,
        tc::TcHandle,
        AddressFamily,
    },
    Handle, IpVersion,
};

use super::{
    links::{mac_of, parse_address, parse_link},
    neighbours::parse_neighbour,
    routes::parse_route,
    rules::parse_rule,
    Address, FdbEntry, KernelState, Neighbour,
};
use crate::netns::Netns;

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
