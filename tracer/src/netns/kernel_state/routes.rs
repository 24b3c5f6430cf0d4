//! Routes and their next-hops (multipath weights, dead next-hops), per table.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteNextHopFlags,
};

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

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

pub(super) fn parse_route(m: &RouteMessage, v6: bool) -> Route {
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
