//! The flow table: the one place where events are correlated.
//!
//! Both directions of a connection are one flow, keyed by (protocol, VIP, VIP port, client,
//! client port). Each packet hop is labelled with its path relative to the VIP (`ingress`:
//! the VIP is the destination, `egress`: the VIP is the source). On the egress path the
//! *routed hop* (the packet leaving the L3 interface, bridge0 in a Meridio proxy) names the
//! next-hop the kernel really chose: its Ethernet destination, mapped back to an IP through
//! the neighbour table. The bridge port the same frame then leaves by names the frontend link.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
};

use tracer_common::{HopCount, HopKey};

use crate::{
    correlate::multipath::{self, HashSource},
    discover::Role,
    events::{Dir, Drop, FibLookup, HashSample, HopCounted, Mac, Packet},
    netns::kernel_state::{KernelState, NextHop, Rule},
};

/// A kernel hash sample older than this at the routed hop belongs to another packet.
const HASH_SAMPLE_MAX_AGE_NS: u64 = 20_000_000;
/// Kernel hash samples kept per flow for routed hops still to come.
const KERNEL_HASH_SAMPLES: usize = 8;

/// The traced namespace an event comes from: its state, how output names it, and its role
/// on the path. Only proxy hops feed the ECMP accounting (next-hops, decisions, packets in
/// and out of the proxy); frontend and target hops are shown on the same timeline.
pub struct SiteView<'a> {
    pub index: usize,
    pub label: &'a str,
    pub role: Role,
    pub state: &'a KernelState,
}

/// Direction of travel relative to the VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathDir {
    /// Toward the VIP (gateway -> frontend -> proxy -> target).
    Ingress,
    /// From the VIP (target -> proxy -> frontend -> gateway).
    Egress,
}

impl PathDir {
    pub fn as_str(self) -> &'static str {
        match self {
            PathDir::Ingress => "ingress",
            PathDir::Egress => "egress",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub proto: u8,
    pub vip: IpAddr,
    pub vip_port: u16,
    pub client: IpAddr,
    pub client_port: u16,
}

impl FlowKey {
    /// The flow a packet (or lookup) belongs to, and its path; `None` when neither address
    /// is a VIP.
    pub fn classify(
        vips: &HashSet<IpAddr>,
        proto: u8,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
    ) -> Option<(FlowKey, PathDir)> {
        if vips.contains(&dst) {
            Some((
                FlowKey {
                    proto,
                    vip: dst,
                    vip_port: dport,
                    client: src,
                    client_port: sport,
                },
                PathDir::Ingress,
            ))
        } else if vips.contains(&src) {
            Some((
                FlowKey {
                    proto,
                    vip: src,
                    vip_port: sport,
                    client: dst,
                    client_port: dport,
                },
                PathDir::Egress,
            ))
        } else {
            None
        }
    }
}

/// Where a hop sits in the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HopKind {
    /// A bridge port (conduit or proxy.cond port): L2.
    Port,
    /// An L3 interface (bridge0): egress here is the routed hop.
    L3,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Hop {
    pub flow: FlowKey,
    pub flow_id: u32,
    /// Label of the namespace (pod) the hop was seen in, and its role.
    pub netns: String,
    pub role: Role,
    pub path: PathDir,
    /// Nanoseconds since the flow's first event.
    pub rel_ns: u64,
    pub ifname: String,
    pub kind: HopKind,
    pub packet: Packet,
    /// On the routed egress hop: the next-hop IP its Ethernet destination belongs to.
    pub nexthop: Option<IpAddr>,
    /// True on the routed hop when the neighbour table has no entry for the MAC.
    pub nexthop_unknown: bool,
    /// On the routed egress hop: why the packet went where it went.
    pub decision: Option<Decision>,
}

/// The routing decision behind one routed packet: rule, table, candidates, hash, and the
/// next-hop the kernel's multipath thresholds give for that hash, next to the actual one.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub rule: Option<Rule>,
    pub table: Option<u32>,
    pub candidates: Vec<NextHop>,
    /// First decision of the flow, or the candidates differ from the previous one.
    pub candidates_changed: bool,
    /// The skb hash seen at TC on the routed hop.
    pub skb_hash: u32,
    /// The hash compared with the thresholds (the kernel's, already shifted), when known.
    pub hash: Option<u32>,
    pub source: HashSource,
    pub predicted: Option<IpAddr>,
    pub actual: Option<IpAddr>,
}

impl Decision {
    /// `None` when the tracer cannot know the hash (and says why in `source`).
    pub fn agrees(&self) -> Option<bool> {
        self.hash?;
        Some(self.predicted.is_some() && self.predicted == self.actual)
    }
}

/// How often a flow's predictions matched the next-hop taken.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PredictionStats {
    pub agree: u64,
    pub disagree: u64,
    pub unknown: u64,
    /// The hash source of the latest decision (why a prediction was or was not possible).
    pub source: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouteHop {
    pub flow: FlowKey,
    pub flow_id: u32,
    pub netns: String,
    pub role: Role,
    pub path: PathDir,
    pub rel_ns: u64,
    pub lookup: FibLookup,
    /// The policy rule that points to the looked-up table for this source, when there is one.
    pub rule: Option<Rule>,
}

/// A traced packet the kernel dropped in the traced namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct DropHop {
    pub flow: FlowKey,
    pub flow_id: u32,
    pub netns: String,
    pub role: Role,
    pub path: PathDir,
    pub rel_ns: u64,
    /// Interface the packet was on (`?` when the namespace does not know the index).
    pub ifname: String,
    /// The kernel's drop reason name (`IP_INNOROUTES`, `IP_RPFILTER`, ...).
    pub reason: String,
    /// Where in the kernel: `function+0xoffset`.
    pub location: String,
    pub drop: Drop,
}

