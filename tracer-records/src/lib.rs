//! The tracer's JSON lines as typed records: the one set of types the tracer writes (its
//! `output::json` serialises these very types, borrowing what its flow table holds) and
//! readers parse (`serde_json::from_str::<tracer_records::Line>(line)`): the end-to-end
//! tests, `tracer merge`, the bench and users' Rust tools.
//!
//! Strings (and lists the writer has at hand) are [`Cow`]s: the writer borrows them, so a
//! hop costs no allocation (the 1 million records/s target); a reader always gets them
//! owned (no `#[serde(borrow)]`), so a record read is a `Line<'static>` that outlives its
//! text.
//!
//! Field names are the output's interface: add fields, do not rename them.
use std::{borrow::Cow, net::IpAddr};

use serde::{Deserialize, Serialize};

pub mod discover;

/// One line of `tracer --json`: the record and what every record carries.
///
/// ```
/// let l: tracer_records::Line = serde_json::from_str(
///     r#"{"type":"lost","count":3,"total":5,"node":"worker-1"}"#,
/// )
/// .unwrap();
/// assert_eq!(l.record.type_name(), "lost");
/// assert_eq!(l.stamp.node.as_deref(), Some("worker-1"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line<'a> {
    #[serde(flatten)]
    pub record: Record<'a>,
    #[serde(flatten)]
    pub stamp: Stamp<'a>,
}

/// A line of `tracer merge --json`: a node's line, and on a flow's record the number of
/// its timeline (and `late` under --follow when newer records went out before it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Merged<'a> {
    #[serde(flatten)]
    pub line: Line<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late: Option<bool>,
}

/// Where and when: `node` on every record, and next to a `ts_ns` the same instant on the
/// wall clock (`wall_ns` since the Unix epoch, `time` in RFC 3339), what `tracer merge`
/// orders several nodes' records by.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Stamp<'a> {
    /// Absent only in the writer's own record-form tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Cow<'a, str>>,
    /// Nanoseconds since the Unix epoch (an i64 holds them until 2262; the writer's i128
    /// would not read back through serde's buffering of flattened fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Cow<'a, str>>,
    /// On the ready record: how far the tracer's MONOTONIC -> REALTIME offset can be off
    /// from the reading alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_read_error_ns: Option<u64>,
}

