//! Neighbours (IP -> MAC) and the bridge FDB (MAC -> port), and the notifications that
//! keep them current between dumps.
use std::net::IpAddr;

use rtnetlink::packet_route::{
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage},
    AddressFamily,
};

use super::{links::mac_of, KernelState};
use crate::events::Mac;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: IpAddr,
    pub mac: Mac,
    pub ifindex: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdbEntry {
    pub mac: Mac,
    /// The bridge port (or the bridge itself, for its own addresses).
    pub ifindex: u32,
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

pub(super) fn parse_neighbour(m: &NeighbourMessage) -> Option<Neighbour> {
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
