//! The flow table: the one place where events are correlated.
//!
//! Both directions of a connection are one flow, keyed by (protocol, VIP, VIP port, client,
//! client port). Each packet hop is labelled with its path relative to the VIP (`ingress`:
//! the VIP is the destination, `egress`: the VIP is the source). On the egress path the
//! *routed hop* (the packet leaving the L3 interface, bridge0 in a Meridio proxy) names the
//! next-hop the kernel really chose: its Ethernet destination, mapped back to an IP through
//! the neighbour table. The bridge port the same frame then leaves by names the frontend link.
//! What a flow adds up to at the end (its summary, and the VIP's distribution over
//! next-hops) is worked out in [`summary`].
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use tracer_common::{HopCount, HopKey};

use crate::{
    discover::Role,
    events::{Dir, Drop, FibLookup, HashSample, HopCounted, Packet},
    netns::kernel_state::KernelState,
};

mod cap;
mod decide;
mod hop;
mod overflow;
mod path;
mod state;
mod summary;

use decide::decide;
pub use hop::*;
pub use overflow::Overflow;
pub use state::Loss;
use state::*;

pub use path::{LbChoice, PathSeen};

#[cfg(test)]
pub use summary::FragSummary;
pub use summary::{add_lb_tables, Distribution, FlowSummary, LbSlot, LbTable, Share, TargetShare};
use summary::{add_share, summarize};

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
    /// Live flows kept at most (`--max-flows`, see [`cap`]); 0 = no cap.
    max_flows: usize,
    /// Flows the cap took out, summarised at the next expiry.
    evicted: Vec<(FlowKey, FlowState)>,
    flows_evicted: u64,
    /// The node's losses as last read ([`FlowTable::note_loss`]).
    loss: Loss,
    /// The per-flow bounds' overflows of flows that left the table.
    overflow_ended: Overflow,
    /// Flows summarised since the last full read of the counters, and their last packet's
    /// time: a counter entry of theirs no newer is what they already had (its deletion
    /// queued), not a new flow. Emptied after each full read ([`FlowTable::counts_read`]),
    /// so it holds at most the flows that ended between two reads.
    ended_at: HashMap<FlowKey, u64>,
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
            self.make_room();
            self.next_id += 1;
            let state = FlowState {
                id: self.next_id,
                first_ts: ts,
                loss_at_start: self.loss,
                ..Default::default()
            };
            self.flows.insert(key.clone(), state);
        }
        let flow = self.flows.get_mut(key).expect("inserted above");
        flow.last_ts = flow.last_ts.max(ts);
        // Events of several pods (and the kernel's counters, read live while records wait
        // out the reorder window) can name a flow before its earliest packet is handled:
        // relative times are from the earliest packet, whichever came in first.
        flow.first_ts = flow.first_ts.min(ts);
        flow
    }

    /// The node's records lost and counter entries evicted so far: a flow live while
    /// either grew says its own figures may be short.
    pub fn note_loss(&mut self, loss: Loss) {
        self.loss = loss;
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
                self.count_ended(&f);
                self.ended_at.insert(k.clone(), f.last_ts);
                self.ended_hops.extend_from_slice(&f.hop_keys);
                Some(summarize(k, &f, states, self.loss))
            })
            .collect();
        for s in &out {
            add_share(&mut self.ended, s);
        }
        out.extend(self.take_evicted(states));
        out.sort_by_key(|s| s.flow_id);
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
            // A summarised flow's own counts, read before their deletion: not a new flow
            // (recreating it would push a live one out of a full table, and so on).
            if self.ended_at.get(&key).is_some_and(|&end| h.last_ns <= end) {
                self.ended_hops.push((site.index, *raw));
                continue;
            }
            let flow = self.flow(&key, h.first_ns);
            flow.last_ts = flow.last_ts.max(h.last_ns);
            if !flow.hop_keys.contains(&(site.index, *raw)) {
                flow.hop_keys.push((site.index, *raw));
            }
            let Some(link) = state.link(h.ifindex) else {
                continue;
            };
            if !proxy {
                flow.path
                    .on_counted(site.role, site.label, &link.name, path, h.dir, h.packets);
                continue;
            }
            flow.proxy_site.get_or_insert(site.index);
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

    /// Every site's counters were read (after [`FlowTable::absorb`] for each): the ended
    /// flows' entries in them are queued for deletion, so they need not be told apart any
    /// more.
    pub fn counts_read(&mut self) {
        self.ended_at.clear();
    }

    /// Next-hop distribution per VIP over every flow seen, expired ones included.
    pub fn distribution(&self, live: &[FlowSummary]) -> Vec<Distribution> {
        let mut out = self.ended.clone();
        for s in live {
            add_share(&mut out, s);
        }
        for d in &mut out {
            d.shares.sort_by_key(|sh| sh.nexthop);
            d.targets.sort_by(|a, b| a.netns.cmp(&b.netns));
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
        // The routed hop of a frontend names its next-hop, for the eye and the path.
        if !proxy && kind == HopKind::L3 && p.dir == Dir::Egress {
            nexthop = state.neighbour_ip(p.ifindex, &p.eth_dst, p.dst.is_ipv6());
        }
        flow.path.on_hop(
            site.role, site.label, &link.name, path, kind, p.dir, p.ts_ns, nexthop,
        );
        match (path, kind, p.dir) {
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
                        None => flow.frags.datagrams_not_followed += 1,
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
            let flow = self.flow(&key, h.ts_ns);
            if flow.kernel_hash.len() == KERNEL_HASH_SAMPLES {
                flow.kernel_hash.pop_front();
                flow.hash_samples_dropped += 1;
            }
            flow.kernel_hash.push_back((h.ts_ns, h.hash, h.hook));
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
        let mut queued_ns = None;
        if f.err == 0 {
            if !flow.tables.contains(&f.table) {
                flow.tables.push(f.table);
            }
            if path == PathDir::Egress && site.role == Role::Proxy {
                flow.last_lookup = Some((f.table, rule.clone()));
            }
            if path == PathDir::Ingress && site.role == Role::Frontend {
                queued_ns = flow.path.on_lookup(site.label, &f, rule.clone());
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
            queued_ns,
        })
    }

    /// One summary per flow, in the order flows were first seen; `state` should be fresh.
    pub fn summaries(&self, states: &[&KernelState]) -> Vec<FlowSummary> {
        let mut out: Vec<FlowSummary> = self
            .flows
            .iter()
            .map(|(key, f)| summarize(key, f, states, self.loss))
            .collect();
        out.sort_by_key(|s| s.flow_id);
        out
    }
}

/// The proxy of the tests here and of the JSON rate bench (one copy).
pub(crate) mod fixture;
#[cfg(test)]
mod tests;
