//! JSON lines: one object per record, typed. Each record is a [`Record`] borrowing from
//! what the flow table or the loader produced, serialised straight into the one buffered
//! writer: no `serde_json::Value` tree, and a hop allocates nothing here (MACs and flags
//! are formatted on the stack, addresses as they are written). A rule's selector and a
//! decision's hash source are still built as strings by `Rule::selector` and
//! `HashSource::label`, which own that text.
use std::{io::Write, net::IpAddr};

use serde::{Serialize, Serializer};

use super::{text::change_text, Render};
use crate::{
    bpf::Ready,
    correlate::flows::{
        Distribution, DropHop, FlowKey, FlowSummary, Hop, LbChoice, LbSlot, LbTable, NextHopUse,
        PathSeen, RouteHop, TargetShare,
    },
    events::{proto_name, FlagsText, MacText},
    netns::changes::Change,
    netns::kernel_state::{NextHop, Rule},
    output::stamp::{rfc3339, Stamp},
};

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

    /// Errors are ignored on purpose: a closed stdout (the reader went away) must not stop
    /// the tracer from cleaning up.
    fn write(&mut self, r: &Record) {
        let _ = match &self.stamp {
            None => serde_json::to_writer(&mut self.out, r),
            Some(s) => {
                let wall_ns = r.ts_ns().map(|ts| s.wall_ns(ts));
                let line = Stamped {
                    record: r,
                    node: &s.node,
                    wall_ns,
                    time: wall_ns.map(rfc3339),
                    clock_read_error_ns: matches!(r, Record::Ready { .. })
                        .then_some(s.read_error_ns),
                };
                serde_json::to_writer(&mut self.out, &line)
            }
        };
        let _ = self.out.write_all(b"\n");
    }
}

/// A record with where and when it happened: `node` on every record, and next to a
/// `ts_ns` the same instant on the wall clock (`wall_ns` since the Unix epoch, `time` in
/// RFC 3339), what `tracer merge` orders several nodes' records by.
#[derive(Serialize)]
struct Stamped<'a, 'r> {
    #[serde(flatten)]
    record: &'a Record<'r>,
    node: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    wall_ns: Option<i128>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    /// On the ready record: how far the MONOTONIC -> REALTIME offset can be off from the
    /// reading alone (see `stamp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    clock_read_error_ns: Option<u64>,
}

impl Record<'_> {
    /// The kernel (CLOCK_MONOTONIC) time of a record that has one.
    fn ts_ns(&self) -> Option<u64> {
        match self {
            Record::Hop { ts_ns, .. }
            | Record::Decision { ts_ns, .. }
            | Record::Route { ts_ns, .. }
            | Record::Drop { ts_ns, .. }
            | Record::Change { ts_ns, .. } => Some(*ts_ns),
            Record::Ready { .. }
            | Record::Lost { .. }
            | Record::Evicted { .. }
            | Record::Distribution { .. }
            | Record::Flow { .. } => None,
        }
    }
}

/// Every JSON record, `"type"` first. Field names and forms are the output's interface
/// (the end-to-end tests and users' scripts read them): add fields, do not rename them.
// Built on the stack and serialised at once, one at a time: the size of the `flow`
// variant costs nothing a box would save.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Record<'a> {
    Ready {
        netns: &'a str,
        role: &'a str,
        vips: &'a [IpAddr],
        /// "--vip", or "discovery" (no --vip given).
        vips_from: &'a str,
        client_port: Option<u16>,
        interfaces: &'a [String],
        hooks: &'a [String],
        refused: Seq<'a, (String, String), HookReason<'a>>,
        unavailable: Seq<'a, (String, String), HookReason<'a>>,
        notes: &'a [String],
    },
    Hop {
        flow_id: u32,
        ts_ns: u64,
        rel_ns: u64,
        netns: &'a str,
        role: &'a str,
        ifname: &'a str,
        dir: &'a str,
        path: &'a str,
        proto: &'a str,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
        vip: IpAddr,
        len: u16,
        tcp_flags: Str<FlagsText>,
        eth_src: Str<MacText>,
        eth_dst: Str<MacText>,
        mark: u32,
        hash: u32,
        /// The outer VLAN id (802.1Q, or the 802.1ad tag of a QinQ frame), 0 without a tag.
        vlan: u16,
        /// Tags seen (0 to 2); the outer tag's priority and TPID; the inner (QinQ) tag's id
        /// and priority, 0 without.
        vlan_tags: u8,
        vlan_pcp: u8,
        vlan_tpid: u16,
        vlan_inner: u16,
        vlan_inner_pcp: u8,
        /// Null unless the packet is an IP fragment.
        frag: Option<FragRecord>,
        routed: bool,
        /// Only on a hop that names its next-hop.
        #[serde(skip_serializing_if = "Option::is_none")]
        nexthop: Option<IpAddr>,
    },
    Decision {
        #[serde(flatten)]
        flow: Flow<'a>,
        flow_id: u32,
        ts_ns: u64,
        netns: &'a str,
        ifname: &'a str,
        rule: Option<RuleRecord>,
        table: Option<u32>,
        candidates: Seq<'a, NextHop, Candidate>,
        candidates_changed: bool,
        skb_hash: u32,
        hash: Option<u32>,
        hash_source: String,
        predicted: Option<IpAddr>,
        actual: Option<IpAddr>,
        /// Null when the hash is unknowable.
        agree: Option<bool>,
    },
    Route {
        #[serde(flatten)]
        flow: Flow<'a>,
        flow_id: u32,
        ts_ns: u64,
        rel_ns: u64,
        netns: &'a str,
        role: &'a str,
        path: &'a str,
        table: u32,
        gw: IpAddr,
        dev: &'a str,
        err: i32,
        iif: i32,
        /// Only when a rule selected the table.
        #[serde(skip_serializing_if = "Option::is_none")]
        rule: Option<RuleRecord>,
        /// The mark the lookup used (what fwmark rules select on).
        mark: u32,
        /// The lookup did not follow its packet's ingress hook: netfilter set the mark
        /// (nfqlb's NFQUEUE verdict) and the lookup ran after it.
        after_ingress: bool,
        /// Only on a frontend's lookup after the load balancer's queue: from the request
        /// entering the frontend to this lookup.
        #[serde(skip_serializing_if = "Option::is_none")]
        queued_ns: Option<u64>,
    },
    Lost {
        count: u64,
        total: u64,
    },
    Evicted {
        count: u64,
    },
    Drop {
        #[serde(flatten)]
        flow: Flow<'a>,
        flow_id: u32,
        ts_ns: u64,
        rel_ns: u64,
        netns: &'a str,
        role: &'a str,
        ifname: &'a str,
        path: &'a str,
        reason: &'a str,
        location: &'a str,
        mark: u32,
    },
    Change {
        ts_ns: u64,
        netns: &'a str,
        #[serde(flatten)]
        what: What<'a>,
        text: String,
    },
    Distribution {
        vip: IpAddr,
        flows: u64,
        nexthops: Seq<'a, crate::correlate::flows::Share, ShareRecord<'a>>,
        /// Per target pod the flows reached.
        targets: Seq<'a, TargetShare, TargetShareRecord<'a>>,
        /// The frontends' load-balancer tables that name these targets.
        lb_tables: Seq<'a, LbTable, LbTableRecord<'a>>,
    },
    Flow {
        #[serde(flatten)]
        flow: Flow<'a>,
        flow_id: u32,
        netns: &'a str,
        egress: Egress<'a>,
        ingress: Ingress<'a>,
        counted: bool,
        drops: Drops<'a>,
        prediction: Prediction<'a>,
        /// Null unless the flow had fragments.
        fragments: Option<FragsRecord<'a>>,
        /// The pods the flow crossed: frontends, load balancer, target.
        path: PathRecord<'a>,
    },
}