/// One next-hop a flow's egress packets were sent to.
#[derive(Clone, Debug, PartialEq)]
pub struct NextHopUse {
    pub ip: Option<IpAddr>,
    pub mac: Mac,
    /// The bridge port the frames leave by, from the FDB; `None` while flooded.
    pub port: Option<String>,
    /// The bridge did not know the MAC: the frames went out on every port.
    pub flooded: bool,
    pub packets: u64,
    pub first_rel_ns: u64,
}

/// A flow's exact packet counts through the proxy, from the kernel's per-hop counters.
#[derive(Clone, Debug, Default)]
struct Counted {
    ingress_packets: u64,
    ingress_port: Option<String>,
    egress_packets: u64,
    /// Per next-hop MAC: packets, first packet's kernel time, the routed interface.
    by_mac: Vec<(Mac, u64, u64, u32)>,
}

#[derive(Clone, Debug, Default)]
struct FlowState {
    id: u32,
    first_ts: u64,
    /// Records seen (the counts when no kernel counters were read).
    ingress_packets: u64,
    ingress_port: Option<String>,
    egress_packets: u64,
    nexthops: Vec<NextHopUse>,
    tables: Vec<u32>,
    /// The latest successful lookup of this flow's egress: its table and rule.
    last_lookup: Option<(u32, Option<Rule>)>,
    /// The lookup behind the latest routed egress packet (a lookup whose packet never
    /// left, e.g. one delivered or dropped, does not name the flow's table).
    routed_lookup: Option<(u32, Option<Rule>)>,
    shown_candidates: Option<Vec<NextHop>>,
    /// (ts, hash, hook) from an fexit/kretprobe on the kernel's hash function, oldest
    /// first: two packets of a flow routed at once on two CPUs each leave a sample before
    /// either reaches its egress hop, and each routed hop takes the oldest (one slot let
    /// the second sample overwrite the first: one packet got the other's hash, the other
    /// none).
    kernel_hash: std::collections::VecDeque<(u64, u32, &'static str)>,
    predictions: PredictionStats,
    drops: u64,
    last_drop: Option<(String, String, String)>,
    /// Latest event of the flow, for expiry.
    last_ts: u64,
    /// The proxy site whose state explains the flow's routing (its latest proxy event).
    proxy_site: Option<usize>,
    /// A FIN was seen toward the VIP / from the VIP, or an RST: when both FINs (or an
    /// RST) were seen the flow is ending; a half-close alone is not the end.
    fin_in: bool,
    fin_out: bool,
    rst: bool,
    /// Exact counts from the kernel, when they were read: they win over the records.
    counted: Option<Counted>,
    /// The flow's entries in each site's counter map, to forget when the flow ends.
    hop_keys: Vec<(usize, HopKey)>,
    frags: FragState,
}

/// Datagrams followed per flow for the split check; beyond it new ones are not.
const FRAG_DATAGRAMS_KEPT: usize = 4096;

/// A flow's fragments as its records showed them.
#[derive(Clone, Debug, Default)]
struct FragState {
    /// Fragment records on the proxy's routed egress hop.
    routed: u64,
    /// Fragment records whose first fragment was not seen (ports unknown), any hop.
    orphans: u64,
    /// Per datagram id: the next-hop MACs its fragments took, first one first.
    datagrams: BTreeMap<u32, Vec<Mac>>,
}

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

impl FlowState {
    fn closed(&self) -> bool {
        self.rst || (self.fin_in && self.fin_out)
    }
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

#[derive(Default)]
pub struct FlowTable {
    vips: HashSet<IpAddr>,
    flows: HashMap<FlowKey, FlowState>,
    next_id: u32,
    /// Next-hop shares of flows already expired, so the final distribution still counts
    /// them while their state is gone.
    ended: Vec<Distribution>,
    /// Counter-map entries of flows that ended, by site: the session deletes them.
    ended_hops: Vec<(usize, HopKey)>,
}

/// A closed flow (FIN/RST seen) is summarised this long after its last packet, so late
/// retransmissions and the final ACKs still land in it.
const CLOSED_LINGER_NS: u64 = 2_000_000_000;
const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;

impl FlowTable {
    pub fn new(vips: impl IntoIterator<Item = IpAddr>) -> FlowTable {
        FlowTable {
            vips: vips.into_iter().collect(),
            ..Default::default()
        }
    }

    fn flow(&mut self, key: &FlowKey, ts: u64) -> &mut FlowState {
        if !self.flows.contains_key(key) {
            self.next_id += 1;
            let state = FlowState {
                id: self.next_id,
                first_ts: ts,
                ..Default::default()
            };
            self.flows.insert(key.clone(), state);
        }
        let flow = self.flows.get_mut(key).expect("inserted above");
        flow.last_ts = flow.last_ts.max(ts);
        flow
    }

    /// Removes flows that ended (closed and quiet for a while) or stayed idle longer than
    /// `idle_ns`, and returns their summaries: the table stays bounded however many
    /// connections come and go.
    pub fn expire(
        &mut self,
        now_ns: u64,
        idle_ns: u64,
        states: &[&KernelState],
    ) -> Vec<FlowSummary> {
        let done: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, f)| {
                let quiet = now_ns.saturating_sub(f.last_ts);
                quiet > idle_ns || (f.closed() && quiet > CLOSED_LINGER_NS)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<FlowSummary> = done
            .iter()
            .filter_map(|k| {
                let f = self.flows.remove(k)?;
                self.ended_hops.extend_from_slice(&f.hop_keys);
                Some(summarize(k, &f, states))
            })
            .collect();
        out.sort_by_key(|s| s.flow_id);
        for s in &out {
            add_share(&mut self.ended, s);
        }
        out
    }

