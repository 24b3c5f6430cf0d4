//! End-of-run accounts: one summary per flow (counts, next-hops, the routing verdict,
//! drops, fragments) and, per VIP, how the flows spread over the next-hops.
use std::{collections::BTreeMap, net::IpAddr};

use tracer_records::Inexact;

use super::{Counted, FlowKey, FlowState, FragState, Loss, NextHopUse, PathSeen, PredictionStats};
use crate::{
    discover::nfqlb::MaglevTable,
    netns::kernel_state::{KernelState, NextHop, Rule},
};

/// A flow summary's fragments: from the records, so a budget or loss can hide a split.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FragSummary {
    pub routed: u64,
    pub datagrams: u64,
    /// Datagrams whose fragments left by more than one next-hop, and the first few ids.
    pub split: u64,
    pub split_ids: Vec<u32>,
    pub orphans: u64,
}

/// End-of-run account of one flow.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowSummary {
    pub flow: FlowKey,
    pub flow_id: u32,
    /// The proxy namespace the routing verdict is about, when one saw the flow.
    pub proxy_site: Option<usize>,
    pub ingress_port: Option<String>,
    /// Packets, exact when `counted` (from the kernel's counters), else as recorded.
    pub ingress_packets: u64,
    pub egress_packets: u64,
    /// The packet counts come from the kernel's counters, not from the records.
    pub counted: bool,
    /// Packet records received for the proxy's ingress and routed egress hops: fewer than
    /// the packets when the budget (`--records`) or a full ring buffer left some out.
    pub ingress_records: u64,
    pub egress_records: u64,
    pub nexthops: Vec<NextHopUse>,
    /// Every egress packet went to the same next-hop.
    pub consistent: bool,
    /// The VIP's source rule, its table and that table's default-route next-hops.
    pub rule: Option<Rule>,
    pub table: Option<u32>,
    pub candidates: Vec<NextHop>,
    /// Whether the (single) next-hop taken is one of `candidates`; `None` when unknown.
    pub nexthop_in_route: Option<bool>,
    pub predictions: PredictionStats,
    pub drops: u64,
    /// (interface, reason, location) of the latest drop.
    pub last_drop: Option<(String, String, String)>,
    /// Only for a flow that had fragments.
    pub fragments: Option<FragSummary>,
    /// The pods it crossed: frontends in and out, the load balancer's choice, the target.
    pub path: PathSeen,
    /// Why its own figures are not exact any more (empty: they are).
    pub inexact: Vec<Inexact>,
}