/// A flow's fragments (from its records): fragment records on the routed hop, datagrams,
/// datagrams split over next-hops (and the first few ids), fragments of unknown flow.
#[derive(Serialize)]
struct FragsRecord<'a> {
    routed: u64,
    datagrams: u64,
    split: u64,
    split_ids: &'a [u32],
    orphans: u64,
}

#[derive(Serialize)]
struct FragRecord {
    id: u32,
    offset: u16,
    more: bool,
    orphan: bool,
}

/// The flow's key, as every flow-level record carries it.
#[derive(Serialize)]
struct Flow<'a> {
    proto: &'a str,
    vip: IpAddr,
    vip_port: u16,
    client: IpAddr,
    client_port: u16,
}

impl<'a> Flow<'a> {
    fn of(k: &FlowKey) -> Flow<'a> {
        Flow {
            proto: proto_name(k.proto),
            vip: k.vip,
            vip_port: k.vip_port,
            client: k.client,
            client_port: k.client_port,
        }
    }
}

/// Text formatted on the stack ([`MacText`], [`FlagsText`]), written as a JSON string.
struct Str<T>(T);

impl Serialize for Str<MacText> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl Serialize for Str<FlagsText> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

/// A slice written as a JSON array of its items' records.
struct Seq<'a, T, R> {
    items: &'a [T],
    record: fn(&'a T) -> R,
}

fn seq<'a, T, R>(items: &'a [T], record: fn(&'a T) -> R) -> Seq<'a, T, R> {
    Seq { items, record }
}

impl<'a, T, R: Serialize> Serialize for Seq<'a, T, R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.items.iter().map(self.record))
    }
}

#[derive(Serialize)]
struct HookReason<'a> {
    hook: &'a str,
    reason: &'a str,
}

fn hook_reason((hook, reason): &(String, String)) -> HookReason<'_> {
    HookReason { hook, reason }
}

#[derive(Serialize)]
struct Candidate {
    gw: Option<IpAddr>,
    ifindex: u32,
    weight: u32,
    alive: bool,
}

fn candidate(n: &NextHop) -> Candidate {
    Candidate {
        gw: n.gw,
        ifindex: n.ifindex,
        weight: n.weight,
        alive: n.alive,
    }
}

fn candidates(c: &[NextHop]) -> Seq<'_, NextHop, Candidate> {
    seq(c, candidate)
}

#[derive(Serialize)]
struct RuleRecord {
    priority: u32,
    selector: String,
    table: Option<u32>,
}

fn rule(r: &Rule) -> RuleRecord {
    RuleRecord {
        priority: r.priority,
        selector: r.selector(),
        table: r.table,
    }
}

/// A change's own fields, after `"what"`.
#[derive(Serialize)]
#[serde(tag = "what", rename_all = "snake_case")]
enum What<'a> {
    Route {
        table: u32,
        family: &'a str,
        before: Seq<'a, NextHop, Candidate>,
        after: Seq<'a, NextHop, Candidate>,
    },
    Rule {
        added: bool,
        rule: RuleRecord,
    },
    Link {
        added: bool,
        ifname: &'a str,
    },
    Neighbour {
        ip: IpAddr,
        before: Option<Str<MacText>>,
        after: Option<Str<MacText>>,
    },
    Attached {
        added: bool,
        ifname: &'a str,
    },
    Netns {
        added: bool,
        role: &'a str,
        name: &'a str,
    },
}

impl<'a> What<'a> {
    fn of(c: &'a Change) -> What<'a> {
        match c {
            Change::Route {
                table,
                v6,
                before,
                after,
            } => What::Route {
                table: *table,
                family: if *v6 { "ipv6" } else { "ipv4" },
                before: candidates(before),
                after: candidates(after),
            },
            Change::Rule { added, rule: r } => What::Rule {
                added: *added,
                rule: rule(r),
            },
            Change::Link { added, name } => What::Link {
                added: *added,
                ifname: name,
            },
            Change::Neighbour { ip, before, after } => What::Neighbour {
                ip: *ip,
                before: before.as_ref().map(|m| Str(MacText::new(m))),
                after: after.as_ref().map(|m| Str(MacText::new(m))),
            },
            Change::Attached { added, ifname } => What::Attached {
                added: *added,
                ifname,
            },
            Change::Netns { added, role, name } => What::Netns {
                added: *added,
                role,
                name,
            },
        }
    }
}

#[derive(Serialize)]
struct ShareRecord<'a> {
    nexthop: Option<IpAddr>,
    ifname: Option<&'a str>,
    flows: u64,
    packets: u64,
}

fn share(sh: &crate::correlate::flows::Share) -> ShareRecord<'_> {
    ShareRecord {
        nexthop: sh.nexthop,
        ifname: sh.ifname.as_deref(),
        flows: sh.flows,
        packets: sh.packets,
    }
}

#[derive(Serialize)]
struct TargetShareRecord<'a> {
    netns: &'a str,
    target_ip: Option<IpAddr>,
    mark: Option<u32>,
    flows: u64,
    packets: u64,
}

fn target_share(t: &TargetShare) -> TargetShareRecord<'_> {
    TargetShareRecord {
        netns: &t.netns,
        target_ip: t.target_ip,
        mark: t.mark,
        flows: t.flows,
        packets: t.packets,
    }
}

