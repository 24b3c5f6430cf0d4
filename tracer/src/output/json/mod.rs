//! JSON lines: one object per record, typed. Each record is a `tracer_records` [`Line`]
//! (the very types readers parse the output into) borrowing from what the flow table or
//! the loader produced, serialised straight into the one buffered writer: no
//! `serde_json::Value` tree, and a hop allocates nothing here (MACs and flags are
//! formatted on the stack, addresses as they are written). A rule's selector and a
//! decision's hash source are still built as strings by `Rule::selector` and
//! `HashSource::label`, which own that text; the lists of a decision, a change, a
//! distribution and a flow summary are collected into vectors of their records.
use std::{borrow::Cow, io::Write};

use tracer_records::{self as rec, Line, Record};

use super::{text::change_text, Render};
use crate::{
    bpf::Ready,
    correlate::flows::{Distribution, DropHop, FlowSummary, Hop, Overflow, RouteHop},
    events::{proto_name, FlagsText, MacText},
    netns::changes::Change,
    output::stamp::{rfc3339, Stamp},
};

mod parts;

use parts::*;

/// One JSON object per line, into `out` (buffered stdout in the tracer; a `Vec` or a sink
/// in tests and the rate measurement).
pub(super) struct Json<W: Write> {
    out: W,
    /// Node and wall clock added to every record (the tracer always has one; the record
    /// form tests here leave it out).
    stamp: Option<Stamp>,
}

impl<W: Write> Json<W> {
    /// Records without node and wall clock: the record-form tests and the rate bench.
    pub(super) fn new(out: W) -> Json<W> {
        Json { out, stamp: None }
    }

    pub(super) fn stamped(out: W, stamp: Stamp) -> Json<W> {
        Json {
            out,
            stamp: Some(stamp),
        }
    }

    pub(super) fn into_inner(self) -> W {
        self.out
    }

    /// Writes `record` with where and when it happened: `node` on every record, and next
    /// to a `ts_ns` the same instant on the wall clock (`wall_ns` since the Unix epoch,
    /// `time` in RFC 3339), what `tracer merge` orders several nodes' records by.
    ///
    /// Errors are ignored on purpose: a closed stdout (the reader went away) must not stop
    /// the tracer from cleaning up.
    fn write(&mut self, record: Record) {
        let _ = match &self.stamp {
            None => serde_json::to_writer(&mut self.out, &record),
            Some(s) => {
                let wall_ns = record.ts_ns().map(|ts| s.wall_ns(ts));
                let stamp = rec::Stamp {
                    node: Some(Cow::Borrowed(&s.node)),
                    // An i64 holds nanoseconds since the epoch until 2262.
                    wall_ns: wall_ns.map(|w| w as i64),
                    time: wall_ns.map(|w| Cow::Owned(rfc3339(w))),
                    // On the ready record: how far the MONOTONIC -> REALTIME offset can be
                    // off from the reading alone (see `stamp`).
                    clock_read_error_ns: matches!(record, Record::Ready(_))
                        .then_some(s.read_error_ns),
                };
                serde_json::to_writer(&mut self.out, &Line { record, stamp })
            }
        };
        let _ = self.out.write_all(b"\n");
    }
}

impl<W: Write> Render for Json<W> {
    fn flush(&mut self) {
        let _ = self.out.flush();
    }

    fn ready(&mut self, r: &Ready) {
        self.write(Record::Ready(rec::Ready {
            netns: Cow::Borrowed(&r.netns),
            role: Cow::Borrowed(r.role),
            vips: Cow::Borrowed(&r.vips),
            vips_from: Cow::Borrowed(r.vips_from),
            client_port: r.client_port,
            interfaces: Cow::Borrowed(&r.interfaces),
            hooks: Cow::Borrowed(&r.hooks),
            refused: r.refused.iter().map(hook_reason).collect(),
            unavailable: r.unavailable.iter().map(hook_reason).collect(),
            notes: Cow::Borrowed(&r.notes),
            records: Cow::Borrowed(&r.records),
        }));
    }

