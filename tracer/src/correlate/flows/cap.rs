//! The cap on live flows (`--max-flows`): when the table is full, the flows idle longest
//! are taken out, summarised at the next expiry and counted, so a flood of new flows (a
//! SYN flood changing its source port) cannot grow the tracer's memory without bound.
use crate::netns::kernel_state::KernelState;

use super::{add_share, summarize, FlowSummary, FlowTable};

impl FlowTable {
    /// Keeps at most `max` live flows (0: no cap).
    pub fn with_max_flows(mut self, max: usize) -> FlowTable {
        self.max_flows = max;
        self
    }

    /// Makes room before a new flow goes into a full table: an eighth of it at once, the
    /// flows idle longest, so a flood pays for the selection once per many new flows.
    pub(super) fn make_room(&mut self) {
        if self.max_flows == 0 || self.flows.len() < self.max_flows {
            return;
        }
        let n = (self.max_flows / 8).max(1);
        let mut by_age: Vec<_> = self
            .flows
            .iter()
            .map(|(k, f)| (f.last_ts, k.clone()))
            .collect();
        if by_age.len() > n {
            by_age.select_nth_unstable_by_key(n, |(last, _)| *last);
            by_age.truncate(n);
        }
        for (_, key) in by_age {
            if let Some(mut f) = self.flows.remove(&key) {
                f.evicted_early = true;
                self.ended_at.insert(key.clone(), f.last_ts);
                self.ended_hops.extend_from_slice(&f.hop_keys);
                self.evicted.push((key, f));
                self.flows_evicted += 1;
            }
        }
    }

    /// The summaries of the flows the cap took out since the last call; they count in the
    /// distribution as ended flows do.
    pub fn take_evicted(&mut self, states: &[&KernelState]) -> Vec<FlowSummary> {
        let evicted = std::mem::take(&mut self.evicted);
        let out: Vec<FlowSummary> = evicted
            .into_iter()
            .map(|(k, f)| {
                self.count_ended(&f);
                summarize(&k, &f, states, self.loss)
            })
            .collect();
        for s in &out {
            add_share(&mut self.ended, s);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::{fixture::*, SiteView};
    use super::*;
    use crate::{
        discover::Role,
        events::{Dir, Packet},
    };

    /// A SYN toward the VIP from client port `sport`, entering the proxy at `ts`.
    fn syn(ts: u64, sport: u16) -> Packet {
        Packet {
            ts_ns: ts,
            ifindex: TO_TARGET,
            dir: Dir::Egress,
            proto: 6,
            src: ip("169.254.100.150"),
            dst: ip("20.0.0.1"),
            sport,
            dport: 4000,
            len: 60,
            tcp_flags: 0x02,
            eth_src: [0; 6],
            eth_dst: MAC_BR,
            vlan: Default::default(),
            mark: 0,
            hash: 0,
            frag: None,
            snap: None,
        }
    }

    #[test]
    fn a_full_table_summarises_the_flows_idle_longest_and_counts_them() {
        let s = proxy();
        let view = SiteView {
            index: 0,
            label: "proxy-a",
            role: Role::Proxy,
            state: &s,
        };
        let mut t = FlowTable::new([ip("20.0.0.1")]).with_max_flows(16);
        // Port 1 stays busy; every other flow is seen once.
        for i in 0..100u16 {
            t.on_packet(syn(u64::from(i) * 10, 1000 + i), &view);
            t.on_packet(syn(u64::from(i) * 10 + 5, 1), &view);
            assert!(t.flows.len() <= 16, "{} live flows", t.flows.len());
        }
        let evicted = t.overflow().flows;
        assert!(evicted >= 100 + 1 - 16, "{evicted} evicted");
        let early = t.take_evicted(&[&s]);
        assert_eq!(
            early.len() as u64,
            evicted,
            "every evicted flow is summarised"
        );
        assert!(
            early.iter().all(|f| f.flow.client_port != 1),
            "the busy flow is never the one idle longest"
        );
        assert!(
            early
                .iter()
                .all(|f| f.inexact == [tracer_records::Inexact::FlowEvictedEarly]),
            "a flow summarised early says so"
        );
        assert!(t.summaries(&[&s]).iter().all(|f| f.inexact.is_empty()));
        assert!(t.take_evicted(&[&s]).is_empty(), "summarised once");
        // Nothing more is taken out while there is room.
        let live = t.flows.len();
        let mut roomy = FlowTable::new([ip("20.0.0.1")]).with_max_flows(1000);
        for i in 0..100u16 {
            roomy.on_packet(syn(u64::from(i), 2000 + i), &view);
        }
        assert_eq!(roomy.overflow().flows, 0);
        assert!(live <= 16);
    }
}