#[derive(Serialize)]
struct LbTableRecord<'a> {
    netns: &'a str,
    name: &'a str,
    m: u32,
    active: Seq<'a, LbSlot, LbSlotRecord>,
    not_in_table: &'a [u32],
}

#[derive(Serialize)]
struct LbSlotRecord {
    mark: u32,
    entries: u32,
    flows: u64,
}

fn lb_slot(s: &LbSlot) -> LbSlotRecord {
    LbSlotRecord {
        mark: s.mark,
        entries: s.entries,
        flows: s.flows,
    }
}

fn lb_table(t: &LbTable) -> LbTableRecord<'_> {
    LbTableRecord {
        netns: &t.netns,
        name: &t.name,
        m: t.m,
        active: seq(&t.active, lb_slot),
        not_in_table: &t.not_in_table,
    }
}

/// A flow's whole path (`PathSeen`): where it entered, what the load balancer chose, where
/// it reached and where its replies left.
#[derive(Serialize)]
struct PathRecord<'a> {
    frontend_in: Option<At<'a>>,
    lb: Seq<'a, LbChoice, LbRecord<'a>>,
    proxy_to_target: Option<At<'a>>,
    target: Option<TargetAt<'a>>,
    frontend_out: Option<LeftBy<'a>>,
    /// The replies left by another frontend than the requests entered by.
    asymmetric: bool,
}

#[derive(Serialize)]
struct At<'a> {
    netns: &'a str,
    ifname: &'a str,
}

#[derive(Serialize)]
struct TargetAt<'a> {
    netns: &'a str,
    ifname: &'a str,
    packets: u64,
}

#[derive(Serialize)]
struct LeftBy<'a> {
    netns: &'a str,
    ifname: &'a str,
    nexthop: Option<IpAddr>,
}

#[derive(Serialize)]
struct LbRecord<'a> {
    netns: &'a str,
    ts_ns: u64,
    mark: u32,
    rule: Option<RuleRecord>,
    table: u32,
    target_ip: IpAddr,
    dev: &'a str,
    queued_ns: Option<u64>,
    marked_after_ingress: bool,
}

fn lb_choice(c: &LbChoice) -> LbRecord<'_> {
    LbRecord {
        netns: &c.netns,
        ts_ns: c.ts_ns,
        mark: c.mark,
        rule: c.rule.as_ref().map(rule),
        table: c.table,
        target_ip: c.target_ip,
        dev: &c.dev,
        queued_ns: c.queued_ns,
        marked_after_ingress: c.marked_after_ingress,
    }
}

fn at((netns, ifname): &(String, String)) -> At<'_> {
    At { netns, ifname }
}

fn path_record(p: &PathSeen) -> PathRecord<'_> {
    PathRecord {
        frontend_in: p.frontend_in.as_ref().map(at),
        lb: seq(&p.lb, lb_choice),
        proxy_to_target: p.proxy_to_target.as_ref().map(at),
        target: p.target.as_ref().map(|(netns, ifname)| TargetAt {
            netns,
            ifname,
            packets: p.target_packets.max(p.target_records),
        }),
        frontend_out: p
            .frontend_out
            .as_ref()
            .map(|(netns, ifname, nexthop)| LeftBy {
                netns,
                ifname,
                nexthop: *nexthop,
            }),
        asymmetric: p.asymmetric(),
    }
}

/// A flow summary's egress: the next-hop when there was one, and every one taken.
#[derive(Serialize)]
struct Egress<'a> {
    nexthop: Option<IpAddr>,
    ifname: Option<&'a str>,
    flooded: bool,
    packets: u64,
    records: u64,
    consistent: bool,
    nexthop_in_route: Option<bool>,
    nexthops: Seq<'a, NextHopUse, NextHopTaken<'a>>,
    rule: Option<RuleRecord>,
    table: Option<u32>,
    candidates: Seq<'a, NextHop, Candidate>,
}

#[derive(Serialize)]
struct NextHopTaken<'a> {
    nexthop: Option<IpAddr>,
    eth_dst: Str<MacText>,
    ifname: Option<&'a str>,
    flooded: bool,
    packets: u64,
    first_rel_ns: u64,
}

fn nexthop_taken(n: &NextHopUse) -> NextHopTaken<'_> {
    NextHopTaken {
        nexthop: n.ip,
        eth_dst: Str(MacText::new(&n.mac)),
        ifname: n.port.as_deref(),
        flooded: n.flooded,
        packets: n.packets,
        first_rel_ns: n.first_rel_ns,
    }
}

#[derive(Serialize)]
struct Ingress<'a> {
    ifname: Option<&'a str>,
    packets: u64,
    records: u64,
}

#[derive(Serialize)]
struct Drops<'a> {
    packets: u64,
    last: Option<LastDrop<'a>>,
}

#[derive(Serialize)]
struct LastDrop<'a> {
    ifname: &'a str,
    reason: &'a str,
    location: &'a str,
}

#[derive(Serialize)]
struct Prediction<'a> {
    agree: u64,
    disagree: u64,
    unknown: u64,
    hash_source: Option<&'a str>,
}

impl<W: Write> Render for Json<W> {
    fn flush(&mut self) {
        let _ = self.out.flush();
    }

    fn ready(&mut self, r: &Ready) {
        self.write(&Record::Ready {
            netns: &r.netns,
            role: r.role,
            vips: &r.vips,
            vips_from: r.vips_from,
            client_port: r.client_port,
            interfaces: &r.interfaces,
            hooks: &r.hooks,
            refused: seq(&r.refused, hook_reason),
            unavailable: seq(&r.unavailable, hook_reason),
            notes: &r.notes,
        });
    }