    /// The counter-map entries of the flows that ended since the last call.
    pub fn take_ended_hops(&mut self) -> Vec<(usize, HopKey)> {
        std::mem::take(&mut self.ended_hops)
    }

    /// Takes in one site's kernel counters (cumulative: each read replaces the last). A flow
    /// the records never showed (budget, ring loss) is created from its counts alone. Only
    /// proxy hops feed the flow's packet counts, as with records.
    pub fn absorb(&mut self, site: &SiteView, hops: &[(HopKey, HopCount)]) {
        let state = site.state;
        let proxy = site.role == Role::Proxy;
        let mut fresh: HashMap<FlowKey, Counted> = HashMap::new();
        for (raw, count) in hops {
            let h = HopCounted::new(raw, count);
            let Some((key, path)) =
                FlowKey::classify(&self.vips, h.proto, h.src, h.sport, h.dst, h.dport)
            else {
                continue;
            };
            let flow = self.flow(&key, h.first_ns);
            flow.last_ts = flow.last_ts.max(h.last_ns);
            if !flow.hop_keys.contains(&(site.index, *raw)) {
                flow.hop_keys.push((site.index, *raw));
            }
            if !proxy {
                continue;
            }
            flow.proxy_site.get_or_insert(site.index);
            let Some(link) = state.link(h.ifindex) else {
                continue;
            };
            let port = state.is_bridge_port(h.ifindex);
            let c = fresh.entry(key).or_default();
            match (path, port, h.dir) {
                (PathDir::Ingress, true, Dir::Ingress) => {
                    c.ingress_packets += h.packets;
                    c.ingress_port.get_or_insert_with(|| link.name.clone());
                }
                (PathDir::Egress, false, Dir::Egress) => {
                    c.egress_packets += h.packets;
                    c.by_mac.push((h.eth_dst, h.packets, h.first_ns, h.ifindex));
                }
                _ => {}
            }
        }
        for (key, mut c) in fresh {
            if let Some(f) = self.flows.get_mut(&key) {
                c.by_mac.sort_by_key(|(_, _, first, _)| *first);
                f.counted = Some(c);
            }
        }
    }

    /// Next-hop distribution per VIP over every flow seen, expired ones included.
    pub fn distribution(&self, live: &[FlowSummary]) -> Vec<Distribution> {
        let mut out = self.ended.clone();
        for s in live {
            add_share(&mut out, s);
        }
        for d in &mut out {
            d.shares.sort_by_key(|sh| sh.nexthop);
        }
        out
    }

    /// Correlates one packet hop. `None` for packets of no VIP flow or on an interface the
    /// snapshot does not know.
    pub fn on_packet(&mut self, p: Packet, site: &SiteView) -> Option<Hop> {
        let state = site.state;
        let (key, path) = FlowKey::classify(&self.vips, p.proto, p.src, p.sport, p.dst, p.dport)?;
        let link = state.link(p.ifindex)?;
        let kind = if state.is_bridge_port(p.ifindex) {
            HopKind::Port
        } else {
            HopKind::L3
        };
        let flow = self.flow(&key, p.ts_ns);
        let rel_ns = p.ts_ns.saturating_sub(flow.first_ts);
        if p.proto == tracer_common::PROTO_TCP {
            flow.rst |= p.tcp_flags & TCP_RST != 0;
            if p.tcp_flags & TCP_FIN != 0 {
                match path {
                    PathDir::Ingress => flow.fin_in = true,
                    PathDir::Egress => flow.fin_out = true,
                }
            }
        }
        let mut nexthop = None;
        let mut nexthop_unknown = false;
        let mut decision = None;
        let proxy = site.role == Role::Proxy;
        if proxy {
            flow.proxy_site = Some(site.index);
        }
        match (path, kind, p.dir) {
            // Elsewhere on the path a routed hop still names its next-hop, for the eye.
            (_, HopKind::L3, Dir::Egress) if !proxy => {
                nexthop = state.neighbour_ip(p.ifindex, &p.eth_dst, p.dst.is_ipv6());
            }
            _ if !proxy => {}
            // A packet enters the proxy on a bridge port: count it once, there.
            (PathDir::Ingress, HopKind::Port, Dir::Ingress) => {
                flow.ingress_packets += 1;
                flow.ingress_port.get_or_insert_with(|| link.name.clone());
            }
            // The routed hop: the Ethernet destination is the chosen next-hop.
            (PathDir::Egress, HopKind::L3, Dir::Egress) => {
                flow.egress_packets += 1;
                nexthop = state.neighbour_ip(p.ifindex, &p.eth_dst, p.dst.is_ipv6());
                nexthop_unknown = nexthop.is_none();
                // The FDB says which port the frame leaves by; without an entry the
                // bridge floods it on all of them, and no single copy is "the" link.
                let port = state
                    .fdb_port(&p.eth_dst)
                    .and_then(|i| state.link(i))
                    .map(|l| l.name.clone());
                match flow.nexthops.iter_mut().find(|n| n.mac == p.eth_dst) {
                    Some(n) => {
                        n.packets += 1;
                        n.ip = n.ip.or(nexthop);
                        n.flooded |= port.is_none();
                        n.port = n.port.take().or(port);
                    }
                    None => flow.nexthops.push(NextHopUse {
                        ip: nexthop,
                        mac: p.eth_dst,
                        flooded: port.is_none(),
                        port,
                        packets: 1,
                        first_rel_ns: rel_ns,
                    }),
                }
                decision = Some(decide(flow, &p, nexthop, state));
                if let Some(fr) = p.frag {
                    flow.frags.routed += 1;
                    let kept = flow.frags.datagrams.len() < FRAG_DATAGRAMS_KEPT;
                    match flow.frags.datagrams.get_mut(&fr.id) {
                        Some(macs) if !macs.contains(&p.eth_dst) => macs.push(p.eth_dst),
                        Some(_) => {}
                        None if kept => {
                            flow.frags.datagrams.insert(fr.id, vec![p.eth_dst]);
                        }
                        None => {}
                    }
                }
            }
            _ => {}
        }
        if p.frag.is_some_and(|f| f.orphan) {
            flow.frags.orphans += 1;
        }
        Some(Hop {
            flow_id: flow.id,
            flow: key,
            netns: site.label.to_string(),
            role: site.role,
            path,
            rel_ns,
            ifname: link.name.clone(),
            kind,
            packet: p,
            nexthop,
            nexthop_unknown,
            decision,
        })
    }

