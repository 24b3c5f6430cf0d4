//! What the flow table keeps per flow between events.
use std::collections::BTreeMap;

use tracer_common::HopKey;
use tracer_records::Inexact;

use crate::{
    events::Mac,
    netns::kernel_state::{NextHop, Rule},
};

use super::{NextHopUse, PathSeen, PredictionStats};

/// A flow's exact packet counts through the proxy, from the kernel's per-hop counters.
#[derive(Clone, Debug, Default)]
pub(super) struct Counted {
    pub(super) ingress_packets: u64,
    pub(super) ingress_port: Option<String>,
    pub(super) egress_packets: u64,
    /// Per next-hop MAC: packets, first packet's kernel time, the routed interface.
    pub(super) by_mac: Vec<(Mac, u64, u64, u32)>,
}

#[derive(Clone, Debug, Default)]
pub(super) struct FlowState {
    pub(super) id: u32,
    pub(super) first_ts: u64,
    /// Records seen (the counts when no kernel counters were read).
    pub(super) ingress_packets: u64,
    pub(super) ingress_port: Option<String>,
    pub(super) egress_packets: u64,
    pub(super) nexthops: Vec<NextHopUse>,
    pub(super) tables: Vec<u32>,
    /// The latest successful lookup of this flow's egress: its table and rule.
    pub(super) last_lookup: Option<(u32, Option<Rule>)>,
    /// The lookup behind the latest routed egress packet (a lookup whose packet never
    /// left, e.g. one delivered or dropped, does not name the flow's table).
    pub(super) routed_lookup: Option<(u32, Option<Rule>)>,
    pub(super) shown_candidates: Option<Vec<NextHop>>,
    /// (ts, hash, hook) from an fexit/kretprobe on the kernel's hash function, oldest
    /// first: two packets of a flow routed at once on two CPUs each leave a sample before
    /// either reaches its egress hop, and each routed hop takes the oldest (one slot let
    /// the second sample overwrite the first: one packet got the other's hash, the other
    /// none).
    pub(super) kernel_hash: std::collections::VecDeque<(u64, u32, &'static str)>,
    pub(super) predictions: PredictionStats,
    pub(super) drops: u64,
    pub(super) last_drop: Option<(String, String, String)>,
    /// Latest event of the flow, for expiry.
    pub(super) last_ts: u64,
    /// The proxy site whose state explains the flow's routing (its latest proxy event).
    pub(super) proxy_site: Option<usize>,
    /// A FIN was seen toward the VIP / from the VIP, or an RST: when both FINs (or an
    /// RST) were seen the flow is ending; a half-close alone is not the end.
    pub(super) fin_in: bool,
    pub(super) fin_out: bool,
    pub(super) rst: bool,
    /// Exact counts from the kernel, when they were read: they win over the records.
    pub(super) counted: Option<Counted>,
    /// The flow's entries in each site's counter map, to forget when the flow ends.
    pub(super) hop_keys: Vec<(usize, HopKey)>,
    pub(super) frags: FragState,
    /// The pods the flow crossed (frontends, load balancer, target), beyond the proxy.
    pub(super) path: PathSeen,
    /// The node's losses as known when the flow was first seen: more by its summary and
    /// its own figures may be short.
    pub(super) loss_at_start: Loss,
    /// Summarised early by the cap on live flows (`--max-flows`).
    pub(super) evicted_early: bool,
    /// Kernel hash samples dropped, `kernel_hash` full.
    pub(super) hash_samples_dropped: u64,
}

/// What the node lost so far: records (ring buffer full) and per-hop counter entries (LRU
/// map full), as last read from the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loss {
    pub records_lost: u64,
    pub counters_evicted: u64,
}

/// Datagrams followed per flow for the split check; beyond it new ones are not.
pub(super) const FRAG_DATAGRAMS_KEPT: usize = 4096;

/// A flow's fragments as its records showed them.
#[derive(Clone, Debug, Default)]
pub(super) struct FragState {
    /// Fragment records on the proxy's routed egress hop.
    pub(super) routed: u64,
    /// Fragment records whose first fragment was not seen (ports unknown), any hop.
    pub(super) orphans: u64,
    /// Per datagram id: the next-hop MACs its fragments took, first one first.
    pub(super) datagrams: BTreeMap<u32, Vec<Mac>>,
    /// Datagrams past `FRAG_DATAGRAMS_KEPT`, not followed.
    pub(super) datagrams_not_followed: u64,
}

impl FlowState {
    pub(super) fn closed(&self) -> bool {
        self.rst || (self.fin_in && self.fin_out)
    }

    /// Why its figures are not exact, given the node's losses now (none: exact).
    pub(super) fn inexact(&self, now: Loss) -> Vec<Inexact> {
        let mut why = Vec::new();
        if now.counters_evicted > self.loss_at_start.counters_evicted {
            why.push(Inexact::CountersEvicted);
        }
        if self.evicted_early {
            why.push(Inexact::FlowEvictedEarly);
        }
        if now.records_lost > self.loss_at_start.records_lost {
            why.push(Inexact::RecordsLost);
        }
        why
    }
}