    fn hop(&mut self, h: &Hop) {
        let p = &h.packet;
        self.write(&Record::Hop {
            flow_id: h.flow_id,
            ts_ns: p.ts_ns,
            rel_ns: h.rel_ns,
            netns: &h.netns,
            role: h.role.as_str(),
            ifname: &h.ifname,
            dir: p.dir.as_str(),
            path: h.path.as_str(),
            proto: proto_name(p.proto),
            src: p.src,
            sport: p.sport,
            dst: p.dst,
            dport: p.dport,
            vip: h.flow.vip,
            len: p.len,
            tcp_flags: Str(FlagsText::new(p.tcp_flags)),
            eth_src: Str(MacText::new(&p.eth_src)),
            eth_dst: Str(MacText::new(&p.eth_dst)),
            mark: p.mark,
            hash: p.hash,
            vlan: p.vlan.id,
            vlan_tags: p.vlan.tags,
            vlan_pcp: p.vlan.pcp,
            vlan_tpid: p.vlan.tpid,
            vlan_inner: p.vlan.inner_id,
            vlan_inner_pcp: p.vlan.inner_pcp,
            frag: p.frag.map(|f| FragRecord {
                id: f.id,
                offset: f.offset,
                more: f.more,
                orphan: f.orphan,
            }),
            routed: h.decision.is_some(),
            nexthop: h.nexthop,
        });
        if let Some(d) = &h.decision {
            self.write(&Record::Decision {
                flow: Flow::of(&h.flow),
                flow_id: h.flow_id,
                ts_ns: p.ts_ns,
                netns: &h.netns,
                ifname: &h.ifname,
                rule: d.rule.as_ref().map(rule),
                table: d.table,
                candidates: candidates(&d.candidates),
                candidates_changed: d.candidates_changed,
                skb_hash: d.skb_hash,
                hash: d.hash,
                hash_source: d.source.label(),
                predicted: d.predicted,
                actual: d.actual,
                agree: d.agrees(),
            });
        }
    }

    fn route(&mut self, r: &RouteHop) {
        let l = &r.lookup;
        self.write(&Record::Route {
            flow: Flow::of(&r.flow),
            flow_id: r.flow_id,
            ts_ns: l.ts_ns,
            rel_ns: r.rel_ns,
            netns: &r.netns,
            role: r.role.as_str(),
            path: r.path.as_str(),
            table: l.table,
            gw: l.gw,
            dev: &l.dev,
            err: l.err,
            iif: l.iif,
            rule: r.rule.as_ref().map(rule),
            mark: l.mark,
            after_ingress: l.after_ingress,
            queued_ns: r.queued_ns,
        });
    }

    fn lost(&mut self, count: u64, total: u64) {
        self.write(&Record::Lost { count, total });
    }

    fn evicted(&mut self, count: u64) {
        self.write(&Record::Evicted { count });
    }

    fn dropped(&mut self, d: &DropHop) {
        self.write(&Record::Drop {
            flow: Flow::of(&d.flow),
            flow_id: d.flow_id,
            ts_ns: d.drop.ts_ns,
            rel_ns: d.rel_ns,
            netns: &d.netns,
            role: d.role.as_str(),
            ifname: &d.ifname,
            path: d.path.as_str(),
            reason: &d.reason,
            location: &d.location,
            mark: d.drop.mark,
        });
    }

    fn distribution(&mut self, d: &Distribution) {
        self.write(&Record::Distribution {
            vip: d.vip,
            flows: d.flows,
            nexthops: seq(&d.shares, share),
            targets: seq(&d.targets, target_share),
            lb_tables: seq(&d.lb_tables, lb_table),
        });
    }

    fn change(&mut self, ts_ns: u64, netns: &str, c: &Change) {
        self.write(&Record::Change {
            ts_ns,
            netns,
            what: What::of(c),
            text: change_text(c),
        });
    }

    fn summary(&mut self, s: &FlowSummary, netns: &str) {
        let one = s.nexthop();
        let p = &s.predictions;
        self.write(&Record::Flow {
            flow: Flow::of(&s.flow),
            flow_id: s.flow_id,
            netns,
            egress: Egress {
                nexthop: one.and_then(|n| n.ip),
                ifname: one.and_then(|n| n.port.as_deref()),
                flooded: one.is_some_and(|n| n.flooded),
                packets: s.egress_packets,
                records: s.egress_records,
                consistent: s.consistent,
                nexthop_in_route: s.nexthop_in_route,
                nexthops: seq(&s.nexthops, nexthop_taken),
                rule: s.rule.as_ref().map(rule),
                table: s.table,
                candidates: candidates(&s.candidates),
            },
            ingress: Ingress {
                ifname: s.ingress_port.as_deref(),
                packets: s.ingress_packets,
                records: s.ingress_records,
            },
            counted: s.counted,
            drops: Drops {
                packets: s.drops,
                last: s
                    .last_drop
                    .as_ref()
                    .map(|(ifname, reason, location)| LastDrop {
                        ifname,
                        reason,
                        location,
                    }),
            },
            prediction: Prediction {
                agree: p.agree,
                disagree: p.disagree,
                unknown: p.unknown,
                hash_source: p.source.as_deref(),
            },
            fragments: s.fragments.as_ref().map(|f| FragsRecord {
                routed: f.routed,
                datagrams: f.datagrams,
                split: f.split,
                split_ids: &f.split_ids,
                orphans: f.orphans,
            }),
            path: path_record(&s.path),
        });
    }
}

#[cfg(test)]
mod tests {
    //! The JSON records field by field, as the end-to-end tests and users' scripts read
    //! them: names, nulls, and number or string forms (a `Value` compares `1` and `1.0` as
    //! different, and a missing key as different from a null one).
    use std::net::IpAddr;

    use serde_json::{json, Value};

    use super::*;
    use crate::{
        correlate::flows::{Decision, HopKind, NextHopUse, PathDir, PredictionStats, Share},
        correlate::multipath::HashSource,
        discover::Role,
        events::{Dir, Drop, FibLookup, Packet},
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The lines one call writes, each parsed.
    fn lines(write: impl FnOnce(&mut Json<Vec<u8>>)) -> Vec<Value> {
        let mut j = Json::new(Vec::new());
        write(&mut j);
        j.flush();
        let out = String::from_utf8(j.into_inner()).unwrap();
        assert!(out.ends_with('\n'), "every record ends its line: {out:?}");
        out.lines().map(read_back).collect()
    }

    /// A written line, parsed; it must also read into the typed [`crate::records::Line`]
    /// and serialise again to the same JSON, which keeps the reader's types and these in
    /// step (a field missing there, or named differently, fails here).
    fn read_back(l: &str) -> Value {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        let typed: crate::records::Line = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("the typed reader refuses ({e}): {l}"));
        assert_eq!(
            serde_json::to_value(&typed).unwrap(),
            v,
            "read back typed: {l}"
        );
        v
    }

    fn one(write: impl FnOnce(&mut Json<Vec<u8>>)) -> Value {
        let [v] = lines(write).try_into().expect("one line");
        v
    }

    fn key() -> FlowKey {
        FlowKey {
            proto: 6,
            vip: ip("20.0.0.1"),
            vip_port: 4000,
            client: ip("169.254.100.150"),
            client_port: 35000,
        }
    }

