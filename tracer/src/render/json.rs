//! JSON lines: one object per record.
use std::io::Write;

use serde_json::{json, Value};

use super::{text::change_text, Out, Render};
use crate::{
    attach::Ready,
    changes::Change,
    events::{fmt_mac, fmt_tcp_flags, proto_name},
    flows::{Distribution, DropHop, FlowKey, FlowSummary, Hop, RouteHop},
    kernel_state::{NextHop, Rule},
};

/// One JSON object per line.
pub(super) struct Json {
    pub(super) out: Out,
}

fn flow_fields(k: &FlowKey) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("proto".into(), json!(proto_name(k.proto)));
    m.insert("vip".into(), json!(k.vip));
    m.insert("vip_port".into(), json!(k.vip_port));
    m.insert("client".into(), json!(k.client));
    m.insert("client_port".into(), json!(k.client_port));
    m
}

fn nexthops_json(c: &[NextHop]) -> Value {
    c.iter()
        .map(|n| json!({"gw": n.gw, "ifindex": n.ifindex, "weight": n.weight, "alive": n.alive}))
        .collect()
}

fn rule_json(r: &Rule) -> Value {
    json!({"priority": r.priority, "selector": r.selector(), "table": r.table})
}

impl Render for Json {
    fn flush(&mut self) {
        let _ = self.out.flush();
    }

    fn ready(&mut self, r: &Ready) {
        say!(
            self.out,
            "{}",
            json!({
                "type": "ready",
                "netns": r.netns,
                "role": r.role,
                "vips": r.vips,
                "client_port": r.client_port,
                "interfaces": r.interfaces,
                "hooks": r.hooks,
                "refused": r.refused.iter().map(|(h, why)| json!({"hook": h, "reason": why})).collect::<Vec<_>>(),
                "unavailable": r.unavailable.iter().map(|(h, why)| json!({"hook": h, "reason": why})).collect::<Vec<_>>(),
                "notes": r.notes,
            })
        );
    }

    fn hop(&mut self, h: &Hop) {
        let p = &h.packet;
        let mut v = json!({
            "type": "hop",
            "flow_id": h.flow_id,
            "ts_ns": p.ts_ns,
            "rel_ns": h.rel_ns,
            "netns": h.netns,
            "role": h.role.as_str(),
            "ifname": h.ifname,
            "dir": p.dir.as_str(),
            "path": h.path.as_str(),
            "proto": proto_name(p.proto),
            "src": p.src,
            "sport": p.sport,
            "dst": p.dst,
            "dport": p.dport,
            "vip": h.flow.vip,
            "len": p.len,
            "tcp_flags": fmt_tcp_flags(p.tcp_flags),
            "eth_src": fmt_mac(&p.eth_src),
            "eth_dst": fmt_mac(&p.eth_dst),
            "mark": p.mark,
            "hash": p.hash,
            "vlan": p.vlan,
            "routed": h.decision.is_some(),
        });
        if let Some(nh) = h.nexthop {
            v["nexthop"] = json!(nh);
        }
        say!(self.out, "{}", v);
        if let Some(d) = &h.decision {
            let mut v = Value::Object(flow_fields(&h.flow));
            v["type"] = json!("decision");
            v["flow_id"] = json!(h.flow_id);
            v["ts_ns"] = json!(h.packet.ts_ns);
            v["netns"] = json!(h.netns);
            v["ifname"] = json!(h.ifname);
            v["rule"] = json!(d.rule.as_ref().map(rule_json));
            v["table"] = json!(d.table);
            v["candidates"] = nexthops_json(&d.candidates);
            v["candidates_changed"] = json!(d.candidates_changed);
            v["skb_hash"] = json!(d.skb_hash);
            v["hash"] = json!(d.hash);
            v["hash_source"] = json!(d.source.label());
            v["predicted"] = json!(d.predicted);
            v["actual"] = json!(d.actual);
            v["agree"] = json!(d.agrees());
            say!(self.out, "{}", v);
        }
    }

    fn route(&mut self, r: &RouteHop) {
        let l = &r.lookup;
        let mut v = Value::Object(flow_fields(&r.flow));
        v["type"] = json!("route");
        v["flow_id"] = json!(r.flow_id);
        v["ts_ns"] = json!(l.ts_ns);
        v["rel_ns"] = json!(r.rel_ns);
        v["netns"] = json!(r.netns);
        v["role"] = json!(r.role.as_str());
        v["path"] = json!(r.path.as_str());
        v["table"] = json!(l.table);
        v["gw"] = json!(l.gw);
        v["dev"] = json!(l.dev);
        v["err"] = json!(l.err);
        v["iif"] = json!(l.iif);
        if let Some(rule) = &r.rule {
            v["rule"] = rule_json(rule);
        }
        say!(self.out, "{}", v);
    }