/// Every record, by its `"type"` (written first).
// A `flow` record is several times a hop's size; the writer builds one on the stack at a
// time and readers hold one line at a time, so the variants stay unboxed for plain
// matching.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record<'a> {
    Ready(Ready<'a>),
    Hop(Hop<'a>),
    Decision(Decision<'a>),
    Route(Route<'a>),
    Lost(Lost),
    Evicted(Evicted),
    Drop(Drop<'a>),
    Change(Change<'a>),
    Distribution(Distribution<'a>),
    Flow(Flow<'a>),
}

impl Record<'_> {
    /// The record's `"type"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Record::Ready(_) => "ready",
            Record::Hop(_) => "hop",
            Record::Decision(_) => "decision",
            Record::Route(_) => "route",
            Record::Lost(_) => "lost",
            Record::Evicted(_) => "evicted",
            Record::Drop(_) => "drop",
            Record::Change(_) => "change",
            Record::Distribution(_) => "distribution",
            Record::Flow(_) => "flow",
        }
    }

    /// The flow a flow-level record belongs to, from the client's side; a hop's is read
    /// from its addresses (the VIP side is the one that is the VIP).
    pub fn flow_key(&self) -> Option<FlowKey<'_>> {
        match self {
            Record::Hop(h) => {
                let (client, client_port, vip_port) = if h.dst == h.vip {
                    (h.src, h.sport, h.dport)
                } else {
                    (h.dst, h.dport, h.sport)
                };
                Some(FlowKey {
                    proto: Cow::Borrowed(&h.proto),
                    vip: h.vip,
                    vip_port,
                    client,
                    client_port,
                })
            }
            Record::Decision(d) => Some(d.flow.borrowed()),
            Record::Route(r) => Some(r.flow.borrowed()),
            Record::Drop(d) => Some(d.flow.borrowed()),
            Record::Flow(f) => Some(f.flow.borrowed()),
            Record::Ready(_)
            | Record::Lost(_)
            | Record::Evicted(_)
            | Record::Change(_)
            | Record::Distribution(_) => None,
        }
    }

    /// The namespace a record is about, where it names one (a flow summary of a node
    /// without the proxy names "").
    pub fn netns(&self) -> Option<&str> {
        match self {
            Record::Ready(r) => Some(&r.netns),
            Record::Hop(r) => Some(&r.netns),
            Record::Decision(r) => Some(&r.netns),
            Record::Route(r) => Some(&r.netns),
            Record::Drop(r) => Some(&r.netns),
            Record::Change(r) => Some(&r.netns),
            Record::Flow(r) => Some(&r.netns),
            Record::Lost(_) | Record::Evicted(_) | Record::Distribution(_) => None,
        }
    }

    /// The kernel (CLOCK_MONOTONIC) time of a record that has one.
    pub fn ts_ns(&self) -> Option<u64> {
        match self {
            Record::Hop(Hop { ts_ns, .. })
            | Record::Decision(Decision { ts_ns, .. })
            | Record::Route(Route { ts_ns, .. })
            | Record::Drop(Drop { ts_ns, .. })
            | Record::Change(Change { ts_ns, .. }) => Some(*ts_ns),
            Record::Ready(_)
            | Record::Lost(_)
            | Record::Evicted(_)
            | Record::Distribution(_)
            | Record::Flow(_) => None,
        }
    }
}

/// The tracer is attached (one per traced namespace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ready<'a> {
    pub netns: Cow<'a, str>,
    pub role: Cow<'a, str>,
    pub vips: Cow<'a, [IpAddr]>,
    /// "--vip", or "discovery" (no --vip given).
    pub vips_from: Cow<'a, str>,
    pub client_port: Option<u16>,
    pub interfaces: Cow<'a, [String]>,
    pub hooks: Cow<'a, [String]>,
    pub refused: Vec<HookReason<'a>>,
    pub unavailable: Vec<HookReason<'a>>,
    pub notes: Cow<'a, [String]>,
    /// The record budget in force: "all", "all (--port)", "none" or "first N per hop"
    /// (the kernel counts every packet whatever it is; "" in lines of older tracers).
    #[serde(default)]
    pub records: Cow<'a, str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookReason<'a> {
    pub hook: Cow<'a, str>,
    pub reason: Cow<'a, str>,
}

/// A packet seen on an interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hop<'a> {
    pub flow_id: u32,
    pub ts_ns: u64,
    pub rel_ns: u64,
    pub netns: Cow<'a, str>,
    pub role: Cow<'a, str>,
    pub ifname: Cow<'a, str>,
    /// "ingress" or "egress": the packet's direction on the interface.
    pub dir: Cow<'a, str>,
    /// "ingress" (gateway towards target) or "egress" (target towards gateway): the
    /// packet's direction on the Meridio path.
    pub path: Cow<'a, str>,
    pub proto: Cow<'a, str>,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub vip: IpAddr,
    pub len: u16,
    pub tcp_flags: Cow<'a, str>,
    pub eth_src: Cow<'a, str>,
    pub eth_dst: Cow<'a, str>,
    pub mark: u32,
    pub hash: u32,
    /// The outer VLAN id (802.1Q, or the 802.1ad tag of a QinQ frame), 0 without a tag.
    pub vlan: u16,
    /// Tags seen (0 to 2); the outer tag's priority and TPID; the inner (QinQ) tag's id
    /// and priority, 0 without (and absent in lines of tracers before them).
    #[serde(default)]
    pub vlan_tags: u8,
    #[serde(default)]
    pub vlan_pcp: u8,
    #[serde(default)]
    pub vlan_tpid: u16,
    #[serde(default)]
    pub vlan_inner: u16,
    #[serde(default)]
    pub vlan_inner_pcp: u8,
    /// Null unless the packet is an IP fragment.
    pub frag: Option<Frag>,
    pub routed: bool,
    /// Only on a hop that names its next-hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nexthop: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frag {
    pub id: u32,
    pub offset: u16,
    pub more: bool,
    pub orphan: bool,
}

/// A flow's key, as every flow-level record carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlowKey<'a> {
    pub proto: Cow<'a, str>,
    pub vip: IpAddr,
    pub vip_port: u16,
    pub client: IpAddr,
    pub client_port: u16,
}

impl FlowKey<'_> {
    /// The same key, borrowing its protocol.
    pub fn borrowed(&self) -> FlowKey<'_> {
        FlowKey {
            proto: Cow::Borrowed(&self.proto),
            ..*self
        }
    }
}