    fn key6() -> FlowKey {
        FlowKey {
            proto: 17,
            vip: ip("2000::1"),
            vip_port: 5001,
            client: ip("100:100::150"),
            client_port: 35001,
        }
    }

    fn rule() -> Rule {
        Rule {
            priority: 32765,
            src: Some((ip("20.0.0.1"), 32)),
            dst: None,
            fwmark: None,
            fwmask: None,
            iif: None,
            other_selectors: false,
            table: Some(7),
            v6: false,
        }
    }

    fn candidates() -> Vec<NextHop> {
        vec![
            NextHop {
                gw: Some(ip("172.16.0.3")),
                ifindex: 2,
                weight: 1,
                alive: true,
            },
            NextHop {
                gw: Some(ip("172.16.0.5")),
                ifindex: 2,
                weight: 2,
                alive: false,
            },
        ]
    }

    fn candidates_json() -> Value {
        json!([
            {"gw": "172.16.0.3", "ifindex": 2, "weight": 1, "alive": true},
            {"gw": "172.16.0.5", "ifindex": 2, "weight": 2, "alive": false},
        ])
    }

    fn packet() -> Packet {
        Packet {
            ts_ns: 1102,
            ifindex: 2,
            dir: Dir::Egress,
            proto: 6,
            src: ip("20.0.0.1"),
            dst: ip("169.254.100.150"),
            sport: 4000,
            dport: 35000,
            len: 60,
            tcp_flags: 0x12,
            eth_src: [2, 0, 0, 0, 0, 1],
            eth_dst: [2, 0, 0, 0, 0, 0xb],
            vlan: Default::default(),
            mark: 0x1389,
            hash: 0x8000_0000,
            frag: None,
            snap: None,
        }
    }

    #[test]
    fn a_routed_hop_and_its_decision() {
        let hop = Hop {
            flow: key(),
            flow_id: 1,
            netns: "proxy-a".into(),
            role: Role::Proxy,
            path: PathDir::Egress,
            rel_ns: 102,
            ifname: "bridge0".into(),
            kind: HopKind::L3,
            packet: packet(),
            nexthop: Some(ip("172.16.0.5")),
            nexthop_unknown: false,
            decision: Some(Decision {
                rule: Some(rule()),
                table: Some(7),
                candidates: candidates(),
                candidates_changed: true,
                skb_hash: 0x8000_0000,
                hash: Some(0x4000_0000),
                source: HashSource::SkbL4Hash,
                predicted: Some(ip("172.16.0.5")),
                actual: Some(ip("172.16.0.5")),
            }),
        };
        let got = lines(|j| j.hop(&hop));
        assert_eq!(
            got,
            vec![
                json!({
                    "type": "hop", "flow_id": 1, "ts_ns": 1102, "rel_ns": 102,
                    "netns": "proxy-a", "role": "proxy", "ifname": "bridge0",
                    "dir": "egress", "path": "egress", "proto": "tcp",
                    "src": "20.0.0.1", "sport": 4000, "dst": "169.254.100.150", "dport": 35000,
                    "vip": "20.0.0.1", "len": 60, "tcp_flags": "SYN,ACK",
                    "eth_src": "02:00:00:00:00:01", "eth_dst": "02:00:00:00:00:0b",
                    "mark": 5001, "hash": 2147483648u64, "vlan": 0, "vlan_tags": 0, "vlan_pcp": 0, "vlan_tpid": 0,
                    "vlan_inner": 0, "vlan_inner_pcp": 0, "frag": null, "routed": true,
                    "nexthop": "172.16.0.5",
                }),
                json!({
                    "type": "decision", "proto": "tcp", "vip": "20.0.0.1", "vip_port": 4000,
                    "client": "169.254.100.150", "client_port": 35000, "flow_id": 1,
                    "ts_ns": 1102, "netns": "proxy-a", "ifname": "bridge0",
                    "rule": {"priority": 32765, "selector": "from 20.0.0.1", "table": 7},
                    "table": 7, "candidates": candidates_json(), "candidates_changed": true,
                    "skb_hash": 2147483648u64, "hash": 1073741824,
                    "hash_source": "skb L4 hash reused by policy 1",
                    "predicted": "172.16.0.5", "actual": "172.16.0.5", "agree": true,
                }),
            ]
        );
    }

    #[test]
    fn a_port_hop_has_no_nexthop_key_and_an_unknowable_decision_has_nulls() {
        let mut p = packet();
        p.proto = 17;
        p.tcp_flags = 0;
        p.src = ip("2000::1");
        p.dst = ip("100:100::150");
        p.dir = Dir::Ingress;
        let hop = Hop {
            flow: key6(),
            flow_id: 2,
            netns: "target-a-1".into(),
            role: Role::Target,
            path: PathDir::Ingress,
            rel_ns: 0,
            ifname: "nsm-0".into(),
            kind: HopKind::Port,
            packet: p,
            nexthop: None,
            nexthop_unknown: true,
            decision: None,
        };
        let v = one(|j| j.hop(&hop));
        assert_eq!(
            v,
            json!({
                "type": "hop", "flow_id": 2, "ts_ns": 1102, "rel_ns": 0,
                "netns": "target-a-1", "role": "target", "ifname": "nsm-0",
                "dir": "ingress", "path": "ingress", "proto": "udp",
                "src": "2000::1", "sport": 4000, "dst": "100:100::150", "dport": 35000,
                "vip": "2000::1", "len": 60, "tcp_flags": "",
                "eth_src": "02:00:00:00:00:01", "eth_dst": "02:00:00:00:00:0b",
                "mark": 5001, "hash": 2147483648u64, "vlan": 0, "vlan_tags": 0, "vlan_pcp": 0, "vlan_tpid": 0,
                    "vlan_inner": 0, "vlan_inner_pcp": 0, "frag": null, "routed": false,
            })
        );

        let unknown = Hop {
            decision: Some(Decision {
                rule: None,
                table: None,
                candidates: vec![],
                candidates_changed: false,
                skb_hash: 0,
                hash: None,
                source: HashSource::Unknown {
                    why: "no hash".into(),
                },
                predicted: None,
                actual: None,
            }),
            ..hop
        };
        let [hop, decision] = lines(|j| j.hop(&unknown)).try_into().unwrap();
        assert_eq!(hop["routed"], json!(true));
        assert!(hop.get("nexthop").is_none(), "{hop}");
        assert_eq!(
            decision,
            json!({
                "type": "decision", "proto": "udp", "vip": "2000::1", "vip_port": 5001,
                "client": "100:100::150", "client_port": 35001, "flow_id": 2,
                "ts_ns": 1102, "netns": "target-a-1", "ifname": "nsm-0",
                "rule": null, "table": null, "candidates": [], "candidates_changed": false,
                "skb_hash": 0, "hash": null, "hash_source": "unknown: no hash",
                "predicted": null, "actual": null, "agree": null,
            })
        );
    }

