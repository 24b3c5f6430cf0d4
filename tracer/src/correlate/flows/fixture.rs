//! The proxy the flow-table tests and the JSON rate bench run against: bridge0 with two
//! conduit ports toward frontends and one toward a target, an ECMP route over the two.
use std::net::IpAddr;

use crate::{
    events::Mac,
    netns::kernel_state::{FdbEntry, KernelState, Link, Neighbour, NextHop, Route, Rule},
};

pub(crate) const BR: u32 = 2;
pub(crate) const TO_A: u32 = 3;
pub(crate) const TO_B: u32 = 4;
pub(crate) const TO_TARGET: u32 = 5;
pub(crate) const MAC_A: Mac = [2, 0, 0, 0, 0, 0xa];
pub(crate) const MAC_B: Mac = [2, 0, 0, 0, 0, 0xb];
pub(crate) const MAC_BR: Mac = [2, 0, 0, 0, 0, 1];

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(crate) fn link(index: u32, name: &str, master: Option<u32>) -> (u32, Link) {
    let l = Link {
        index,
        name: name.into(),
        mac: None,
        master,
        is_bridge: master.is_none(),
    };
    (index, l)
}

pub(crate) fn proxy() -> KernelState {
    KernelState {
        links: [
            link(BR, "bridge0", None),
            link(TO_A, "conduit-a.-3150", Some(BR)),
            link(TO_B, "conduit-a.-6496", Some(BR)),
            link(TO_TARGET, "proxy.cond-0a85", Some(BR)),
        ]
        .into_iter()
        .collect(),
        neighbours: vec![
            Neighbour {
                ip: ip("172.16.0.3"),
                mac: MAC_A,
                ifindex: BR,
            },
            Neighbour {
                ip: ip("172.16.0.5"),
                mac: MAC_B,
                ifindex: BR,
            },
        ],
        rules: vec![Rule {
            priority: 32765,
            src: Some((ip("20.0.0.1"), 32)),
            dst: None,
            fwmark: None,
            fwmask: None,
            iif: None,
            other_selectors: false,
            table: Some(7),
            v6: false,
        }],
        routes: vec![Route {
            table: 7,
            dst: None,
            v6: false,
            nexthops: ["172.16.0.3", "172.16.0.5"]
                .iter()
                .map(|g| NextHop {
                    gw: Some(ip(g)),
                    ifindex: BR,
                    weight: 1,
                    alive: true,
                })
                .collect(),
        }],
        hash_policy: [Some(1), Some(1)],
        fdb: vec![
            FdbEntry {
                mac: MAC_A,
                ifindex: TO_A,
            },
            FdbEntry {
                mac: MAC_B,
                ifindex: TO_B,
            },
        ],
    }
}
