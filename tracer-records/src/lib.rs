//! The tracer's JSON lines as a reader gets them: owned, typed records for the end-to-end
//! tests, the bench and users' Rust tools
//! (`serde_json::from_str::<tracer_records::Line>(line)`).
//!
//! The writer (the tracer's `output::json`) has its own borrowing record types on purpose: it serialises
//! what the flow table holds without an allocation per record (the 1 million records/s
//! target), which owned types cannot do. The two describe one format, and the record-form
//! tests of `output::json` keep them so: every line they write must read back into a
//! [`Line`] and serialise again to the very same JSON (no field missed, none renamed).
//!
//! Field names are the output's interface: add fields, do not rename them.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// One line of `tracer --json`: the record and what every record carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    #[serde(flatten)]
    pub record: Record,
    #[serde(flatten)]
    pub stamp: Stamp,
}

/// Where and when: `node` on every record, the wall clock next to every `ts_ns`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Stamp {
    /// Absent only in the writer's own record-form tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Nanoseconds since the Unix epoch (an i64 holds them until 2262; the writer's i128
    /// would not read back through serde's buffering of flattened fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// On the ready record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_read_error_ns: Option<u64>,
}

/// Every record, by its `"type"`.
// A `flow` record is several times a hop's size; readers hold one line at a time, so the
// variants stay unboxed for plain matching.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Ready(Ready),
    Hop(Hop),
    Decision(Decision),
    Route(Route),
    Lost(Lost),
    Evicted(Evicted),
    Drop(Drop),
    Change(Change),
    Distribution(Distribution),
    Flow(Flow),
}

/// The tracer is attached (one per traced namespace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    pub netns: String,
    pub role: String,
    pub vips: Vec<IpAddr>,
    /// "--vip", or "discovery".
    pub vips_from: String,
    pub client_port: Option<u16>,
    pub interfaces: Vec<String>,
    pub hooks: Vec<String>,
    pub refused: Vec<HookReason>,
    pub unavailable: Vec<HookReason>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookReason {
    pub hook: String,
    pub reason: String,
}

/// A packet seen on an interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hop {
    pub flow_id: u32,
    pub ts_ns: u64,
    pub rel_ns: u64,
    pub netns: String,
    pub role: String,
    pub ifname: String,
    /// "ingress" or "egress": the packet's direction on the interface.
    pub dir: String,
    /// "ingress" (gateway towards target) or "egress" (target towards gateway): the
    /// packet's direction on the Meridio path.
    pub path: String,
    pub proto: String,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub vip: IpAddr,
    pub len: u16,
    pub tcp_flags: String,
    pub eth_src: String,
    pub eth_dst: String,
    pub mark: u32,
    pub hash: u32,
    pub vlan: u16,
    pub vlan_tags: u8,
    pub vlan_pcp: u8,
    pub vlan_tpid: u16,
    pub vlan_inner: u16,
    pub vlan_inner_pcp: u8,
    pub frag: Option<Frag>,
    pub routed: bool,
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
pub struct FlowKey {
    pub proto: String,
    pub vip: IpAddr,
    pub vip_port: u16,
    pub client: IpAddr,
    pub client_port: u16,
}

/// The routing decision of a routed hop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    #[serde(flatten)]
    pub flow: FlowKey,
    pub flow_id: u32,
    pub ts_ns: u64,
    pub netns: String,
    pub ifname: String,
    pub rule: Option<Rule>,
    pub table: Option<u32>,
    pub candidates: Vec<Candidate>,
    pub candidates_changed: bool,
    pub skb_hash: u32,
    pub hash: Option<u32>,
    pub hash_source: String,
    pub predicted: Option<IpAddr>,
    pub actual: Option<IpAddr>,
    pub agree: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub priority: u32,
    pub selector: String,
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
pub struct Route {
    #[serde(flatten)]
    pub flow: FlowKey,
    pub flow_id: u32,
    pub ts_ns: u64,
    pub rel_ns: u64,
    pub netns: String,
    pub role: String,
    pub path: String,
    pub table: u32,
    pub gw: IpAddr,
    pub dev: String,
    pub err: i32,
    pub iif: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
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

/// Per-hop counters the kernel's LRU map evicted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evicted {
    pub count: u64,
}

/// A packet of the flow the kernel freed as a drop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drop {
    #[serde(flatten)]
    pub flow: FlowKey,
    pub flow_id: u32,
    pub ts_ns: u64,
    pub rel_ns: u64,
    pub netns: String,
    pub role: String,
    pub ifname: String,
    pub path: String,
    pub reason: String,
    pub location: String,
    pub mark: u32,
}

