//! The kernel's per-VIP totals and node-wide counters, read for the distribution (exact
//! whatever the flows) and for `/metrics`.
use crate::correlate::{
    flows::{FlowSummary, Overflow},
    totals::{self, Total},
};

use super::event_loop::Session;

impl Session<'_> {
    /// The per-VIP totals of every site, named in their sites.
    pub(super) fn read_totals(&self) -> Vec<Total> {
        let raw = match self.attached.node.totals() {
            Ok(t) => t,
            Err(e) => {
                log::warn!("could not read the per-VIP totals: {e:#}");
                return Vec::new();
            }
        };
        raw.iter()
            .filter_map(|(key, count)| {
                // Site numbers count from 1 (0 is the node object's).
                let index = usize::from(key.site).wrapping_sub(1);
                let site = self.attached.sites.get(index)?.as_ref()?;
                totals::name(&site.view(index), key, count)
            })
            .collect()
    }

    /// Brings `/metrics` up to date: the totals, the node's counters, and a sign of life.
    pub(super) fn publish(&mut self) {
        let Some(m) = &self.metrics else {
            return;
        };
        m.totals(&self.read_totals());
        let node = &self.attached.node;
        m.node(
            node.lost().unwrap_or(0),
            node.rsts_consumed().unwrap_or(0),
            node.not_for_host().unwrap_or(0),
            &self.overflow(),
        );
        m.alive();
    }

    /// Every bound's overflow so far: the flow table's and the kernel's.
    pub(super) fn overflow(&self) -> Overflow {
        Overflow {
            hop_counters: self.hops_evicted,
            totals_full: self.attached.node.totals_full().unwrap_or(0),
            ..self.flows.overflow()
        }
    }

    /// Counts a summarised flow's next-hop changes.
    pub(super) fn count_changes(&self, s: &FlowSummary) {
        if let Some(m) = &self.metrics {
            m.nexthop_changes(s.flow.vip, s.nexthops.len().saturating_sub(1) as u64);
        }
    }
}