/// The routing decision of a routed hop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision<'a> {
    #[serde(flatten)]
    pub flow: FlowKey<'a>,
    pub flow_id: u32,
    pub ts_ns: u64,
    pub netns: Cow<'a, str>,
    pub ifname: Cow<'a, str>,
    pub rule: Option<Rule<'a>>,
    pub table: Option<u32>,
    pub candidates: Vec<Candidate>,
    pub candidates_changed: bool,
    pub skb_hash: u32,
    pub hash: Option<u32>,
    pub hash_source: Cow<'a, str>,
    pub predicted: Option<IpAddr>,
    pub actual: Option<IpAddr>,
    /// Null when the hash is unknowable.
    pub agree: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule<'a> {
    pub priority: u32,
    pub selector: Cow<'a, str>,
    pub table: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub gw: Option<IpAddr>,
    pub ifindex: u32,
    pub weight: u32,
    pub alive: bool,
}

/// A route lookup of the flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route<'a> {
    #[serde(flatten)]
    pub flow: FlowKey<'a>,
    pub flow_id: u32,
    pub ts_ns: u64,
    pub rel_ns: u64,
    pub netns: Cow<'a, str>,
    pub role: Cow<'a, str>,
    pub path: Cow<'a, str>,
    pub table: u32,
    pub gw: IpAddr,
    pub dev: Cow<'a, str>,
    pub err: i32,
    pub iif: i32,
    /// Only when a rule selected the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule<'a>>,
    /// The mark the lookup used (what fwmark rules select on).
    #[serde(default)]
    pub mark: u32,
    /// The lookup did not follow its packet's ingress hook: netfilter set the mark (nfqlb's
    /// NFQUEUE verdict) and the lookup ran after it, tied to its packet at its egress hook.
    #[serde(default)]
    pub after_ingress: bool,
    /// Only on a frontend's lookup after the load balancer's queue: from the request
    /// entering the frontend to this lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_ns: Option<u64>,
}

/// Per-packet records the ring lost (`count` now, `total` so far).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lost {
    pub count: u64,
    pub total: u64,
}

/// What the run's bounds left out, at the end of a run where any did: `count`, per-hop
/// counters the kernel's LRU map evicted (`--hop-entries`); the rest, each absent when 0,
/// one per other bound (docs/limits.md).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Evicted {
    pub count: u64,
    /// Flows summarised early, the table of live flows full (`--max-flows`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub flows: u64,
    /// Packets the kernel's per-VIP totals map had no room for.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub totals_full: u64,
    /// Kernel multipath hash samples dropped, a flow's queue of them full.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hash_samples: u64,
    /// Fragmented datagrams not followed for the split check, past a flow's bound.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub datagrams: u64,
    /// Requests in a load balancer's queue forgotten, past a flow's bound.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub queued: u64,
    /// Load balancer changes of a flow not kept, past its bound.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lb_changes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A packet of the flow the kernel freed as a drop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drop<'a> {
    #[serde(flatten)]
    pub flow: FlowKey<'a>,
    pub flow_id: u32,
    pub ts_ns: u64,
    pub rel_ns: u64,
    pub netns: Cow<'a, str>,
    pub role: Cow<'a, str>,
    pub ifname: Cow<'a, str>,
    pub path: Cow<'a, str>,
    pub reason: Cow<'a, str>,
    pub location: Cow<'a, str>,
    pub mark: u32,
}

/// A change of a traced namespace's routing state, links or neighbours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change<'a> {
    pub ts_ns: u64,
    pub netns: Cow<'a, str>,
    #[serde(flatten)]
    pub what: What<'a>,
    pub text: Cow<'a, str>,
}