impl FlowSummary {
    /// The next-hop taken, when there was exactly one.
    pub fn nexthop(&self) -> Option<&NextHopUse> {
        match self.nexthops.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// `states` is indexed by site; a flow no proxy saw is judged by site 0's state.
pub(super) fn summarize(
    key: &FlowKey,
    f: &FlowState,
    states: &[&KernelState],
    loss: Loss,
) -> FlowSummary {
    let empty = KernelState::default();
    let state = states
        .get(f.proxy_site.unwrap_or(0))
        .copied()
        .unwrap_or(&empty);
    // The rule and table the flow's own lookups went through (a mark can steer it past
    // the VIP's source rule); the source rule when no lookup was seen.
    let (rule, table) = match f.routed_lookup.as_ref().or(f.last_lookup.as_ref()) {
        Some((table, rule)) => (rule.clone(), Some(*table)),
        None => {
            let rule = state.source_rule(key.vip).cloned();
            let table = rule
                .as_ref()
                .and_then(|r| r.table)
                .or(f.tables.first().copied());
            (rule, table)
        }
    };
    let candidates = table
        .map(|t| state.default_nexthops(t, key.vip.is_ipv6()))
        .unwrap_or_default();
    let (ingress_packets, egress_packets, ingress_port, nexthops) = match &f.counted {
        Some(c) => (
            c.ingress_packets,
            c.egress_packets,
            f.ingress_port.clone().or_else(|| c.ingress_port.clone()),
            counted_nexthops(f, c, state, key.vip.is_ipv6()),
        ),
        None => (
            f.ingress_packets,
            f.egress_packets,
            f.ingress_port.clone(),
            f.nexthops.clone(),
        ),
    };
    let nexthop_in_route = match nexthops.as_slice() {
        [one] if !candidates.is_empty() => {
            Some(one.ip.is_some() && candidates.iter().any(|c| c.gw == one.ip))
        }
        _ => None,
    };
    FlowSummary {
        flow: key.clone(),
        flow_id: f.id,
        proxy_site: f.proxy_site,
        ingress_port,
        ingress_packets,
        egress_packets,
        counted: f.counted.is_some(),
        ingress_records: f.ingress_packets,
        egress_records: f.egress_packets,
        consistent: nexthops.len() <= 1,
        nexthops,
        rule,
        table,
        candidates,
        nexthop_in_route,
        predictions: f.predictions.clone(),
        drops: f.drops,
        last_drop: f.last_drop.clone(),
        fragments: frag_summary(&f.frags),
        path: f.path.clone(),
        inexact: f.inexact(loss),
    }
}

fn frag_summary(f: &FragState) -> Option<FragSummary> {
    if f.routed == 0 && f.orphans == 0 {
        return None;
    }
    let split: Vec<u32> = f
        .datagrams
        .iter()
        .filter(|(_, macs)| macs.len() > 1)
        .map(|(id, _)| *id)
        .collect();
    Some(FragSummary {
        routed: f.routed,
        datagrams: f.datagrams.len() as u64,
        split: split.len() as u64,
        split_ids: split.into_iter().take(8).collect(),
        orphans: f.orphans,
    })
}

/// The next-hops a flow took, with the kernel's exact packet counts. A next-hop no record
/// showed (left out by the budget or lost) is named from the state, as a record would be.
fn counted_nexthops(f: &FlowState, c: &Counted, state: &KernelState, v6: bool) -> Vec<NextHopUse> {
    let mut out: Vec<NextHopUse> = c
        .by_mac
        .iter()
        .map(
            |&(mac, packets, first_ns, ifindex)| match f.nexthops.iter().find(|n| n.mac == mac) {
                Some(seen) => NextHopUse {
                    packets,
                    ..seen.clone()
                },
                None => {
                    let port = state
                        .fdb_port(&mac)
                        .and_then(|i| state.link(i))
                        .map(|l| l.name.clone());
                    NextHopUse {
                        ip: state.neighbour_ip(ifindex, &mac, v6),
                        mac,
                        flooded: port.is_none(),
                        port,
                        packets,
                        first_rel_ns: first_ns.saturating_sub(f.first_ts),
                    }
                }
            },
        )
        .collect();
    // A next-hop recorded but no longer counted (its entry evicted) keeps its records.
    for n in &f.nexthops {
        if !out.iter().any(|o| o.mac == n.mac) {
            out.push(n.clone());
        }
    }
    out
}

/// How one VIP's flows spread over next-hops: the ECMP distribution an operator checks
/// against the route's weights; and over the targets the frontends' load balancer chose.
#[derive(Clone, Debug, PartialEq)]
pub struct Distribution {
    pub vip: IpAddr,
    /// Flows with at least one routed egress packet.
    pub flows: u64,
    pub shares: Vec<Share>,
    /// Per target pod that flows a frontend sent reached (none when no target pod is
    /// traced).
    pub targets: Vec<TargetShare>,
    /// The frontends' load-balancer tables that name these targets (see [`add_lb_tables`]).
    pub lb_tables: Vec<LbTable>,
    /// Flows each frontend sent with each mark (its load balancer's latest choice).
    pub sent: BTreeMap<(String, u32), u64>,
}

/// A frontend's load-balancer table beside the flows: each active target's share of the
/// lookup table and the flows it got, and the marks flows went to that it does not hold.
#[derive(Clone, Debug, PartialEq)]
pub struct LbTable {
    /// The frontend pod, and the table's name (nfqlb's shared memory).
    pub netns: String,
    pub name: String,
    /// Lookup table size.
    pub m: u32,
    pub active: Vec<LbSlot>,
    /// Marks of this VIP's flows that the table has no active target for.
    pub not_in_table: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LbSlot {
    pub mark: u32,
    /// Lookup table entries that point at it (its share is entries / m).
    pub entries: u32,
    /// Flows of this VIP that this frontend sent to it.
    pub flows: u64,
}

/// Sets each frontend's table (`(frontend, table)`) beside the VIPs whose flows went to
/// marks it holds.
pub fn add_lb_tables(dist: &mut [Distribution], tables: &[(String, MaglevTable)]) {
    for d in dist {
        let marks: Vec<u32> = d.targets.iter().filter_map(|t| t.mark).collect();
        let mut found = Vec::new();
        for (netns, t) in tables {
            if !t.active.iter().any(|(mark, _)| marks.contains(mark)) {
                continue;
            }
            found.push(LbTable {
                netns: netns.clone(),
                name: t.name.clone(),
                m: t.m,
                active: t
                    .active
                    .iter()
                    .map(|&(mark, entries)| LbSlot {
                        mark,
                        entries,
                        flows: d.sent.get(&(netns.clone(), mark)).copied().unwrap_or(0),
                    })
                    .collect(),
                not_in_table: marks
                    .iter()
                    .copied()
                    .filter(|m| !t.active.iter().any(|(a, _)| a == m))
                    .collect(),
            });
        }
        d.lb_tables = found;
    }
}

/// The flows and requests one target pod got.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetShare {
    pub netns: String,
    /// The address and mark the frontends' load balancer sent its flows to and with (the
    /// latest seen; `None` when no lookup of its flows was seen).
    pub target_ip: Option<IpAddr>,
    pub mark: Option<u32>,
    pub flows: u64,
    /// Requests that reached it (the kernel's counts where read).
    pub packets: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Share {
    pub nexthop: Option<IpAddr>,
    pub ifname: Option<String>,
    /// Flows that sent at least one packet to this next-hop.
    pub flows: u64,
    pub packets: u64,
}

/// Adds one flow's next-hops and target to its VIP's distribution.
pub(super) fn add_share(dist: &mut Vec<Distribution>, s: &FlowSummary) {
    if s.nexthops.is_empty() && s.path.target.is_none() {
        return;
    }
    let i = match dist.iter().position(|d| d.vip == s.flow.vip) {
        Some(i) => i,
        None => {
            dist.push(Distribution {
                vip: s.flow.vip,
                flows: 0,
                shares: Vec::new(),
                targets: Vec::new(),
                lb_tables: Vec::new(),
                sent: BTreeMap::new(),
            });
            dist.len() - 1
        }
    };
    let d = &mut dist[i];
    // Only flows a frontend sent count for the targets: the proxy's own neighbour
    // advertisements to a target's VIP reach it too, without a load balancer's choice.
    let sent = s.path.frontend_in.is_some();
    if let (Some((fe, _)), Some(c)) = (&s.path.frontend_in, s.path.lb.last()) {
        *d.sent.entry((fe.clone(), c.mark)).or_default() += 1;
    }
    if let Some((netns, _)) = s.path.target.as_ref().filter(|_| sent) {
        let lb = s.path.lb.last();
        let packets = s.path.target_packets.max(s.path.target_records);
        match d.targets.iter_mut().find(|t| &t.netns == netns) {
            Some(t) => {
                t.flows += 1;
                t.packets += packets;
                t.target_ip = lb.map(|c| c.target_ip).or(t.target_ip);
                t.mark = lb.map(|c| c.mark).or(t.mark);
            }
            None => d.targets.push(TargetShare {
                netns: netns.clone(),
                target_ip: lb.map(|c| c.target_ip),
                mark: lb.map(|c| c.mark),
                flows: 1,
                packets,
            }),
        }
    }
    if s.nexthops.is_empty() {
        return;
    }
    d.flows += 1;
    for n in &s.nexthops {
        match d.shares.iter_mut().find(|sh| sh.nexthop == n.ip) {
            Some(sh) => {
                sh.flows += 1;
                sh.packets += n.packets;
                sh.ifname = sh.ifname.take().or(n.port.clone());
            }
            None => d.shares.push(Share {
                nexthop: n.ip,
                ifname: n.port.clone(),
                flows: 1,
                packets: n.packets,
            }),
        }
    }
}