    fn lost(&mut self, count: u64, total: u64) {
        say!(
            self.out,
            "{}",
            json!({"type": "lost", "count": count, "total": total})
        );
    }

    fn evicted(&mut self, count: u64) {
        say!(self.out, "{}", json!({"type": "evicted", "count": count}));
    }

    fn dropped(&mut self, d: &DropHop) {
        let mut v = Value::Object(flow_fields(&d.flow));
        v["type"] = json!("drop");
        v["flow_id"] = json!(d.flow_id);
        v["ts_ns"] = json!(d.drop.ts_ns);
        v["rel_ns"] = json!(d.rel_ns);
        v["netns"] = json!(d.netns);
        v["role"] = json!(d.role.as_str());
        v["ifname"] = json!(d.ifname);
        v["path"] = json!(d.path.as_str());
        v["reason"] = json!(d.reason);
        v["location"] = json!(d.location);
        v["mark"] = json!(d.drop.mark);
        say!(self.out, "{}", v);
    }

    fn distribution(&mut self, d: &Distribution) {
        say!(
            self.out,
            "{}",
            json!({
                "type": "distribution",
                "vip": d.vip,
                "flows": d.flows,
                "nexthops": d.shares.iter().map(|sh| json!({
                    "nexthop": sh.nexthop, "ifname": sh.ifname, "flows": sh.flows, "packets": sh.packets,
                })).collect::<Vec<_>>(),
            })
        );
    }

    fn change(&mut self, ts_ns: u64, netns: &str, c: &Change) {
        let mut v = match c {
            Change::Route {
                table,
                v6,
                before,
                after,
            } => {
                json!({"what": "route", "table": table, "family": if *v6 { "ipv6" } else { "ipv4" },
                        "before": nexthops_json(before), "after": nexthops_json(after)})
            }
            Change::Rule { added, rule } => {
                json!({"what": "rule", "added": added, "rule": rule_json(rule)})
            }
            Change::Link { added, name } => json!({"what": "link", "added": added, "ifname": name}),
            Change::Neighbour { ip, before, after } => json!({"what": "neighbour", "ip": ip,
                "before": before.as_ref().map(fmt_mac), "after": after.as_ref().map(fmt_mac)}),
            Change::Attached { added, ifname } => {
                json!({"what": "attached", "added": added, "ifname": ifname})
            }
            Change::Netns { added, role, name } => {
                json!({"what": "netns", "added": added, "role": role, "name": name})
            }
        };
        v["type"] = json!("change");
        v["ts_ns"] = json!(ts_ns);
        v["netns"] = json!(netns);
        v["text"] = json!(change_text(c));
        say!(self.out, "{}", v);
    }

    fn summary(&mut self, s: &FlowSummary, netns: &str) {
        let mut v = Value::Object(flow_fields(&s.flow));
        v["type"] = json!("flow");
        v["flow_id"] = json!(s.flow_id);
        v["netns"] = json!(netns);
        let one = s.nexthop();
        v["egress"] = json!({
            "nexthop": one.and_then(|n| n.ip),
            "ifname": one.and_then(|n| n.port.clone()),
            "flooded": one.is_some_and(|n| n.flooded),
            "packets": s.egress_packets,
            "records": s.egress_records,
            "consistent": s.consistent,
            "nexthop_in_route": s.nexthop_in_route,
            "nexthops": s.nexthops.iter().map(|n| json!({
                "nexthop": n.ip, "eth_dst": fmt_mac(&n.mac), "ifname": n.port, "flooded": n.flooded,
                "packets": n.packets, "first_rel_ns": n.first_rel_ns,
            })).collect::<Vec<_>>(),
            "rule": s.rule.as_ref().map(rule_json),
            "table": s.table,
            "candidates": nexthops_json(&s.candidates),
        });
        v["ingress"] = json!({"ifname": s.ingress_port, "packets": s.ingress_packets, "records": s.ingress_records});
        v["counted"] = json!(s.counted);
        v["drops"] = json!({
            "packets": s.drops,
            "last": s.last_drop.as_ref().map(|(i, r, l)| json!({"ifname": i, "reason": r, "location": l})),
        });
        let p = &s.predictions;
        v["prediction"] = json!({
            "agree": p.agree, "disagree": p.disagree, "unknown": p.unknown, "hash_source": p.source,
        });
        say!(self.out, "{}", v);
    }
}