/// A change's own fields, after `"what"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum What<'a> {
    Route {
        table: u32,
        family: Cow<'a, str>,
        before: Vec<Candidate>,
        after: Vec<Candidate>,
    },
    Rule {
        added: bool,
        rule: Rule<'a>,
    },
    Link {
        added: bool,
        ifname: Cow<'a, str>,
    },
    Neighbour {
        ip: IpAddr,
        before: Option<Cow<'a, str>>,
        after: Option<Cow<'a, str>>,
    },
    Attached {
        added: bool,
        ifname: Cow<'a, str>,
    },
    Netns {
        added: bool,
        role: Cow<'a, str>,
        name: Cow<'a, str>,
    },
}

/// How a VIP's flows spread over the next-hops (at the end of a run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution<'a> {
    pub vip: IpAddr,
    pub flows: u64,
    pub nexthops: Vec<Share<'a>>,
    /// Per target pod the flows reached.
    #[serde(default)]
    pub targets: Vec<TargetShare<'a>>,
    /// The frontends' load-balancer tables (nfqlb's Maglev table) that name these targets.
    #[serde(default)]
    pub lb_tables: Vec<LbTable<'a>>,
}

/// A frontend's load-balancer table beside the flows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LbTable<'a> {
    /// The frontend pod and the table's name (nfqlb's shared memory).
    pub netns: Cow<'a, str>,
    pub name: Cow<'a, str>,
    /// Lookup table size.
    pub m: u32,
    pub active: Vec<LbSlot>,
    /// Marks this VIP's flows went to that the table has no active target for.
    pub not_in_table: Cow<'a, [u32]>,
}

/// An active target of a load-balancer table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LbSlot {
    pub mark: u32,
    /// Lookup table entries pointing at it (its share is entries / m).
    pub entries: u32,
    /// Flows of the VIP that went to it.
    pub flows: u64,
}

/// The flows (and requests) one target pod got, and the address and mark the frontends'
/// load balancer sent them to and with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetShare<'a> {
    pub netns: Cow<'a, str>,
    pub target_ip: Option<IpAddr>,
    pub mark: Option<u32>,
    pub flows: u64,
    pub packets: u64,
}

impl Distribution<'_> {
    /// The flows that reached the target pod `netns` (0 when none did).
    pub fn flows_to(&self, netns: &str) -> u64 {
        self.targets
            .iter()
            .find(|t| t.netns == netns)
            .map_or(0, |t| t.flows)
    }

    /// The flows that took `nexthop` (0 when none did).
    pub fn flows_via(&self, nexthop: IpAddr) -> u64 {
        self.nexthops
            .iter()
            .find(|n| n.nexthop == Some(nexthop))
            .map_or(0, |n| n.flows)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Share<'a> {
    pub nexthop: Option<IpAddr>,
    pub ifname: Option<Cow<'a, str>>,
    pub flows: u64,
    pub packets: u64,
}

/// A flow's summary: exact counts from the kernel, the next-hop(s) it took, the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow<'a> {
    #[serde(flatten)]
    pub flow: FlowKey<'a>,
    pub flow_id: u32,
    pub netns: Cow<'a, str>,
    pub egress: Egress<'a>,
    pub ingress: Ingress<'a>,
    pub counted: bool,
    pub drops: Drops<'a>,
    pub prediction: Prediction<'a>,
    /// Null unless the flow had fragments.
    pub fragments: Option<Fragments<'a>>,
    /// The pods the flow crossed (absent in lines of tracers before it).
    #[serde(default)]
    pub path: FlowPath<'a>,
    /// False when a per-flow figure above is not exact any more, `not_exact` saying why;
    /// both absent for an exact flow (its line is as before they existed).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub exact: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_exact: Vec<Inexact>,
}

