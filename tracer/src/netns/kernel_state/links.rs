//! Links (interfaces, bridges and their ports) and local addresses, as netlink reports them.
use std::net::IpAddr;

use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};

use crate::events::Mac;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<Mac>,
    /// Index of the bridge (or other controller) this link is enslaved to.
    pub master: Option<u32>,
    pub is_bridge: bool,
}

/// One local address (`ip addr`): where a VIP sits in a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub ifindex: u32,
    pub ip: IpAddr,
    pub prefix_len: u8,
}

pub(super) fn parse_address(
    m: &rtnetlink::packet_route::address::AddressMessage,
) -> Option<Address> {
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

pub(super) fn mac_of(bytes: &[u8]) -> Option<Mac> {
    bytes.try_into().ok()
}

pub(super) fn parse_link(m: &LinkMessage) -> Link {
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
