//! The routing decision behind a routed packet: table, rule, candidates, hash, prediction.
use std::net::IpAddr;

use crate::{
    correlate::multipath::{self, HashSource},
    events::Packet,
    netns::kernel_state::KernelState,
};

use super::{Decision, FlowState, HASH_SAMPLE_MAX_AGE_NS};

/// The decision behind a routed packet. The table and rule come from the flow's latest
/// fib lookup when the tracepoint saw it, else from the VIP's source rule.
pub(super) fn decide(
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