    fn lookup() -> FibLookup {
        FibLookup {
            ts_ns: 1101,
            table: 7,
            err: 0,
            iif: 2,
            oif: 3,
            proto: 6,
            src: ip("20.0.0.1"),
            dst: ip("169.254.100.150"),
            sport: 4000,
            dport: 35000,
            gw: ip("172.16.0.3"),
            dev: "bridge0".into(),
            mark: 9,
            after_ingress: false,
        }
    }

    #[test]
    fn route_records_with_and_without_a_rule() {
        let r = RouteHop {
            flow: key(),
            flow_id: 1,
            netns: "proxy-a".into(),
            role: Role::Proxy,
            path: PathDir::Egress,
            rel_ns: 101,
            lookup: lookup(),
            rule: Some(rule()),
            queued_ns: None,
        };
        assert_eq!(
            one(|j| j.route(&r)),
            json!({
                "type": "route", "proto": "tcp", "vip": "20.0.0.1", "vip_port": 4000,
                "client": "169.254.100.150", "client_port": 35000, "flow_id": 1,
                "ts_ns": 1101, "rel_ns": 101, "netns": "proxy-a", "role": "proxy",
                "path": "egress", "table": 7, "gw": "172.16.0.3", "dev": "bridge0",
                "err": 0, "iif": 2,
                "rule": {"priority": 32765, "selector": "from 20.0.0.1", "table": 7},
                "mark": 9, "after_ingress": false,
            })
        );
        // A frontend's lookup after the load balancer's queue says how long it waited.
        let lb = RouteHop {
            role: Role::Frontend,
            path: PathDir::Ingress,
            lookup: FibLookup {
                mark: 0x138a,
                after_ingress: true,
                ..lookup()
            },
            queued_ns: Some(210_000),
            ..r.clone()
        };
        let v = one(|j| j.route(&lb));
        assert_eq!(
            (&v["mark"], &v["after_ingress"], &v["queued_ns"]),
            (&json!(0x138a), &json!(true), &json!(210_000))
        );
        let miss = RouteHop {
            lookup: FibLookup {
                table: 255,
                err: -11,
                iif: -1,
                gw: ip("0.0.0.0"),
                dev: String::new(),
                ..lookup()
            },
            rule: None,
            ..r
        };
        let v = one(|j| j.route(&miss));
        assert!(v.get("rule").is_none(), "{v}");
        assert_eq!(
            (&v["table"], &v["err"], &v["iif"], &v["gw"], &v["dev"]),
            (
                &json!(255),
                &json!(-11),
                &json!(-1),
                &json!("0.0.0.0"),
                &json!("")
            )
        );
    }

    #[test]
    fn drop_lost_and_evicted_records() {
        let d = DropHop {
            flow: key(),
            flow_id: 3,
            netns: "proxy-a".into(),
            role: Role::Proxy,
            path: PathDir::Ingress,
            rel_ns: 7,
            ifname: "bridge0".into(),
            reason: "IP_INNOROUTES".into(),
            location: "ip_route_input_slow+0x1a2".into(),
            drop: Drop {
                ts_ns: 9,
                ifindex: 2,
                reason: 5,
                location: 0xffff_ffff_8100_0000,
                proto: 6,
                src: ip("169.254.100.150"),
                dst: ip("20.0.0.1"),
                sport: 35000,
                dport: 4000,
                mark: 0x1389,
            },
        };
        assert_eq!(
            one(|j| j.dropped(&d)),
            json!({
                "type": "drop", "proto": "tcp", "vip": "20.0.0.1", "vip_port": 4000,
                "client": "169.254.100.150", "client_port": 35000, "flow_id": 3,
                "ts_ns": 9, "rel_ns": 7, "netns": "proxy-a", "role": "proxy",
                "ifname": "bridge0", "path": "ingress", "reason": "IP_INNOROUTES",
                "location": "ip_route_input_slow+0x1a2", "mark": 5001,
            })
        );
        assert_eq!(
            one(|j| j.lost(3, 9)),
            json!({"type": "lost", "count": 3, "total": 9})
        );
        assert_eq!(
            one(|j| j.evicted(4)),
            json!({"type": "evicted", "count": 4})
        );
    }

