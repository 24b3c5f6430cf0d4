//! What the flow table hands the renderers per event: a hop, a route lookup, a drop, and
//! the key and labels they carry.
use std::{collections::HashSet, net::IpAddr};

use crate::{
    correlate::multipath::HashSource,
    discover::Role,
    events::{Drop, FibLookup, Mac, Packet},
    netns::kernel_state::{NextHop, Rule},
};

/// Direction of travel relative to the VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathDir {
    /// Toward the VIP (gateway -> frontend -> proxy -> target).
    Ingress,
    /// From the VIP (target -> proxy -> frontend -> gateway).
    Egress,
}

impl PathDir {
    pub fn as_str(self) -> &'static str {
        match self {
            PathDir::Ingress => "ingress",
            PathDir::Egress => "egress",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub proto: u8,
    pub vip: IpAddr,
    pub vip_port: u16,
    pub client: IpAddr,
    pub client_port: u16,
}

impl FlowKey {
    /// The flow a packet (or lookup) belongs to, and its path; `None` when neither address
    /// is a VIP.
    pub fn classify(
        vips: &HashSet<IpAddr>,
        proto: u8,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
    ) -> Option<(FlowKey, PathDir)> {
        if vips.contains(&dst) {
            Some((
                FlowKey {
                    proto,
                    vip: dst,
                    vip_port: dport,
                    client: src,
                    client_port: sport,
                },
                PathDir::Ingress,
            ))
        } else if vips.contains(&src) {
            Some((
                FlowKey {
                    proto,
                    vip: src,
                    vip_port: sport,
                    client: dst,
                    client_port: dport,
                },
                PathDir::Egress,
            ))
        } else {
            None
        }
    }
}

/// Where a hop sits in the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HopKind {
    /// A bridge port (conduit or proxy.cond port): L2.
    Port,
    /// An L3 interface (bridge0): egress here is the routed hop.
    L3,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Hop {
    pub flow: FlowKey,
    pub flow_id: u32,
    /// Label of the namespace (pod) the hop was seen in, and its role.
    pub netns: String,
    pub role: Role,
    pub path: PathDir,
    /// Nanoseconds since the flow's first event.
    pub rel_ns: u64,
    pub ifname: String,
    pub kind: HopKind,
    pub packet: Packet,
    /// On the routed egress hop: the next-hop IP its Ethernet destination belongs to.
    pub nexthop: Option<IpAddr>,
    /// True on the routed hop when the neighbour table has no entry for the MAC.
    pub nexthop_unknown: bool,
    /// On the routed egress hop: why the packet went where it went.
    pub decision: Option<Decision>,
}

/// The routing decision behind one routed packet: rule, table, candidates, hash, and the
/// next-hop the kernel's multipath thresholds give for that hash, next to the actual one.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub rule: Option<Rule>,
    pub table: Option<u32>,
    pub candidates: Vec<NextHop>,
    /// First decision of the flow, or the candidates differ from the previous one.
    pub candidates_changed: bool,
    /// The skb hash seen at TC on the routed hop.
    pub skb_hash: u32,
    /// The hash compared with the thresholds (the kernel's, already shifted), when known.
    pub hash: Option<u32>,
    pub source: HashSource,
    pub predicted: Option<IpAddr>,
    pub actual: Option<IpAddr>,
}

impl Decision {
    /// `None` when the tracer cannot know the hash (and says why in `source`).
    pub fn agrees(&self) -> Option<bool> {
        self.hash?;
        Some(self.predicted.is_some() && self.predicted == self.actual)
    }
}

/// How often a flow's predictions matched the next-hop taken.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PredictionStats {
    pub agree: u64,
    pub disagree: u64,
    pub unknown: u64,
    /// The hash source of the latest decision (why a prediction was or was not possible).
    pub source: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouteHop {
    pub flow: FlowKey,
    pub flow_id: u32,
    pub netns: String,
    pub role: Role,
    pub path: PathDir,
    pub rel_ns: u64,
    pub lookup: FibLookup,
    /// The policy rule that points to the looked-up table for this source, when there is one.
    pub rule: Option<Rule>,
    /// A frontend's lookup after the load balancer's queue: from the request entering the
    /// frontend to this lookup.
    pub queued_ns: Option<u64>,
}

/// A traced packet the kernel dropped in the traced namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct DropHop {
    pub flow: FlowKey,
    pub flow_id: u32,
    pub netns: String,
    pub role: Role,
    pub path: PathDir,
    pub rel_ns: u64,
    /// Interface the packet was on (`?` when the namespace does not know the index).
    pub ifname: String,
    /// The kernel's drop reason name (`IP_INNOROUTES`, `IP_RPFILTER`, ...).
    pub reason: String,
    /// Where in the kernel: `function+0xoffset`.
    pub location: String,
    pub drop: Drop,
}

/// One next-hop a flow's egress packets were sent to.
#[derive(Clone, Debug, PartialEq)]
pub struct NextHopUse {
    pub ip: Option<IpAddr>,
    pub mac: Mac,
    /// The bridge port the frames leave by, from the FDB; `None` while flooded.
    pub port: Option<String>,
    /// The bridge did not know the MAC: the frames went out on every port.
    pub flooded: bool,
    pub packets: u64,
    pub first_rel_ns: u64,
}