    /// Correlates a drop; `reason` and `location` are already named.
    pub fn on_drop(
        &mut self,
        d: Drop,
        reason: String,
        location: String,
        site: &SiteView,
    ) -> Option<DropHop> {
        let (key, path) = FlowKey::classify(&self.vips, d.proto, d.src, d.sport, d.dst, d.dport)?;
        let ifname = site
            .state
            .link(d.ifindex)
            .map_or_else(|| "?".to_string(), |l| l.name.clone());
        let flow = self.flow(&key, d.ts_ns);
        flow.drops += 1;
        flow.last_drop = Some((ifname.clone(), reason.clone(), location.clone()));
        Some(DropHop {
            flow_id: flow.id,
            flow: key,
            netns: site.label.to_string(),
            role: site.role,
            path,
            rel_ns: d.ts_ns.saturating_sub(flow.first_ts),
            ifname,
            reason,
            location,
            drop: d,
        })
    }

    /// Keeps a multipath hash the kernel reported (fexit/kretprobe) for the flow's next
    /// routed hop.
    pub fn on_hash(&mut self, h: HashSample) {
        if let Some((key, PathDir::Egress)) =
            FlowKey::classify(&self.vips, h.proto, h.src, h.sport, h.dst, h.dport)
        {
            let samples = &mut self.flow(&key, h.ts_ns).kernel_hash;
            if samples.len() == KERNEL_HASH_SAMPLES {
                samples.pop_front();
            }
            samples.push_back((h.ts_ns, h.hash, h.hook));
        }
    }

    /// Correlates a routing table lookup made for a traced packet.
    pub fn on_fib(&mut self, f: FibLookup, site: &SiteView) -> Option<RouteHop> {
        let state = site.state;
        let (key, path) = FlowKey::classify(&self.vips, f.proto, f.src, f.sport, f.dst, f.dport)?;
        let iif = u32::try_from(f.iif)
            .ok()
            .and_then(|i| state.link(i))
            .map(|l| l.name.as_str());
        let rule = state.rule_for(f.table, f.src, f.dst, f.mark, iif).cloned();
        let flow = self.flow(&key, f.ts_ns);
        if f.err == 0 {
            if !flow.tables.contains(&f.table) {
                flow.tables.push(f.table);
            }
            if path == PathDir::Egress && site.role == Role::Proxy {
                flow.last_lookup = Some((f.table, rule.clone()));
            }
        }
        Some(RouteHop {
            flow_id: flow.id,
            flow: key,
            netns: site.label.to_string(),
            role: site.role,
            path,
            rel_ns: f.ts_ns.saturating_sub(flow.first_ts),
            lookup: f,
            rule,
        })
    }