/// A change of a traced namespace's routing state, links or neighbours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub ts_ns: u64,
    pub netns: String,
    #[serde(flatten)]
    pub what: What,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum What {
    Route {
        table: u32,
        family: String,
        before: Vec<Candidate>,
        after: Vec<Candidate>,
    },
    Rule {
        added: bool,
        rule: Rule,
    },
    Link {
        added: bool,
        ifname: String,
    },
    Neighbour {
        ip: IpAddr,
        before: Option<String>,
        after: Option<String>,
    },
    Attached {
        added: bool,
        ifname: String,
    },
    Netns {
        added: bool,
        role: String,
        name: String,
    },
}

/// How a VIP's flows spread over the next-hops (at the end of a run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub vip: IpAddr,
    pub flows: u64,
    pub nexthops: Vec<Share>,
    /// Per target pod the flows reached.
    #[serde(default)]
    pub targets: Vec<TargetShare>,
    /// The frontends' load-balancer tables (nfqlb's Maglev table) that name these targets.
    #[serde(default)]
    pub lb_tables: Vec<LbTable>,
}

/// A frontend's load-balancer table beside the flows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LbTable {
    /// The frontend pod and the table's name (nfqlb's shared memory).
    pub netns: String,
    pub name: String,
    /// Lookup table size.
    pub m: u32,
    pub active: Vec<LbSlot>,
    /// Marks this VIP's flows went to that the table has no active target for.
    pub not_in_table: Vec<u32>,
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
pub struct TargetShare {
    pub netns: String,
    pub target_ip: Option<IpAddr>,
    pub mark: Option<u32>,
    pub flows: u64,
    pub packets: u64,
}

impl Distribution {
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
pub struct Share {
    pub nexthop: Option<IpAddr>,
    pub ifname: Option<String>,
    pub flows: u64,
    pub packets: u64,
}

/// A flow's summary: exact counts from the kernel, the next-hop(s) it took, the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    #[serde(flatten)]
    pub flow: FlowKey,
    pub flow_id: u32,
    pub netns: String,
    pub egress: Egress,
    pub ingress: Ingress,
    pub counted: bool,
    pub drops: Drops,
    pub prediction: Prediction,
    pub fragments: Option<Fragments>,
    /// The pods the flow crossed (absent in lines of tracers before it).
    #[serde(default)]
    pub path: FlowPath,
}

/// A flow's whole path: the frontend it entered by, the load balancer's choice(s), the
/// proxy port toward the target, the target pod, and the frontend its replies left by.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FlowPath {
    pub frontend_in: Option<At>,
    pub lb: Vec<LbChoice>,
    pub proxy_to_target: Option<At>,
    pub target: Option<TargetAt>,
    pub frontend_out: Option<LeftBy>,
    /// The replies left by another frontend than the requests entered by.
    pub asymmetric: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct At {
    pub netns: String,
    pub ifname: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetAt {
    pub netns: String,
    pub ifname: String,
    /// Requests that reached it (the kernel's count where read).
    pub packets: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeftBy {
    pub netns: String,
    pub ifname: String,
    /// The frontend's next-hop toward the gateway.
    pub nexthop: Option<IpAddr>,
}

/// A frontend's choice of target: the route lookup of the flow's request after the load
/// balancer set the mark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LbChoice {
    pub netns: String,
    pub ts_ns: u64,
    pub mark: u32,
    /// The fwmark rule that selected the table.
    pub rule: Option<Rule>,
    pub table: u32,
    pub target_ip: IpAddr,
    pub dev: String,
    /// From the request entering the frontend to its lookup (the time in nfqlb's queue).
    pub queued_ns: Option<u64>,
    /// The mark was set after the TC ingress hook (by netfilter: nfqlb's NFQUEUE verdict).
    pub marked_after_ingress: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Egress {
    pub nexthop: Option<IpAddr>,
    pub ifname: Option<String>,
    pub flooded: bool,
    pub packets: u64,
    pub records: u64,
    pub consistent: bool,
    pub nexthop_in_route: Option<bool>,
    pub nexthops: Vec<NextHopTaken>,
    pub rule: Option<Rule>,
    pub table: Option<u32>,
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextHopTaken {
    pub nexthop: Option<IpAddr>,
    pub eth_dst: String,
    pub ifname: Option<String>,
    pub flooded: bool,
    pub packets: u64,
    pub first_rel_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ingress {
    pub ifname: Option<String>,
    pub packets: u64,
    pub records: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drops {
    pub packets: u64,
    pub last: Option<LastDrop>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastDrop {
    pub ifname: String,
    pub reason: String,
    pub location: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub agree: u64,
    pub disagree: u64,
    pub unknown: u64,
    pub hash_source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fragments {
    pub routed: u64,
    pub datagrams: u64,
    pub split: u64,
    pub split_ids: Vec<u32>,
    pub orphans: u64,
}