    #[test]
    fn stamped_records_carry_node_and_wall_clock_next_to_ts_ns() {
        let mut j = Json::stamped(
            Vec::new(),
            Stamp::fixed("worker-1", 1_796_292_671_000_000_000),
        );
        let c = Change::Attached {
            added: true,
            ifname: "conduit-a.-7777".into(),
        };
        j.change(1_123_456_789, "proxy-a", &c);
        j.lost(3, 5);
        j.flush();
        let out = String::from_utf8(j.into_inner()).unwrap();
        let v: Vec<Value> = out.lines().map(read_back).collect();
        assert!(
            out.starts_with(r#"{"type":"change""#),
            "type stays first: {out}"
        );
        assert_eq!(v[0]["ts_ns"], 1_123_456_789u64);
        assert_eq!(v[0]["node"], "worker-1");
        assert_eq!(v[0]["wall_ns"], 1_796_292_672_123_456_789u64);
        assert_eq!(v[0]["time"], "2026-12-03T10:11:12.123456789Z");
        assert_eq!(v[0]["netns"], "proxy-a", "the record's own fields stay");
        // No kernel time, no wall time; the node all the same.
        assert_eq!(
            v[1],
            json!({"type": "lost", "count": 3, "total": 5, "node": "worker-1"})
        );
    }

    #[test]
    fn ready_record() {
        let r = Ready {
            netns: "proxy-a".into(),
            role: "proxy",
            vips: vec![ip("20.0.0.1"), ip("2000::1")],
            vips_from: "--vip",
            client_port: None,
            interfaces: vec!["bridge0".into(), "conduit-a.-3150".into()],
            hooks: vec!["tc:bridge0/ingress (tcx)".into()],
            refused: vec![("fexit:fib_multipath_hash".into(), "EPERM".into())],
            unavailable: vec![("kprobe:fib_select_path".into(), "no kprobes".into())],
            notes: vec![],
        };
        assert_eq!(
            one(|j| j.ready(&r)),
            json!({
                "type": "ready", "netns": "proxy-a", "role": "proxy",
                "vips": ["20.0.0.1", "2000::1"], "vips_from": "--vip", "client_port": null,
                "interfaces": ["bridge0", "conduit-a.-3150"],
                "hooks": ["tc:bridge0/ingress (tcx)"],
                "refused": [{"hook": "fexit:fib_multipath_hash", "reason": "EPERM"}],
                "unavailable": [{"hook": "kprobe:fib_select_path", "reason": "no kprobes"}],
                "notes": [],
            })
        );
        let r = Ready {
            client_port: Some(35000),
            notes: vec!["removed a leftover filter".into()],
            ..r
        };
        let v = one(|j| j.ready(&r));
        assert_eq!(
            (&v["client_port"], &v["notes"]),
            (&json!(35000), &json!(["removed a leftover filter"]))
        );
    }

    #[test]
    fn distribution_record() {
        let d = Distribution {
            vip: ip("20.0.0.1"),
            flows: 3,
            shares: vec![
                Share {
                    nexthop: Some(ip("172.16.0.3")),
                    ifname: Some("conduit-a.-3150".into()),
                    flows: 1,
                    packets: 1,
                },
                Share {
                    nexthop: None,
                    ifname: None,
                    flows: 2,
                    packets: 5,
                },
            ],
            targets: vec![TargetShare {
                netns: "target-a-2".into(),
                target_ip: Some(ip("172.16.0.9")),
                mark: Some(5002),
                flows: 3,
                packets: 12,
            }],
            lb_tables: vec![LbTable {
                netns: "lbfe-a".into(),
                name: "tshm-stream-a".into(),
                m: 10000,
                active: vec![LbSlot {
                    mark: 5002,
                    entries: 3334,
                    flows: 3,
                }],
                not_in_table: vec![5001],
            }],
            sent: Default::default(),
        };
        assert_eq!(
            one(|j| j.distribution(&d)),
            json!({
                "type": "distribution", "vip": "20.0.0.1", "flows": 3,
                "nexthops": [
                    {"nexthop": "172.16.0.3", "ifname": "conduit-a.-3150", "flows": 1, "packets": 1},
                    {"nexthop": null, "ifname": null, "flows": 2, "packets": 5},
                ],
                "targets": [{"netns": "target-a-2", "target_ip": "172.16.0.9", "mark": 5002,
                             "flows": 3, "packets": 12}],
                "lb_tables": [{"netns": "lbfe-a", "name": "tshm-stream-a", "m": 10000,
                               "active": [{"mark": 5002, "entries": 3334, "flows": 3}],
                               "not_in_table": [5001]}],
            })
        );
    }

    #[test]
    fn change_records() {
        let mark_rule = Rule {
            priority: 100,
            src: None,
            fwmark: Some(0x1389),
            table: Some(5001),
            ..rule()
        };
        let changes = [
            Change::Route {
                table: 7,
                v6: false,
                before: candidates(),
                after: vec![],
            },
            Change::Route {
                table: 8,
                v6: true,
                before: vec![],
                after: vec![NextHop {
                    gw: None,
                    ifindex: 4,
                    weight: 1,
                    alive: true,
                }],
            },
            Change::Rule {
                added: true,
                rule: mark_rule,
            },
            Change::Link {
                added: false,
                name: "conduit-a.-6496".into(),
            },
            Change::Neighbour {
                ip: ip("172.16.0.5"),
                before: None,
                after: Some([2, 0, 0, 0, 0, 0xb]),
            },
            Change::Attached {
                added: true,
                ifname: "proxy.cond-1b2c".into(),
            },
            Change::Netns {
                added: false,
                role: "frontend",
                name: "lbfe-b".into(),
            },
        ];
        let got = lines(|j| {
            for c in &changes {
                j.change(42, "proxy-a", c);
            }
        });
        let at = |mut v: Value, text: &str| {
            v["type"] = json!("change");
            v["ts_ns"] = json!(42);
            v["netns"] = json!("proxy-a");
            v["text"] = json!(text);
            v
        };
        assert_eq!(
            got,
            vec![
                at(
                    json!({"what": "route", "table": 7, "family": "ipv4",
                           "before": candidates_json(), "after": []}),
                    "table 7 next-hops [172.16.0.3, 172.16.0.5 weight 2 dead] -> []"
                ),
                at(
                    json!({"what": "route", "table": 8, "family": "ipv6", "before": [],
                           "after": [{"gw": null, "ifindex": 4, "weight": 1, "alive": true}]}),
                    "table 8 next-hops [] -> [?]"
                ),
                at(
                    json!({"what": "rule", "added": true, "rule": {
                        "priority": 100, "selector": "from all fwmark 0x1389", "table": 5001}}),
                    "rule 100 `from all fwmark 0x1389` lookup 5001 added"
                ),
                at(
                    json!({"what": "link", "added": false, "ifname": "conduit-a.-6496"}),
                    "interface conduit-a.-6496 removed"
                ),
                at(
                    json!({"what": "neighbour", "ip": "172.16.0.5", "before": null,
                           "after": "02:00:00:00:00:0b"}),
                    "next-hop 172.16.0.5 MAC none -> 02:00:00:00:00:0b"
                ),
                at(
                    json!({"what": "attached", "added": true, "ifname": "proxy.cond-1b2c"}),
                    "interface proxy.cond-1b2c appeared: attached"
                ),
                at(
                    json!({"what": "netns", "added": false, "role": "frontend", "name": "lbfe-b"}),
                    "frontend lbfe-b is gone: detached"
                ),
            ]
        );
    }

    /// A flow that entered by one frontend and left by the other, through target 2.
    fn whole_path() -> PathSeen {
        let mut p = PathSeen::default();
        let fe = |label: &str, path, dir, ts| (label.to_string(), path, dir, ts);
        for (label, path, dir, ts) in [
            fe("lbfe-a", PathDir::Ingress, Dir::Ingress, 1000),
            fe("lbfe-b", PathDir::Egress, Dir::Egress, 1500),
        ] {
            let nexthop = (dir == Dir::Egress).then(|| ip("169.254.100.150"));
            p.on_hop(
                Role::Frontend,
                &label,
                "ext-vlan0",
                path,
                HopKind::L3,
                dir,
                ts,
                nexthop,
            );
        }
        p.on_hop(
            Role::Proxy,
            "proxy-a",
            "proxy.cond-0a85",
            PathDir::Ingress,
            HopKind::Port,
            Dir::Egress,
            1300,
            None,
        );
        p.on_counted(
            Role::Target,
            "target-a-2",
            "nsm-0",
            PathDir::Ingress,
            Dir::Ingress,
            6,
        );
        let queued = p.on_lookup(
            "lbfe-a",
            &FibLookup {
                ts_ns: 1200,
                table: 5002,
                mark: 5002,
                after_ingress: true,
                gw: ip("172.16.0.9"),
                dev: "conduit-a.-b89d".into(),
                ..lookup()
            },
            Some(rule()),
        );
        assert_eq!(queued, Some(200));
        p
    }

    #[test]
    fn flow_summaries_one_next_hop_and_several() {
        let s = FlowSummary {
            flow: key(),
            flow_id: 1,
            proxy_site: Some(0),
            ingress_port: Some("conduit-a.-3150".into()),
            ingress_packets: 6,
            egress_packets: 4,
            counted: true,
            ingress_records: 5,
            egress_records: 3,
            nexthops: vec![NextHopUse {
                ip: Some(ip("172.16.0.5")),
                mac: [2, 0, 0, 0, 0, 0xb],
                port: Some("conduit-a.-6496".into()),
                flooded: false,
                packets: 4,
                first_rel_ns: 120,
            }],
            consistent: true,
            rule: Some(rule()),
            table: Some(7),
            candidates: candidates(),
            nexthop_in_route: Some(true),
            predictions: PredictionStats {
                agree: 3,
                disagree: 1,
                unknown: 0,
                source: Some("skb L4 hash reused by policy 1".into()),
            },
            drops: 2,
            last_drop: Some((
                "bridge0".into(),
                "IP_RPFILTER".into(),
                "fib_validate_source+0x10".into(),
            )),
            fragments: None,
            path: whole_path(),
        };
        assert_eq!(
            one(|j| j.summary(&s, "proxy-a")),
            json!({
                "type": "flow", "proto": "tcp", "vip": "20.0.0.1", "vip_port": 4000,
                "client": "169.254.100.150", "client_port": 35000, "flow_id": 1,
                "netns": "proxy-a",
                "egress": {
                    "nexthop": "172.16.0.5", "ifname": "conduit-a.-6496", "flooded": false,
                    "packets": 4, "records": 3, "consistent": true, "nexthop_in_route": true,
                    "nexthops": [{"nexthop": "172.16.0.5", "eth_dst": "02:00:00:00:00:0b",
                                  "ifname": "conduit-a.-6496", "flooded": false,
                                  "packets": 4, "first_rel_ns": 120}],
                    "rule": {"priority": 32765, "selector": "from 20.0.0.1", "table": 7},
                    "table": 7, "candidates": candidates_json(),
                },
                "ingress": {"ifname": "conduit-a.-3150", "packets": 6, "records": 5},
                "counted": true,
                "drops": {"packets": 2, "last": {"ifname": "bridge0", "reason": "IP_RPFILTER",
                                                "location": "fib_validate_source+0x10"}},
                "prediction": {"agree": 3, "disagree": 1, "unknown": 0,
                               "hash_source": "skb L4 hash reused by policy 1"},
                "fragments": null,
                "path": {
                    "frontend_in": {"netns": "lbfe-a", "ifname": "ext-vlan0"},
                    "lb": [{"netns": "lbfe-a", "ts_ns": 1200, "mark": 5002,
                            "rule": {"priority": 32765, "selector": "from 20.0.0.1", "table": 7},
                            "table": 5002, "target_ip": "172.16.0.9",
                            "dev": "conduit-a.-b89d", "queued_ns": 200,
                            "marked_after_ingress": true}],
                    "proxy_to_target": {"netns": "proxy-a", "ifname": "proxy.cond-0a85"},
                    "target": {"netns": "target-a-2", "ifname": "nsm-0", "packets": 6},
                    "frontend_out": {"netns": "lbfe-b", "ifname": "ext-vlan0",
                                     "nexthop": "169.254.100.150"},
                    "asymmetric": true,
                },
            })
        );

        let flooded = NextHopUse {
            ip: None,
            mac: [2, 0, 0, 0, 0, 0xc],
            port: None,
            flooded: true,
            packets: 1,
            first_rel_ns: 300,
        };
        let split = FlowSummary {
            flow: key6(),
            ingress_port: None,
            ingress_packets: 0,
            counted: false,
            ingress_records: 0,
            egress_records: 5,
            nexthops: vec![s.nexthops[0].clone(), flooded],
            consistent: false,
            rule: None,
            table: None,
            candidates: vec![],
            nexthop_in_route: None,
            predictions: PredictionStats::default(),
            drops: 0,
            last_drop: None,
            fragments: Some(crate::correlate::flows::FragSummary {
                routed: 6,
                datagrams: 2,
                split: 1,
                split_ids: vec![0x1234],
                orphans: 1,
            }),
            ..s
        };
        let v = one(|j| j.summary(&split, ""));
        assert_eq!(v["netns"], json!(""));
        assert_eq!(
            v["egress"],
            json!({
                "nexthop": null, "ifname": null, "flooded": false, "packets": 4,
                "records": 5, "consistent": false, "nexthop_in_route": null,
                "nexthops": [
                    {"nexthop": "172.16.0.5", "eth_dst": "02:00:00:00:00:0b",
                     "ifname": "conduit-a.-6496", "flooded": false, "packets": 4,
                     "first_rel_ns": 120},
                    {"nexthop": null, "eth_dst": "02:00:00:00:00:0c", "ifname": null,
                     "flooded": true, "packets": 1, "first_rel_ns": 300},
                ],
                "rule": null, "table": null, "candidates": [],
            })
        );
        assert_eq!(
            v["ingress"],
            json!({"ifname": null, "packets": 0, "records": 0})
        );
        assert_eq!(v["counted"], json!(false));
        assert_eq!(
            v["fragments"],
            json!({"routed": 6, "datagrams": 2, "split": 1, "split_ids": [0x1234], "orphans": 1})
        );
        assert_eq!(v["drops"], json!({"packets": 0, "last": null}));
        assert_eq!(
            v["prediction"],
            json!({"agree": 0, "disagree": 0, "unknown": 0, "hash_source": null})
        );
        assert_eq!(
            (&v["proto"], &v["vip"], &v["client"]),
            (&json!("udp"), &json!("2000::1"), &json!("100:100::150"))
        );
    }
}
