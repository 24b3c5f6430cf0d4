//! The records' parts built from what the flow table and the kernel state hold: flow
//! keys, rules and next-hops, a change's own fields, a distribution's shares and tables,
//! and a flow summary with its whole path.
use std::borrow::Cow;

use tracer_records as rec;

use crate::{
    correlate::flows::{
        FlowKey, FlowSummary, LbChoice, LbSlot, LbTable, NextHopUse, PathSeen, Share, TargetShare,
    },
    events::{proto_name, MacText},
    netns::changes::Change,
    netns::kernel_state::{NextHop, Rule},
};

pub(super) fn flow_key<'a>(k: &FlowKey) -> rec::FlowKey<'a> {
    rec::FlowKey {
        proto: Cow::Borrowed(proto_name(k.proto)),
        vip: k.vip,
        vip_port: k.vip_port,
        client: k.client,
        client_port: k.client_port,
    }
}

pub(super) fn hook_reason((hook, reason): &(String, String)) -> rec::HookReason<'_> {
    rec::HookReason {
        hook: Cow::Borrowed(hook),
        reason: Cow::Borrowed(reason),
    }
}

fn candidate(n: &NextHop) -> rec::Candidate {
    rec::Candidate {
        gw: n.gw,
        ifindex: n.ifindex,
        weight: n.weight,
        alive: n.alive,
    }
}

pub(super) fn candidates(c: &[NextHop]) -> Vec<rec::Candidate> {
    c.iter().map(candidate).collect()
}

pub(super) fn rule<'a>(r: &Rule) -> rec::Rule<'a> {
    rec::Rule {
        priority: r.priority,
        selector: Cow::Owned(r.selector()),
        table: r.table,
    }
}

fn mac<'a>(m: &[u8; 6]) -> Cow<'a, str> {
    Cow::Owned(MacText::new(m).as_str().to_string())
}

/// A change's own fields, after `"what"`.
pub(super) fn what(c: &Change) -> rec::What<'_> {
    match c {
        Change::Route {
            table,
            v6,
            before,
            after,
        } => rec::What::Route {
            table: *table,
            family: Cow::Borrowed(if *v6 { "ipv6" } else { "ipv4" }),
            before: candidates(before),
            after: candidates(after),
        },
        Change::Rule { added, rule: r } => rec::What::Rule {
            added: *added,
            rule: rule(r),
        },
        Change::Link { added, name } => rec::What::Link {
            added: *added,
            ifname: Cow::Borrowed(name),
        },
        Change::Neighbour { ip, before, after } => rec::What::Neighbour {
            ip: *ip,
            before: before.as_ref().map(mac),
            after: after.as_ref().map(mac),
        },
        Change::Attached { added, ifname } => rec::What::Attached {
            added: *added,
            ifname: Cow::Borrowed(ifname),
        },
        Change::Netns { added, role, name } => rec::What::Netns {
            added: *added,
            role: Cow::Borrowed(role),
            name: Cow::Borrowed(name),
        },
    }
}

pub(super) fn share(sh: &Share) -> rec::Share<'_> {
    rec::Share {
        nexthop: sh.nexthop,
        ifname: sh.ifname.as_deref().map(Cow::Borrowed),
        flows: sh.flows,
        packets: sh.packets,
    }
}

pub(super) fn target_share(t: &TargetShare) -> rec::TargetShare<'_> {
    rec::TargetShare {
        netns: Cow::Borrowed(&t.netns),
        target_ip: t.target_ip,
        mark: t.mark,
        flows: t.flows,
        packets: t.packets,
    }
}

fn lb_slot(s: &LbSlot) -> rec::LbSlot {
    rec::LbSlot {
        mark: s.mark,
        entries: s.entries,
        flows: s.flows,
    }
}

pub(super) fn lb_table(t: &LbTable) -> rec::LbTable<'_> {
    rec::LbTable {
        netns: Cow::Borrowed(&t.netns),
        name: Cow::Borrowed(&t.name),
        m: t.m,
        active: t.active.iter().map(lb_slot).collect(),
        not_in_table: Cow::Borrowed(&t.not_in_table),
    }
}