    fn hop(&mut self, h: &Hop) {
        let p = &h.packet;
        let (flags, eth_src, eth_dst) = (
            FlagsText::new(p.tcp_flags),
            MacText::new(&p.eth_src),
            MacText::new(&p.eth_dst),
        );
        self.write(Record::Hop(rec::Hop {
            flow_id: h.flow_id,
            ts_ns: p.ts_ns,
            rel_ns: h.rel_ns,
            netns: Cow::Borrowed(&h.netns),
            role: Cow::Borrowed(h.role.as_str()),
            ifname: Cow::Borrowed(&h.ifname),
            dir: Cow::Borrowed(p.dir.as_str()),
            path: Cow::Borrowed(h.path.as_str()),
            proto: Cow::Borrowed(proto_name(p.proto)),
            src: p.src,
            sport: p.sport,
            dst: p.dst,
            dport: p.dport,
            vip: h.flow.vip,
            len: p.len,
            tcp_flags: Cow::Borrowed(flags.as_str()),
            eth_src: Cow::Borrowed(eth_src.as_str()),
            eth_dst: Cow::Borrowed(eth_dst.as_str()),
            mark: p.mark,
            hash: p.hash,
            vlan: p.vlan.id,
            vlan_tags: p.vlan.tags,
            vlan_pcp: p.vlan.pcp,
            vlan_tpid: p.vlan.tpid,
            vlan_inner: p.vlan.inner_id,
            vlan_inner_pcp: p.vlan.inner_pcp,
            frag: p.frag.map(|f| rec::Frag {
                id: f.id,
                offset: f.offset,
                more: f.more,
                orphan: f.orphan,
            }),
            routed: h.decision.is_some(),
            nexthop: h.nexthop,
        }));
        if let Some(d) = &h.decision {
            self.write(Record::Decision(rec::Decision {
                flow: flow_key(&h.flow),
                flow_id: h.flow_id,
                ts_ns: p.ts_ns,
                netns: Cow::Borrowed(&h.netns),
                ifname: Cow::Borrowed(&h.ifname),
                rule: d.rule.as_ref().map(rule),
                table: d.table,
                candidates: candidates(&d.candidates),
                candidates_changed: d.candidates_changed,
                skb_hash: d.skb_hash,
                hash: d.hash,
                hash_source: Cow::Owned(d.source.label()),
                predicted: d.predicted,
                actual: d.actual,
                agree: d.agrees(),
            }));
        }
    }

    fn route(&mut self, r: &RouteHop) {
        let l = &r.lookup;
        self.write(Record::Route(rec::Route {
            flow: flow_key(&r.flow),
            flow_id: r.flow_id,
            ts_ns: l.ts_ns,
            rel_ns: r.rel_ns,
            netns: Cow::Borrowed(&r.netns),
            role: Cow::Borrowed(r.role.as_str()),
            path: Cow::Borrowed(r.path.as_str()),
            table: l.table,
            gw: l.gw,
            dev: Cow::Borrowed(&l.dev),
            err: l.err,
            iif: l.iif,
            rule: r.rule.as_ref().map(rule),
            mark: l.mark,
            after_ingress: l.after_ingress,
            queued_ns: r.queued_ns,
        }));
    }

    fn lost(&mut self, count: u64, total: u64) {
        self.write(Record::Lost(rec::Lost { count, total }));
    }

    fn evicted(&mut self, count: u64) {
        self.write(Record::Evicted(rec::Evicted {
            count,
            ..Default::default()
        }));
    }

    fn overflowed(&mut self, o: &Overflow) {
        self.write(Record::Evicted(rec::Evicted {
            count: o.hop_counters,
            flows: o.flows,
            totals_full: o.totals_full,
            hash_samples: o.hash_samples,
            datagrams: o.datagrams,
            queued: o.queued,
            lb_changes: o.lb_changes,
        }));
    }

    fn dropped(&mut self, d: &DropHop) {
        self.write(Record::Drop(rec::Drop {
            flow: flow_key(&d.flow),
            flow_id: d.flow_id,
            ts_ns: d.drop.ts_ns,
            rel_ns: d.rel_ns,
            netns: Cow::Borrowed(&d.netns),
            role: Cow::Borrowed(d.role.as_str()),
            ifname: Cow::Borrowed(&d.ifname),
            path: Cow::Borrowed(d.path.as_str()),
            reason: Cow::Borrowed(&d.reason),
            location: Cow::Borrowed(&d.location),
            mark: d.drop.mark,
        }));
    }

    fn distribution(&mut self, d: &Distribution) {
        self.write(Record::Distribution(rec::Distribution {
            vip: d.vip,
            flows: d.flows,
            nexthops: d.shares.iter().map(share).collect(),
            targets: d.targets.iter().map(target_share).collect(),
            lb_tables: d.lb_tables.iter().map(lb_table).collect(),
        }));
    }

    fn change(&mut self, ts_ns: u64, netns: &str, c: &Change) {
        self.write(Record::Change(rec::Change {
            ts_ns,
            netns: Cow::Borrowed(netns),
            what: what(c),
            text: Cow::Owned(change_text(c)),
        }));
    }

    fn summary(&mut self, s: &FlowSummary, netns: &str) {
        self.write(Record::Flow(flow_summary(s, netns)));
    }
}

#[cfg(test)]
mod tests;
