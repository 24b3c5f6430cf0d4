//! One flow out of the records: which flow (by number or client), and what the picture
//! shows of it: the pods it crossed in path order, their ports, and its events in time order.
use std::{collections::HashMap, net::SocketAddr};

use anyhow::{bail, Result};

use super::records::{Decision, Drop, Flow, FlowKey, Hop, Line, Record, Route};

/// Which flow to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The only flow, or the first (with a note when there are more).
    First,
    /// Flow N: the tracer's flow number (`flow #N`) for one node's lines; the timeline
    /// number of `tracer merge` (order of first appearance) for several nodes'.
    Number(u32),
    /// The flow of this client address and port.
    Client(SocketAddr),
}

/// The flow key of any flow-level record, owned (the picture keeps it past the line).
pub fn key_of(r: &Record) -> Option<FlowKey> {
    r.flow_key().map(|k| FlowKey {
        proto: k.proto.into_owned().into(),
        ..k
    })
}

fn flow_id(r: &Record) -> Option<u32> {
    match r {
        Record::Hop(h) => Some(h.flow_id),
        Record::Decision(d) => Some(d.flow_id),
        Record::Route(r) => Some(r.flow_id),
        Record::Drop(d) => Some(d.flow_id),
        Record::Flow(f) => Some(f.flow_id),
        _ => None,
    }
}

/// The nodes the lines come from, in order of appearance ("" for lines without one).
pub fn nodes(lines: &[Line]) -> Vec<String> {
    let mut nodes: Vec<String> = Vec::new();
    for l in lines {
        let n = l.stamp.node.as_deref().unwrap_or_default().to_string();
        if !nodes.contains(&n) {
            nodes.push(n);
        }
    }
    nodes
}

/// The key of the flow `pick` names, and a note for stderr when the choice was not asked.
pub fn choose(lines: &[Line], pick: Pick) -> Result<(FlowKey, Option<String>)> {
    let mut keys: Vec<FlowKey> = Vec::new();
    let mut ids: HashMap<u32, FlowKey> = HashMap::new();
    for l in lines {
        if let Some(k) = key_of(&l.record) {
            if !keys.contains(&k) {
                keys.push(k.clone());
            }
            if let Some(id) = flow_id(&l.record) {
                ids.entry(id).or_insert(k);
            }
        }
    }
    if keys.is_empty() {
        bail!("the records hold no flow (no hop, route or flow record): was any packet traced?");
    }
    let one_node = nodes(lines).len() == 1;
    match pick {
        Pick::First => {
            let note = (keys.len() > 1).then(|| {
                format!(
                    "{} flows in the input; drawing the first ({}); choose with --flow N or --client IP:PORT",
                    keys.len(),
                    key_text(&keys[0])
                )
            });
            Ok((keys[0].clone(), note))
        }
        Pick::Number(n) => {
            let found = if one_node {
                ids.get(&n).cloned()
            } else {
                keys.get((n as usize).wrapping_sub(1)).cloned()
            };
            match found {
                Some(k) => Ok((k, None)),
                None if one_node => {
                    let mut have: Vec<u32> = ids.keys().copied().collect();
                    have.sort_unstable();
                    bail!("there is no flow {n} in the input; its flows are {have:?}")
                }
                None => bail!(
                    "there is no flow {n} in the input; it holds flows 1 to {} (the timelines of `tracer merge`)",
                    keys.len()
                ),
            }
        }
        Pick::Client(addr) => keys
            .iter()
            .find(|k| k.client == addr.ip() && k.client_port == addr.port())
            .map(|k| (k.clone(), None))
            .ok_or_else(|| anyhow::anyhow!("no flow of client {addr} in the input")),
    }
}

pub fn key_text(k: &FlowKey) -> String {
    format!(
        "{} {} -> {}",
        k.proto,
        SocketAddr::new(k.client, k.client_port),
        SocketAddr::new(k.vip, k.vip_port)
    )
}

/// Which side of its pod's box a port sits on: toward the gateway (left), toward the
/// targets (right), or inside (a bridge: packets cross it both ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    Gateway,
    Inside,
    Target,
}

#[derive(Debug, Clone)]
pub struct Port {
    pub ifname: String,
    pub side: Side,
}

#[derive(Debug, Clone)]
pub struct Pod {
    pub node: String,
    pub netns: String,
    pub role: String,
    pub ports: Vec<Port>,
}

/// What happened, in time order.
#[derive(Debug, Clone)]
pub enum Event {
    /// A hop record: its number (from 1) is its place among the hops.
    Hop {
        number: usize,
        hop: Hop,
        rel_ns: u64,
    },
    /// A frontend's route lookup after the load balancer set the mark: its choice.
    Lb {
        route: Route,
        rel_ns: u64,
    },
    /// The proxy's routing decision (the first, and any that differs from the one before).
    Ecmp {
        decision: Decision,
        rel_ns: u64,
    },
    Drop {
        drop: Drop,
        rel_ns: u64,
    },
}

/// The flow as drawn.
#[derive(Debug, Clone)]
pub struct FlowView {
    pub key: FlowKey,
    /// The node of each pod is shown when there are several.
    pub nodes: Vec<String>,
    pub pods: Vec<Pod>,
    pub events: Vec<Event>,
    /// The flow's summaries (one per traced proxy), when the flow has ended.
    pub summaries: Vec<Flow>,
}

/// Time of a record for ordering: the wall clock across nodes, the kernel clock on one.
fn when(line: &Line, ts_ns: u64, across_nodes: bool) -> i128 {
    match (across_nodes, line.stamp.wall_ns) {
        (true, Some(w)) => i128::from(w),
        _ => i128::from(ts_ns),
    }
}