fn lb_choice(c: &LbChoice) -> rec::LbChoice<'_> {
    rec::LbChoice {
        netns: Cow::Borrowed(&c.netns),
        ts_ns: c.ts_ns,
        mark: c.mark,
        rule: c.rule.as_ref().map(rule),
        table: c.table,
        target_ip: c.target_ip,
        dev: Cow::Borrowed(&c.dev),
        queued_ns: c.queued_ns,
        marked_after_ingress: c.marked_after_ingress,
    }
}

fn at((netns, ifname): &(String, String)) -> rec::At<'_> {
    rec::At {
        netns: Cow::Borrowed(netns),
        ifname: Cow::Borrowed(ifname),
    }
}

/// A flow's whole path (`PathSeen`): where it entered, what the load balancer chose, where
/// it reached and where its replies left.
fn flow_path(p: &PathSeen) -> rec::FlowPath<'_> {
    rec::FlowPath {
        frontend_in: p.frontend_in.as_ref().map(at),
        lb: p.lb.iter().map(lb_choice).collect(),
        proxy_to_target: p.proxy_to_target.as_ref().map(at),
        target: p.target.as_ref().map(|(netns, ifname)| rec::TargetAt {
            netns: Cow::Borrowed(netns),
            ifname: Cow::Borrowed(ifname),
            packets: p.target_packets.max(p.target_records),
        }),
        frontend_out: p
            .frontend_out
            .as_ref()
            .map(|(netns, ifname, nexthop)| rec::LeftBy {
                netns: Cow::Borrowed(netns),
                ifname: Cow::Borrowed(ifname),
                nexthop: *nexthop,
            }),
        asymmetric: p.asymmetric(),
    }
}

fn nexthop_taken(n: &NextHopUse) -> rec::NextHopTaken<'_> {
    rec::NextHopTaken {
        nexthop: n.ip,
        eth_dst: mac(&n.mac),
        ifname: n.port.as_deref().map(Cow::Borrowed),
        flooded: n.flooded,
        packets: n.packets,
        first_rel_ns: n.first_rel_ns,
    }
}

/// A flow's summary: its egress (the next-hop when there was one, and every one taken),
/// ingress, drops, predictions, fragments and path.
pub(super) fn flow_summary<'a>(s: &'a FlowSummary, netns: &'a str) -> rec::Flow<'a> {
    let one = s.nexthop();
    let p = &s.predictions;
    rec::Flow {
        flow: flow_key(&s.flow),
        flow_id: s.flow_id,
        netns: Cow::Borrowed(netns),
        egress: rec::Egress {
            nexthop: one.and_then(|n| n.ip),
            ifname: one.and_then(|n| n.port.as_deref()).map(Cow::Borrowed),
            flooded: one.is_some_and(|n| n.flooded),
            packets: s.egress_packets,
            records: s.egress_records,
            consistent: s.consistent,
            nexthop_in_route: s.nexthop_in_route,
            nexthops: s.nexthops.iter().map(nexthop_taken).collect(),
            rule: s.rule.as_ref().map(rule),
            table: s.table,
            candidates: candidates(&s.candidates),
        },
        ingress: rec::Ingress {
            ifname: s.ingress_port.as_deref().map(Cow::Borrowed),
            packets: s.ingress_packets,
            records: s.ingress_records,
        },
        counted: s.counted,
        drops: rec::Drops {
            packets: s.drops,
            last: s
                .last_drop
                .as_ref()
                .map(|(ifname, reason, location)| rec::LastDrop {
                    ifname: Cow::Borrowed(ifname),
                    reason: Cow::Borrowed(reason),
                    location: Cow::Borrowed(location),
                }),
        },
        prediction: rec::Prediction {
            agree: p.agree,
            disagree: p.disagree,
            unknown: p.unknown,
            hash_source: p.source.as_deref().map(Cow::Borrowed),
        },
        fragments: s.fragments.as_ref().map(|f| rec::Fragments {
            routed: f.routed,
            datagrams: f.datagrams,
            split: f.split,
            split_ids: Cow::Borrowed(&f.split_ids),
            orphans: f.orphans,
        }),
        path: flow_path(&s.path),
        exact: s.inexact.is_empty(),
        not_exact: s.inexact.clone(),
    }
}
