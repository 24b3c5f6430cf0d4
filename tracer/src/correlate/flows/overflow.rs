//! What the flow table's own bounds left out, counted for the output: each bound on what
//! it keeps (live flows, per-flow samples and datagrams, the path's queue and choices) has
//! its overflow here, beside the kernel's (counters evicted, totals without room) the
//! session adds.
use super::{FlowState, FlowTable};

/// Overflows since the start, one per bound (docs/limits.md lists them all).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overflow {
    /// Per-hop counter entries the kernel's LRU map evicted (`--hop-entries`).
    pub hop_counters: u64,
    /// Packets the per-VIP totals map had no room for (16 384 entries).
    pub totals_full: u64,
    /// Flows summarised early, the table of live flows full (`--max-flows`).
    pub flows: u64,
    /// Kernel hash samples dropped, a flow's queue of 8 full.
    pub hash_samples: u64,
    /// Fragmented datagrams not followed for the split check, past 4096 in a flow.
    pub datagrams: u64,
    /// Requests in a load balancer's queue forgotten, past 32 waiting in a flow.
    pub queued: u64,
    /// Load balancer changes of a flow not kept, past 8.
    pub lb_changes: u64,
}

impl Overflow {
    pub fn any(&self) -> bool {
        *self != Overflow::default()
    }
}

/// What a node's `evicted` record says (`tracer merge` reads it back).
impl From<&tracer_records::Evicted> for Overflow {
    fn from(e: &tracer_records::Evicted) -> Overflow {
        Overflow {
            hop_counters: e.count,
            totals_full: e.totals_full,
            flows: e.flows,
            hash_samples: e.hash_samples,
            datagrams: e.datagrams,
            queued: e.queued,
            lb_changes: e.lb_changes,
        }
    }
}

impl FlowTable {
    /// The table's overflows so far, ended flows' and live ones' (the kernel's fields 0).
    pub fn overflow(&self) -> Overflow {
        let mut o = self.overflow_ended;
        o.flows = self.flows_evicted;
        for f in self
            .flows
            .values()
            .chain(self.evicted.iter().map(|(_, f)| f))
        {
            add(&mut o, f);
        }
        o
    }

    /// Keeps a flow's overflows once it leaves the table.
    pub(super) fn count_ended(&mut self, f: &FlowState) {
        add(&mut self.overflow_ended, f);
    }
}

fn add(o: &mut Overflow, f: &FlowState) {
    o.hash_samples += f.hash_samples_dropped;
    o.datagrams += f.frags.datagrams_not_followed;
    o.queued += f.path.queued_dropped;
    o.lb_changes += f.path.lb_not_kept;
}