fn role_rank(role: &str) -> u8 {
    match role {
        "frontend" => 0,
        "proxy" => 1,
        "target" => 2,
        _ => 3,
    }
}

/// Gathers the records of flow `key`.
pub fn view(lines: &[Line], key: &FlowKey) -> FlowView {
    let nodes = nodes(lines);
    let across = nodes.len() > 1;
    let node_of = |l: &Line| l.stamp.node.clone().unwrap_or_default();
    let mut timed: Vec<(i128, usize, &Line)> = Vec::new();
    let mut summaries = Vec::new();
    for (seq, l) in lines.iter().enumerate() {
        if key_of(&l.record).as_ref() != Some(key) {
            continue;
        }
        let ts = match &l.record {
            Record::Hop(h) => h.ts_ns,
            Record::Route(r) => r.ts_ns,
            Record::Decision(d) => d.ts_ns,
            Record::Drop(d) => d.ts_ns,
            // A node without the flow's proxy summarises it with no netns: nothing to say.
            Record::Flow(f) => {
                if !f.netns.is_empty() {
                    summaries.push(f.clone());
                }
                continue;
            }
            _ => continue,
        };
        timed.push((when(l, ts, across), seq, l));
    }
    timed.sort_by_key(|(t, seq, _)| (*t, *seq));
    let start = timed
        .iter()
        .find(|(_, _, l)| matches!(l.record, Record::Hop(_)))
        .or(timed.first())
        .map_or(0, |(t, _, _)| *t);
    let rel = |t: i128| u64::try_from(t - start).unwrap_or(0);

    // Pods in path order: by role along the Meridio path, then by first appearance.
    let mut pods: Vec<Pod> = Vec::new();
    let mut first_seen: HashMap<(String, String), usize> = HashMap::new();
    let mut sides: HashMap<(String, String, String), Vec<Side>> = HashMap::new();
    for (i, (_, _, l)) in timed.iter().enumerate() {
        let (netns, role, ifname, side) = match &l.record {
            Record::Hop(h) => {
                // Gateway side when the packet moves along its path there: a request
                // coming in, a reply going out.
                let side = if h.dir == h.path {
                    Side::Gateway
                } else {
                    Side::Target
                };
                (&h.netns, &h.role, Some(&h.ifname), side)
            }
            Record::Route(r) => (&r.netns, &r.role, None, Side::Inside),
            Record::Drop(d) => (&d.netns, &d.role, Some(&d.ifname), Side::Inside),
            _ => continue,
        };
        let pod_key = (node_of(l).to_string(), netns.to_string());
        if !first_seen.contains_key(&pod_key) {
            first_seen.insert(pod_key.clone(), i);
            pods.push(Pod {
                node: pod_key.0.clone(),
                netns: netns.to_string(),
                role: role.to_string(),
                ports: Vec::new(),
            });
        }
        if let Some(ifname) = ifname.filter(|n| !n.is_empty()) {
            let pod = pods
                .iter_mut()
                .find(|p| p.node == pod_key.0 && p.netns == *netns)
                .expect("pod added above");
            if !pod.ports.iter().any(|p| p.ifname == *ifname) {
                pod.ports.push(Port {
                    ifname: ifname.to_string(),
                    side,
                });
            }
            if matches!(l.record, Record::Hop(_)) {
                sides
                    .entry((pod_key.0, netns.to_string(), ifname.to_string()))
                    .or_default()
                    .push(side);
            }
        }
    }
    for pod in &mut pods {
        for port in &mut pod.ports {
            let seen = sides
                .get(&(pod.node.clone(), pod.netns.clone(), port.ifname.clone()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            port.side = match (seen.contains(&Side::Gateway), seen.contains(&Side::Target)) {
                (true, true) | (false, false) => Side::Inside,
                (true, false) => Side::Gateway,
                (false, true) => Side::Target,
            };
        }
        // Stable: first appearance within each side.
        pod.ports.sort_by_key(|p| p.side);
    }
    pods.sort_by_key(|p| {
        (
            role_rank(&p.role),
            first_seen[&(p.node.clone(), p.netns.clone())],
        )
    });

    let mut events = Vec::new();
    let mut hops = 0;
    let mut last_decision: HashMap<String, Decision> = HashMap::new();
    let mut last_choice = HashMap::new();
    for (t, _, l) in &timed {
        let rel_ns = rel(*t);
        match &l.record {
            Record::Hop(h) => {
                hops += 1;
                events.push(Event::Hop {
                    number: hops,
                    hop: h.clone(),
                    rel_ns,
                });
            }
            Record::Route(r) if r.role == "frontend" && r.mark != 0 && r.err == 0 => {
                // Every request packet is looked up again: draw the choice when it changes.
                let choice = (r.mark, r.rule.clone(), r.table, r.gw);
                if last_choice.get(&r.netns) != Some(&choice) {
                    events.push(Event::Lb {
                        route: r.clone(),
                        rel_ns,
                    });
                }
                last_choice.insert(r.netns.clone(), choice);
            }
            Record::Decision(d) => {
                let changed = last_decision.get(&*d.netns).is_none_or(|before| {
                    before.candidates != d.candidates
                        || before.actual != d.actual
                        || before.predicted != d.predicted
                        || before.rule != d.rule
                });
                if changed {
                    events.push(Event::Ecmp {
                        decision: d.clone(),
                        rel_ns,
                    });
                }
                last_decision.insert(d.netns.to_string(), d.clone());
            }
            Record::Drop(d) => events.push(Event::Drop {
                drop: d.clone(),
                rel_ns,
            }),
            _ => {}
        }
    }
    FlowView {
        key: key.clone(),
        nodes,
        pods,
        events,
        summaries,
    }
}