/// Why a flow summary's own figures are not exact (the per-VIP distribution stays exact:
/// it is read from the kernel's totals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inexact {
    /// The kernel's per-hop counter map (LRU, `--hop-entries`) evicted entries while the
    /// flow was live: its packet counts may be short.
    CountersEvicted,
    /// `--max-flows` was reached and the flow, idle longest, was summarised early: packets
    /// after this summary start a new flow.
    FlowEvictedEarly,
    /// The ring buffer lost records while the flow was live: the figures taken from
    /// records (records, predictions, fragments, the path, counts when not `counted`) may
    /// be short.
    RecordsLost,
}

impl Inexact {
    /// In words, for the text view.
    pub fn words(self) -> &'static str {
        match self {
            Inexact::CountersEvicted => {
                "per-hop counters were evicted while it was live (raise --hop-entries)"
            }
            Inexact::FlowEvictedEarly => {
                "summarised early, the flow table being full (--max-flows)"
            }
            Inexact::RecordsLost => "records were lost while it was live (ring buffer full)",
        }
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// A flow's whole path: the frontend it entered by, the load balancer's choice(s), the
/// proxy port toward the target, the target pod, and the frontend its replies left by.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FlowPath<'a> {
    pub frontend_in: Option<At<'a>>,
    pub lb: Vec<LbChoice<'a>>,
    pub proxy_to_target: Option<At<'a>>,
    pub target: Option<TargetAt<'a>>,
    pub frontend_out: Option<LeftBy<'a>>,
    /// The replies left by another frontend than the requests entered by.
    pub asymmetric: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct At<'a> {
    pub netns: Cow<'a, str>,
    pub ifname: Cow<'a, str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetAt<'a> {
    pub netns: Cow<'a, str>,
    pub ifname: Cow<'a, str>,
    /// Requests that reached it (the kernel's count where read).
    pub packets: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeftBy<'a> {
    pub netns: Cow<'a, str>,
    pub ifname: Cow<'a, str>,
    /// The frontend's next-hop toward the gateway.
    pub nexthop: Option<IpAddr>,
}

/// A frontend's choice of target: the route lookup of the flow's request after the load
/// balancer set the mark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LbChoice<'a> {
    pub netns: Cow<'a, str>,
    pub ts_ns: u64,
    pub mark: u32,
    /// The fwmark rule that selected the table.
    pub rule: Option<Rule<'a>>,
    pub table: u32,
    pub target_ip: IpAddr,
    pub dev: Cow<'a, str>,
    /// From the request entering the frontend to its lookup (the time in nfqlb's queue).
    pub queued_ns: Option<u64>,
    /// The mark was set after the TC ingress hook (by netfilter: nfqlb's NFQUEUE verdict).
    pub marked_after_ingress: bool,
}

/// A flow summary's egress: the next-hop when there was one, and every one taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Egress<'a> {
    pub nexthop: Option<IpAddr>,
    pub ifname: Option<Cow<'a, str>>,
    pub flooded: bool,
    pub packets: u64,
    pub records: u64,
    pub consistent: bool,
    pub nexthop_in_route: Option<bool>,
    pub nexthops: Vec<NextHopTaken<'a>>,
    pub rule: Option<Rule<'a>>,
    pub table: Option<u32>,
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextHopTaken<'a> {
    pub nexthop: Option<IpAddr>,
    pub eth_dst: Cow<'a, str>,
    pub ifname: Option<Cow<'a, str>>,
    pub flooded: bool,
    pub packets: u64,
    pub first_rel_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ingress<'a> {
    pub ifname: Option<Cow<'a, str>>,
    pub packets: u64,
    pub records: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drops<'a> {
    pub packets: u64,
    pub last: Option<LastDrop<'a>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastDrop<'a> {
    pub ifname: Cow<'a, str>,
    pub reason: Cow<'a, str>,
    pub location: Cow<'a, str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction<'a> {
    pub agree: u64,
    pub disagree: u64,
    pub unknown: u64,
    pub hash_source: Option<Cow<'a, str>>,
}

/// A flow's fragments (from its records): fragment records on the routed hop, datagrams,
/// datagrams split over next-hops (and the first few ids), fragments of unknown flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fragments<'a> {
    pub routed: u64,
    pub datagrams: u64,
    pub split: u64,
    pub split_ids: Cow<'a, [u32]>,
    pub orphans: u64,
}
