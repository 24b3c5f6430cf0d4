//! The whole path one flow took, pod by pod: the frontend its requests entered by, the
//! target the frontend's load balancer chose for it (the mark, the fwmark rule and table,
//! the target address), the proxy port toward that target, the target pod that got it, and
//! on the way back the frontend its replies left by and that frontend's next-hop toward the
//! gateway. Filled from hop records and, where the records were left out (`--records`), from
//! the kernel's per-hop counters; the proxy's own ECMP account stays in `FlowState`.
use std::{collections::VecDeque, net::IpAddr};

use crate::{
    discover::Role,
    events::{Dir, FibLookup},
    netns::kernel_state::Rule,
};

use super::{HopKind, PathDir};

/// Marks a flow's load-balancer decisions may change through before the rest is not kept
/// (a target leaving moves a flow once; each change is one entry).
pub(super) const LB_CHANGES_KEPT: usize = 8;
/// Requests of one flow waiting in the load balancer's queue that are followed; nfqlb
/// returns a queue's packets in order, several at once when they pile up.
pub(super) const QUEUED_KEPT: usize = 32;

/// Where the flow was seen, by pod (labels as the output names the namespaces).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PathSeen {
    /// The frontend and its interface the requests entered by (the first seen).
    pub frontend_in: Option<(String, String)>,
    /// Kernel times of the recorded requests that entered `frontend_in` and have not been
    /// routed yet, oldest first: each lookup after the load balancer's queue is the oldest
    /// one's (the queue keeps a flow's packets in order).
    queued: VecDeque<u64>,
    /// The load balancer's decisions in the order they were made; more than one when the
    /// flow moved to another target (a target left nfqlb's table).
    pub lb: Vec<LbChoice>,
    /// The proxy and its bridge port the requests left toward the target by.
    pub proxy_to_target: Option<(String, String)>,
    /// The target pod and interface the requests reached.
    pub target: Option<(String, String)>,
    /// Requests that reached the target, as counted by the kernel (0: not read) and as
    /// recorded.
    pub target_packets: u64,
    pub target_records: u64,
    /// The frontend the replies left by, its interface and the next-hop toward the gateway.
    pub frontend_out: Option<(String, String, Option<IpAddr>)>,
    /// What the bounds above left out: queued requests forgotten (`QUEUED_KEPT`) and load
    /// balancer changes not kept (`LB_CHANGES_KEPT`).
    pub(super) queued_dropped: u64,
    pub(super) lb_not_kept: u64,
}

/// A frontend's choice of target for the flow: the route lookup of its request, after the
/// load balancer set the mark.
#[derive(Clone, Debug, PartialEq)]
pub struct LbChoice {
    pub netns: String,
    /// Kernel time of the (first) lookup with this mark.
    pub ts_ns: u64,
    pub mark: u32,
    /// The fwmark rule that selected the table, when the frontend has one.
    pub rule: Option<Rule>,
    pub table: u32,
    /// The target's address (the table's gateway) and the interface toward it.
    pub target_ip: IpAddr,
    pub dev: String,
    /// From the request entering the frontend to its lookup: the time in the load
    /// balancer's queue, when the lookup ran after the ingress hook's softirq.
    pub queued_ns: Option<u64>,
    /// The lookup ran after the ingress hook, with a mark the ingress hook did not see:
    /// netfilter (nfqlb's NFQUEUE verdict) set it.
    pub marked_after_ingress: bool,
}

