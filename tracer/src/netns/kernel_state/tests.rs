use std::net::IpAddr;

use rtnetlink::packet_route::{
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage},
    AddressFamily,
};

use super::*;
use crate::events::Mac;

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
