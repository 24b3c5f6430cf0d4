//! The kernel's per-VIP totals by topology (`TOTALS`), named: which pod, interface,
//! direction and next-hop each count belongs to. The map is keyed by the topology, never
//! by a flow, and never evicts: the distribution over next-hops stays exact whatever the
//! number of flows, and `/metrics` serves these counts.
use std::net::{IpAddr, Ipv6Addr};

use tracer_common::{TotalCount, TotalKey, DIR_EGRESS};

use crate::{
    correlate::flows::{Distribution, Share, SiteView},
    discover::Role,
    events::Dir,
};

/// One VIP's packets on one interface of one traced pod, in one direction, and on a
/// routed egress hop toward one next-hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Total {
    pub vip: IpAddr,
    pub pod: String,
    pub role: Role,
    pub iface: String,
    pub dir: Dir,
    /// The routed hop's next-hop (from the neighbour table); `routed` with `None`: a MAC
    /// the table does not know.
    pub routed: bool,
    pub nexthop: Option<IpAddr>,
    pub proto: u8,
    pub packets: u64,
    pub bytes: u64,
    /// TCP SYNs (and SYN-ACKs) seen here, or the first packet of each other flow.
    pub flows: u64,
}

/// The address a `TOTALS` key stores (IPv4-mapped for IPv4).
fn addr(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

/// Names one kernel total in its site; `None` for an interface the snapshot lacks.
pub fn name(site: &SiteView, key: &TotalKey, count: &TotalCount) -> Option<Total> {
    let link = site.state.link(key.ifindex)?;
    let vip = addr(key.vip);
    let routed = key.dir == DIR_EGRESS && key.eth_dst != [0; 6];
    let nexthop = routed
        .then(|| {
            site.state
                .neighbour_ip(key.ifindex, &key.eth_dst, vip.is_ipv6())
        })
        .flatten();
    Some(Total {
        vip,
        pod: site.label.to_string(),
        role: site.role,
        iface: link.name.clone(),
        dir: if key.dir == DIR_EGRESS {
            Dir::Egress
        } else {
            Dir::Ingress
        },
        routed,
        nexthop,
        proto: key.proto,
        packets: count.packets,
        bytes: count.bytes,
        flows: count.flows,
    })
}

/// Replaces each VIP's packets per proxy next-hop, summed from its flows, by the kernel's
/// totals: flows summarised early or whose per-hop counters were evicted leave them
/// exact. A next-hop only the totals know is added.
pub fn exact_shares(dist: &mut [Distribution], totals: &[Total]) {
    for d in dist {
        let routed: Vec<&Total> = totals
            .iter()
            .filter(|t| t.vip == d.vip && t.role == Role::Proxy && t.routed)
            .collect();
        if routed.is_empty() {
            continue;
        }
        for sh in &mut d.shares {
            sh.packets = 0;
        }
        for t in routed {
            match d.shares.iter_mut().find(|sh| sh.nexthop == t.nexthop) {
                Some(sh) => sh.packets += t.packets,
                None => d.shares.push(Share {
                    nexthop: t.nexthop,
                    ifname: None,
                    flows: t.flows,
                    packets: t.packets,
                }),
            }
        }
        d.shares.sort_by_key(|sh| sh.nexthop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::flows::fixture::*;

    fn key(eth_dst: [u8; 6], ifindex: u32) -> TotalKey {
        TotalKey {
            vip: tracer_common::v4_mapped([20, 0, 0, 1]),
            ifindex,
            eth_dst,
            proto: 6,
            dir: DIR_EGRESS,
            site: 1,
            _pad: 0,
        }
    }

    #[test]
    fn the_kernel_totals_replace_the_flows_sums_per_next_hop() {
        let s = proxy();
        let view = SiteView {
            index: 0,
            label: "proxy-a",
            role: Role::Proxy,
            state: &s,
        };
        let count = |packets| TotalCount {
            packets,
            bytes: packets * 60,
            flows: 1,
        };
        let a = name(&view, &key(MAC_A, BR), &count(7)).unwrap();
        let b = name(&view, &key(MAC_B, BR), &count(5)).unwrap();
        assert_eq!(a.vip, ip("20.0.0.1"));
        assert!(
            a.routed && a.nexthop.is_some() && a.iface == "bridge0",
            "{a:?}"
        );
        // A port's egress is no next-hop.
        let port = name(&view, &key([0; 6], TO_A), &count(3)).unwrap();
        assert!(!port.routed && port.nexthop.is_none());
        let mut dist = vec![Distribution {
            vip: ip("20.0.0.1"),
            flows: 2,
            shares: vec![Share {
                nexthop: a.nexthop,
                ifname: Some("to-a".into()),
                flows: 2,
                packets: 4,
            }],
            targets: vec![],
            lb_tables: vec![],
            sent: Default::default(),
        }];
        exact_shares(&mut dist, &[a.clone(), b.clone(), port]);
        let packets: Vec<_> = dist[0]
            .shares
            .iter()
            .map(|s| (s.nexthop, s.packets))
            .collect();
        let mut want = vec![(a.nexthop, 7), (b.nexthop, 5)];
        want.sort();
        assert_eq!(packets, want);
        assert_eq!(
            dist[0]
                .shares
                .iter()
                .find(|s| s.nexthop == a.nexthop)
                .unwrap()
                .flows,
            2
        );
    }
}