    /// One summary per flow, in the order flows were first seen; `state` should be fresh.
    pub fn summaries(&self, states: &[&KernelState]) -> Vec<FlowSummary> {
        let mut out: Vec<FlowSummary> = self
            .flows
            .iter()
            .map(|(key, f)| summarize(key, f, states))
            .collect();
        out.sort_by_key(|s| s.flow_id);
        out
    }
}

/// `states` is indexed by site; a flow no proxy saw is judged by site 0's state.
fn summarize(key: &FlowKey, f: &FlowState, states: &[&KernelState]) -> FlowSummary {
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
/// against the route's weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Distribution {
    pub vip: IpAddr,
    /// Flows with at least one routed egress packet.
    pub flows: u64,
    pub shares: Vec<Share>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Share {
    pub nexthop: Option<IpAddr>,
    pub ifname: Option<String>,
    /// Flows that sent at least one packet to this next-hop.
    pub flows: u64,
    pub packets: u64,
}

/// Adds one flow's next-hops to its VIP's distribution.
fn add_share(dist: &mut Vec<Distribution>, s: &FlowSummary) {
    if s.nexthops.is_empty() {
        return;
    }
    let i = match dist.iter().position(|d| d.vip == s.flow.vip) {
        Some(i) => i,
        None => {
            dist.push(Distribution {
                vip: s.flow.vip,
                flows: 0,
                shares: Vec::new(),
            });
            dist.len() - 1
        }
    };
    let d = &mut dist[i];
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

/// The decision behind a routed packet. The table and rule come from the flow's latest
/// fib lookup when the tracepoint saw it, else from the VIP's source rule.
fn decide(
    flow: &mut FlowState,
    p: &Packet,
    actual: Option<IpAddr>,
    state: &KernelState,
) -> Decision {
    let v6 = p.src.is_ipv6();
    let (table, rule) = match &flow.last_lookup {
        Some((table, rule)) => (Some(*table), rule.clone()),
        None => {
            let rule = state.source_rule(p.src).cloned();
            (rule.as_ref().and_then(|r| r.table), rule)
        }
    };
    if flow.last_lookup.is_some() {
        flow.routed_lookup = flow.last_lookup.clone();
    }
    let candidates = table
        .map(|t| state.default_nexthops(t, v6))
        .unwrap_or_default();
    let candidates_changed = flow.shown_candidates.as_ref() != Some(&candidates);
    flow.shown_candidates = Some(candidates.clone());

    // Samples too old for this packet belong to packets that were never seen routed.
    while flow
        .kernel_hash
        .front()
        .is_some_and(|(ts, _, _)| p.ts_ns.saturating_sub(*ts) >= HASH_SAMPLE_MAX_AGE_NS)
    {
        flow.kernel_hash.pop_front();
    }
    let (source, hash) = match flow.kernel_hash.pop_front() {
        Some((ts, hash, hook)) if p.ts_ns.saturating_sub(ts) < HASH_SAMPLE_MAX_AGE_NS => {
            (HashSource::Kernel { hook }, Some(hash))
        }
        _ => match HashSource::infer(state.hash_policy(v6), p.hash) {
            HashSource::SkbL4Hash => (HashSource::SkbL4Hash, Some(p.hash >> 1)),
            other => (other, None),
        },
    };
    let predicted = hash
        .and_then(|h| multipath::select(&candidates, h))
        .and_then(|i| candidates[i].gw);
    let decision = Decision {
        rule,
        table,
        candidates,
        candidates_changed,
        skb_hash: p.hash,
        hash,
        source,
        predicted,
        actual,
    };
    let stats = &mut flow.predictions;
    match decision.agrees() {
        Some(true) => stats.agree += 1,
        Some(false) => stats.disagree += 1,
        None => stats.unknown += 1,
    }
    stats.source = Some(decision.source.label());
    decision
}

#[cfg(test)]
/// Also the fixture of `output::rate` (the same proxy, so one copy).
pub(crate) mod tests {
    use super::*;
    use crate::netns::kernel_state::{FdbEntry, Link, Neighbour, Route};

    /// The proxy site, index 0.
    fn at(s: &KernelState) -> SiteView<'_> {
        SiteView {
            index: 0,
            label: "proxy-a",
            role: Role::Proxy,
            state: s,
        }
    }

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

    fn link(index: u32, name: &str, master: Option<u32>) -> (u32, Link) {
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

    fn pkt(ts: u64, ifindex: u32, dir: Dir, egress: bool, eth_dst: Mac) -> Packet {
        let (vip, client) = (ip("20.0.0.1"), ip("169.254.100.150"));
        let (src, sport, dst, dport) = if egress {
            (vip, 4000, client, 35000)
        } else {
            (client, 35000, vip, 4000)
        };
        Packet {
            ts_ns: ts,
            ifindex,
            dir,
            proto: 6,
            src,
            dst,
            sport,
            dport,
            len: 60,
            tcp_flags: 0x10,
            eth_src: [0; 6],
            eth_dst,
            vlan: Default::default(),
            mark: 0,
            hash: 0,
            frag: None,
            snap: None,
        }
    }

    /// One egress packet through the proxy to frontend `mac` on `port`.
    fn egress(t: &mut FlowTable, s: &KernelState, ts: u64, mac: Mac, port: u32) -> Vec<Hop> {
        [
            pkt(ts, TO_TARGET, Dir::Ingress, true, MAC_BR),
            pkt(ts + 1, BR, Dir::Ingress, true, MAC_BR),
            pkt(ts + 2, BR, Dir::Egress, true, mac),
            pkt(ts + 3, port, Dir::Egress, true, mac),
        ]
        .into_iter()
        .filter_map(|p| t.on_packet(p, &at(s)))
        .collect()
    }

    #[test]
    fn both_directions_are_one_flow_and_the_routed_hop_names_the_next_hop() {
        let s = proxy();
        let mut t = FlowTable::new([ip("20.0.0.1")]);
        let h = t
            .on_packet(pkt(100, TO_A, Dir::Ingress, false, MAC_A), &at(&s))
            .unwrap();
        assert_eq!(
            (h.path, h.kind, h.rel_ns),
            (PathDir::Ingress, HopKind::Port, 0)
        );
        t.on_packet(pkt(110, TO_TARGET, Dir::Egress, false, MAC_A), &at(&s));
        let hops = egress(&mut t, &s, 200, MAC_B, TO_B);
        assert_eq!(hops.len(), 4);
        assert!(hops
            .iter()
            .all(|h| h.flow_id == 1 && h.path == PathDir::Egress));
        assert_eq!(hops[2].nexthop, Some(ip("172.16.0.5")));
        assert_eq!(hops[2].rel_ns, 102);
        assert_eq!(hops[0].nexthop, None);

        let [sum] = t.summaries(&[&s]).try_into().unwrap();
        assert_eq!((sum.ingress_packets, sum.egress_packets), (1, 1));
        assert_eq!(sum.ingress_port.as_deref(), Some("conduit-a.-3150"));
        let nh = sum.nexthop().unwrap();
        assert_eq!(
            (nh.ip, nh.port.as_deref()),
            (Some(ip("172.16.0.5")), Some("conduit-a.-6496"))
        );
        assert!(sum.consistent);
        assert_eq!((sum.table, sum.nexthop_in_route), (Some(7), Some(true)));
        assert_eq!(sum.candidates.len(), 2);
    }

    #[test]
    fn a_flow_split_over_two_next_hops_is_not_consistent() {
        let s = proxy();
        let mut t = FlowTable::new([ip("20.0.0.1")]);
        egress(&mut t, &s, 10, MAC_A, TO_A);
        egress(&mut t, &s, 20, MAC_B, TO_B);
        egress(&mut t, &s, 30, MAC_B, TO_B);
        let [sum] = t.summaries(&[&s]).try_into().unwrap();
        assert!(!sum.consistent);
        assert_eq!(sum.nexthop_in_route, None);
        let counts: Vec<(Option<IpAddr>, u64)> =
            sum.nexthops.iter().map(|n| (n.ip, n.packets)).collect();
        assert_eq!(
            counts,
            vec![(Some(ip("172.16.0.3")), 1), (Some(ip("172.16.0.5")), 2)]
        );
    }

    /// Fragments of one datagram routed to `macs` in turn, at the proxy's routed hop.
    fn fragments(t: &mut FlowTable, s: &KernelState, ts: u64, id: u32, macs: &[Mac]) {
        for (i, mac) in macs.iter().enumerate() {
            let mut p = pkt(ts + i as u64, BR, Dir::Egress, true, *mac);
            p.frag = Some(crate::events::Frag {
                id,
                offset: 1480 * i as u16,
                more: i + 1 < macs.len(),
                orphan: false,
            });
            t.on_packet(p, &at(s));
        }
    }

    #[test]
    fn a_datagram_whose_fragments_took_two_next_hops_is_flagged_split() {
        let s = proxy();
        let mut t = FlowTable::new([ip("20.0.0.1")]);
        fragments(&mut t, &s, 10, 0x11, &[MAC_A, MAC_A, MAC_A]);
        fragments(&mut t, &s, 20, 0x12, &[MAC_A, MAC_B, MAC_A]);
        let mut orphan = pkt(30, TO_TARGET, Dir::Ingress, true, MAC_BR);
        orphan.frag = Some(crate::events::Frag {
            id: 0x13,
            offset: 1480,
            more: false,
            orphan: true,
        });
        t.on_packet(orphan, &at(&s));
        let [sum] = t.summaries(&[&s]).try_into().unwrap();
        assert_eq!(
            sum.fragments,
            Some(FragSummary {
                routed: 6,
                datagrams: 2,
                split: 1,
                split_ids: vec![0x12],
                orphans: 1,
            })
        );
        // A flow without fragments has no fragment summary.
        let mut t = FlowTable::new([ip("20.0.0.1")]);
        egress(&mut t, &s, 10, MAC_A, TO_A);
        let [sum] = t.summaries(&[&s]).try_into().unwrap();
        assert_eq!(sum.fragments, None);
    }

    #[test]
    fn a_next_hop_outside_the_vip_table_is_flagged() {
        let mut s = proxy();
        s.neighbours.push(Neighbour {
            ip: ip("172.16.0.9"),
            mac: [9; 6],
            ifindex: BR,
        });
        let mut t = FlowTable::new([ip("20.0.0.1")]);
        egress(&mut t, &s, 10, [9; 6], TO_A);
        let [sum] = t.summaries(&[&s]).try_into().unwrap();
        assert_eq!(sum.nexthop_in_route, Some(false));
    }

    #[test]
    fn unknown_mac_and_foreign_packets() {
        let s = proxy();
        let mut t = FlowTable::new([ip("20.0.0.1")]);
        let hops = egress(&mut t, &s, 10, [7; 6], TO_A);
        assert!(hops[2].nexthop_unknown);
        let mut other = pkt(1, BR, Dir::Ingress, false, MAC_BR);
        other.dst = ip("20.0.0.2");
        assert!(t.on_packet(other, &at(&s)).is_none());
        assert!(t
            .on_packet(pkt(1, 99, Dir::Ingress, false, MAC_BR), &at(&s))
            .is_none());
    }

    /// The proxy's successful egress lookup in table 7 (the VIP's table in `proxy()`).
    fn lookup_table_7() -> FibLookup {
        FibLookup {
            ts_ns: 5,
            table: 7,
            err: 0,
            iif: BR as i32,
            oif: 0,
            mark: 0,
            proto: 6,
            src: ip("20.0.0.1"),
            dst: ip("169.254.100.150"),
            sport: 4000,
            dport: 35000,
            gw: ip("172.16.0.3"),
            dev: "bridge0".into(),
        }
    }

    #[test]
    fn fib_lookup_gets_the_rule_that_selected_its_table() {
        let s = proxy();
        let mut t = FlowTable::new([ip("20.0.0.1")]);
        let f = lookup_table_7();
        let r = t.on_fib(f.clone(), &at(&s)).unwrap();
        assert_eq!((r.path, r.rule.unwrap().priority), (PathDir::Egress, 32765));
        let r = t
            .on_fib(
                FibLookup {
                    table: 255,
                    err: -11,
                    ..f
                },
                &at(&s),
            )
            .unwrap();
        assert!(r.rule.is_none());
    }

    /// A successful lookup after the flow's last routed packet (its packet delivered or
    /// dropped, never routed out) does not rename the flow's table.
    #[test]
    fn the_summary_names_the_table_that_routed_a_packet_out() {
        let s = proxy();
        let mut t = FlowTable::new([ip("20.0.0.1")]);
        let f = lookup_table_7();
        t.on_fib(f.clone(), &at(&s));
        egress(&mut t, &s, 10, MAC_A, TO_A);
        t.on_fib(
            FibLookup {
                ts_ns: 20,
                table: 255,
                ..f
            },
            &at(&s),
        );
        let [sum] = t.summaries(&[&s]).try_into().unwrap();
        assert_eq!(sum.table, Some(7));
    }

    #[test]
    fn the_routed_hop_predicts_from_the_skb_l4_hash_under_policy_1() {
        let s = proxy();
        let mut t = FlowTable::new([ip("20.0.0.1")]);
        // Equal weights: hashes below 2^31 (>> 1: below 2^30) select the first next-hop.
        let mut hops = Vec::new();
        for (ts, hash, mac, port) in [
            (10, 0x7fff_0000u32, MAC_A, TO_A),
            (20, 0x8000_0000, MAC_A, TO_A),
        ] {
            let mut ps = [
                pkt(ts, BR, Dir::Ingress, true, MAC_BR),
                pkt(ts + 1, BR, Dir::Egress, true, mac),
                pkt(ts + 2, port, Dir::Egress, true, mac),
            ];
            for p in &mut ps {
                p.hash = hash;
            }
            hops.extend(ps.into_iter().filter_map(|p| t.on_packet(p, &at(&s))));
        }
        let d1 = hops[1].decision.clone().unwrap();
        assert_eq!(
            (d1.table, d1.source.clone()),
            (Some(7), HashSource::SkbL4Hash)
        );
        assert_eq!(d1.predicted, Some(ip("172.16.0.3")));
        assert_eq!(d1.agrees(), Some(true));
        assert!(d1.candidates_changed);
        let d2 = hops[4].decision.clone().unwrap();
        assert_eq!(d2.predicted, Some(ip("172.16.0.5")));
        assert_eq!(d2.agrees(), Some(false));
        assert!(!d2.candidates_changed);
        let [sum] = t.summaries(&[&s]).try_into().unwrap();
        assert_eq!((sum.predictions.agree, sum.predictions.disagree), (1, 1));
    }

    #[test]
    fn policy_3_says_why_it_cannot_predict_and_a_kernel_hash_wins() {
        let mut s = proxy();
        s.hash_policy = [Some(3), Some(3)];
        let mut t = FlowTable::new([ip("20.0.0.1")]);
        let hops = egress(&mut t, &s, 10, MAC_B, TO_B);
        let d = hops[2].decision.clone().unwrap();
        assert_eq!(d.agrees(), None);
        assert!(
            d.source.label().contains("policy 3"),
            "{}",
            d.source.label()
        );

        t.on_hash(HashSample {
            ts_ns: 99,
            hash: 1 << 30,
            src: ip("20.0.0.1"),
            dst: ip("169.254.100.150"),
            sport: 4000,
            dport: 35000,
            proto: 6,
            hook: "fexit",
        });
        let hops = egress(&mut t, &s, 100, MAC_B, TO_B);
        let d = hops[2].decision.clone().unwrap();
        assert_eq!(d.source, HashSource::Kernel { hook: "fexit" });
        assert_eq!(d.agrees(), Some(true));
    }

    #[test]
    fn a_mac_the_fdb_does_not_know_is_flooded_not_given_a_port() {
        let mut s = proxy();
        s.fdb.clear();
        let mut t = FlowTable::new([ip("20.0.0.1")]);
        egress(&mut t, &s, 10, MAC_B, TO_B);
        let [sum] = t.summaries(&[&s]).try_into().unwrap();
        let nh = sum.nexthop().unwrap();
        assert_eq!(
            (nh.ip, nh.port.as_deref(), nh.flooded),
            (Some(ip("172.16.0.5")), None, true)
        );
    }

    /// A `HOPS` entry as the TC program writes it, for the flow of `pkt`.
    fn counted(
        ifindex: u32,
        dir: u8,
        egress: bool,
        eth_dst: Mac,
        packets: u64,
    ) -> (HopKey, HopCount) {
        use tracer_common::v4_mapped;
        let (vip, client) = (v4_mapped([20, 0, 0, 1]), v4_mapped([169, 254, 100, 150]));
        let (src, sport, dst, dport) = if egress {
            (vip, 4000, client, 35000)
        } else {
            (client, 35000, vip, 4000)
        };
        let key = HopKey {
            src,
            dst,
            sport,
            dport,
            ifindex,
            eth_dst,
            proto: tracer_common::PROTO_TCP,
            dir,
        };
        let count = HopCount {
            packets,
            bytes: packets * 60,
            first_ns: 1_000,
            last_ns: 9_000,
        };
        (key, count)
    }

    /// The kernel's counts win over the records: a flow whose records were partly lost
    /// (one routed packet recorded, to next-hop A) is summarised with the counted packets,
    /// and a next-hop no record showed (B) is named from the state.
    #[test]
    fn kernel_counts_replace_record_counts_and_name_unrecorded_next_hops() {
        use tracer_common::{DIR_EGRESS, DIR_INGRESS};
        let s = proxy();
        let mut t = FlowTable::new([ip("20.0.0.1")]);
        egress(&mut t, &s, 1_000, MAC_A, TO_A);
        t.absorb(
            &at(&s),
            &[
                counted(TO_A, DIR_INGRESS, false, [0; 6], 7),
                counted(TO_TARGET, DIR_INGRESS, true, [0; 6], 12),
                counted(BR, DIR_EGRESS, true, MAC_A, 10),
                counted(BR, DIR_EGRESS, true, MAC_B, 2),
            ],
        );
        let sum = &t.summaries(&[&s])[0];
        assert!(sum.counted);
        assert_eq!((sum.ingress_packets, sum.egress_packets), (7, 12));
        assert_eq!((sum.ingress_records, sum.egress_records), (0, 1));
        let hops: Vec<(Option<IpAddr>, u64, Option<String>)> = sum
            .nexthops
            .iter()
            .map(|n| (n.ip, n.packets, n.port.clone()))
            .collect();
        assert_eq!(
            hops,
            vec![
                (Some(ip("172.16.0.3")), 10, Some("conduit-a.-3150".into())),
                (Some(ip("172.16.0.5")), 2, Some("conduit-a.-6496".into())),
            ]
        );
        assert!(!sum.consistent);
        // A flow the records never showed comes from its counts alone, and ends as others do.
        let mut t = FlowTable::new([ip("20.0.0.1")]);
        t.absorb(&at(&s), &[counted(BR, DIR_EGRESS, true, MAC_B, 5)]);
        let ended = t.expire(1_000_000_000_000, 1, &[&s]);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].egress_packets, 5);
        assert_eq!(
            t.take_ended_hops().len(),
            1,
            "its counter entry is to be forgotten"
        );
    }

    #[test]
    fn distribution_counts_flows_and_packets_per_next_hop() {
        let s = proxy();
        let mut t = FlowTable::new([ip("20.0.0.1")]);
        for (i, mac) in [MAC_A, MAC_B, MAC_B].into_iter().enumerate() {
            for p in [
                pkt(10 * i as u64, BR, Dir::Egress, true, mac),
                pkt(10 * i as u64 + 1, TO_A, Dir::Egress, true, mac),
            ] {
                let mut p = p;
                p.dport = 40000 + i as u16;
                t.on_packet(p, &at(&s));
            }
        }
        let [d] = t.distribution(&t.summaries(&[&s])).try_into().unwrap();
        assert_eq!(d.flows, 3);
        let got: Vec<(Option<IpAddr>, u64, u64)> = d
            .shares
            .iter()
            .map(|sh| (sh.nexthop, sh.flows, sh.packets))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(ip("172.16.0.3")), 1, 1),
                (Some(ip("172.16.0.5")), 2, 2)
            ]
        );
    }

    #[test]
    fn closed_and_idle_flows_expire_and_still_count_in_the_distribution() {
        let s = proxy();
        let mut t = FlowTable::new([ip("20.0.0.1")]);
        let mut fin = pkt(1_000, BR, Dir::Egress, true, MAC_A);
        fin.tcp_flags = TCP_FIN;
        t.on_packet(fin, &at(&s));
        // A half-close is not the end: without the other FIN the flow stays.
        assert!(t
            .expire(2_000 + CLOSED_LINGER_NS, 10 * CLOSED_LINGER_NS, &[&s])
            .is_empty());
        let mut fin_in = pkt(1_000, TO_A, Dir::Ingress, false, MAC_BR);
        fin_in.tcp_flags = TCP_FIN;
        t.on_packet(fin_in, &at(&s));
        let mut other = pkt(1_000, BR, Dir::Egress, true, MAC_B);
        other.dport = 40000;
        t.on_packet(other, &at(&s));
        assert!(t
            .expire(1_000 + CLOSED_LINGER_NS, 10 * CLOSED_LINGER_NS, &[&s])
            .is_empty());
        let ended = t.expire(2_000 + CLOSED_LINGER_NS, 10 * CLOSED_LINGER_NS, &[&s]);
        assert_eq!(ended.len(), 1, "the closed flow ends after the linger");
        assert_eq!(t.flows.len(), 1);
        let idle = t.expire(2_000 + 10 * CLOSED_LINGER_NS, 10 * CLOSED_LINGER_NS, &[&s]);
        assert_eq!(
            (idle.len(), t.flows.len()),
            (1, 0),
            "the open flow ends when idle"
        );
        let [d] = t.distribution(&[]).try_into().unwrap();
        assert_eq!(d.flows, 2);
    }

    #[test]
    fn fwmark_rules_are_attributed_by_the_packet_mark() {
        let mut s = proxy();
        s.rules.push(Rule {
            priority: 100,
            src: None,
            dst: None,
            fwmark: Some(0x1389),
            fwmask: None,
            iif: None,
            other_selectors: false,
            table: Some(5001),
            v6: false,
        });
        let mut t = FlowTable::new([ip("20.0.0.1")]);
        let f = FibLookup {
            ts_ns: 5,
            table: 5001,
            err: 0,
            iif: BR as i32,
            oif: 0,
            mark: 0x1389,
            proto: 6,
            src: ip("169.254.100.150"),
            dst: ip("20.0.0.1"),
            sport: 35000,
            dport: 4000,
            gw: ip("172.16.0.6"),
            dev: "conduit".into(),
        };
        let r = t.on_fib(f.clone(), &at(&s)).unwrap();
        assert_eq!(r.rule.unwrap().selector(), "from all fwmark 0x1389");
        // Without the mark the fwmark rule does not match, and no rule points to 5001.
        assert!(t
            .on_fib(FibLookup { mark: 0, ..f }, &at(&s))
            .unwrap()
            .rule
            .is_none());
    }
}