impl PathSeen {
    /// Takes in one hop of the flow seen in a pod other than the proxy's ECMP account.
    #[allow(clippy::too_many_arguments)]
    pub fn on_hop(
        &mut self,
        role: Role,
        label: &str,
        ifname: &str,
        path: PathDir,
        kind: HopKind,
        dir: Dir,
        ts_ns: u64,
        nexthop: Option<IpAddr>,
    ) {
        match (role, path, kind, dir) {
            (Role::Frontend, PathDir::Ingress, _, Dir::Ingress) => {
                let first = self
                    .frontend_in
                    .get_or_insert_with(|| (label.to_string(), ifname.to_string()));
                if first.0 == label {
                    if self.queued.len() == QUEUED_KEPT {
                        self.queued.pop_front();
                        self.queued_dropped += 1;
                    }
                    self.queued.push_back(ts_ns);
                }
            }
            (Role::Frontend, PathDir::Egress, _, Dir::Egress) => {
                // The latest frontend the replies left by; a hop whose next-hop the
                // neighbour table did not name keeps the one that frontend named before.
                let before = self
                    .frontend_out
                    .as_ref()
                    .filter(|(l, _, _)| l == label)
                    .and_then(|f| f.2);
                self.frontend_out =
                    Some((label.to_string(), ifname.to_string(), nexthop.or(before)));
            }
            (Role::Proxy, PathDir::Ingress, HopKind::Port, Dir::Egress) => {
                self.proxy_to_target
                    .get_or_insert_with(|| (label.to_string(), ifname.to_string()));
            }
            (Role::Target, PathDir::Ingress, _, Dir::Ingress) => {
                let t = self
                    .target
                    .get_or_insert_with(|| (label.to_string(), ifname.to_string()));
                if t.0 == label {
                    self.target_records += 1;
                }
            }
            _ => {}
        }
    }

    /// Takes in a route lookup of the flow's request in a frontend: its load balancer's
    /// choice. A lookup with the mark already known adds nothing; a new mark is a new
    /// choice (the flow moved). Returns the time the request spent between entering the
    /// frontend and this lookup, when the lookup ran after the ingress hook's softirq.
    pub fn on_lookup(&mut self, label: &str, f: &FibLookup, rule: Option<Rule>) -> Option<u64> {
        if f.err != 0 || f.mark == 0 {
            return None;
        }
        let from_here = self.frontend_in.as_ref().is_some_and(|(l, _)| l == label);
        let queued_ns = if f.after_ingress && from_here {
            self.queued
                .pop_front()
                .and_then(|entered| f.ts_ns.checked_sub(entered))
        } else {
            None
        };
        let known = self
            .lb
            .last()
            .is_some_and(|c| c.mark == f.mark && c.netns == label);
        if !known && self.lb.len() < LB_CHANGES_KEPT {
            self.lb.push(LbChoice {
                netns: label.to_string(),
                ts_ns: f.ts_ns,
                mark: f.mark,
                rule,
                table: f.table,
                target_ip: f.gw,
                dev: f.dev.clone(),
                queued_ns,
                marked_after_ingress: f.after_ingress,
            });
        } else if !known {
            self.lb_not_kept += 1;
        }
        queued_ns
    }

    /// Takes in one pod's kernel counter for the flow (cumulative: the latest read wins),
    /// for what the records left out.
    pub fn on_counted(
        &mut self,
        role: Role,
        label: &str,
        ifname: &str,
        path: PathDir,
        dir: Dir,
        packets: u64,
    ) {
        match (role, path, dir) {
            (Role::Target, PathDir::Ingress, Dir::Ingress) => {
                let t = self
                    .target
                    .get_or_insert_with(|| (label.to_string(), ifname.to_string()));
                if t.0 == label {
                    self.target_packets = packets;
                }
            }
            (Role::Frontend, PathDir::Ingress, Dir::Ingress) => {
                self.frontend_in
                    .get_or_insert_with(|| (label.to_string(), ifname.to_string()));
            }
            (Role::Frontend, PathDir::Egress, Dir::Egress) => {
                self.frontend_out
                    .get_or_insert_with(|| (label.to_string(), ifname.to_string(), None));
            }
            _ => {}
        }
    }

    /// The requests entered by one frontend and the replies left by another.
    pub fn asymmetric(&self) -> bool {
        match (&self.frontend_in, &self.frontend_out) {
            (Some((a, _)), Some((b, _, _))) => a != b,
            _ => false,
        }
    }
}
