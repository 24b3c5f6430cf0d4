//! Reading the inputs: a line (with or without a `kubectl logs --prefix`) into a record,
//! and the flow it belongs to.
use std::collections::HashMap;

use serde_json::Value;

/// One input line that is a tracer record.
#[derive(Debug, Clone)]
pub(super) struct Rec {
    pub(super) value: Value,
    pub(super) node: String,
    /// Wall clock of the record; an untimed one (ready, flow summary, ...) takes the last
    /// wall time of its stream, so it stays where its stream put it.
    pub(super) key: i128,
    pub(super) timed: bool,
    /// Order of reading, to keep equal keys stable.
    pub(super) seq: u64,
}

/// The 5-tuple from the client's side, as every flow-level record can give it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct FlowKey {
    pub(super) proto: String,
    pub(super) client: String,
    pub(super) client_port: u64,
    pub(super) vip: String,
    pub(super) vip_port: u64,
}

impl FlowKey {
    pub(super) fn of(v: &Value) -> Option<FlowKey> {
        let s = |k: &str| v[k].as_str().map(str::to_string);
        let n = |k: &str| v[k].as_u64();
        let proto = s("proto")?;
        if let (Some(client), Some(vip)) = (s("client"), s("vip")) {
            if let (Some(client_port), Some(vip_port)) = (n("client_port"), n("vip_port")) {
                return Some(FlowKey {
                    proto,
                    client,
                    client_port,
                    vip,
                    vip_port,
                });
            }
        }
        // A hop carries the packet's addresses: the VIP side is the one that is the VIP.
        let (vip, src, dst) = (s("vip")?, s("src")?, s("dst")?);
        let (sport, dport) = (n("sport")?, n("dport")?);
        let (client, client_port, vip_port) = if dst == vip {
            (src, sport, dport)
        } else {
            (dst, dport, sport)
        };
        Some(FlowKey {
            proto,
            client,
            client_port,
            vip,
            vip_port,
        })
    }

    pub(super) fn text(&self) -> String {
        format!(
            "{} {} <-> {}",
            self.proto,
            addr(&self.client, self.client_port),
            addr(&self.vip, self.vip_port)
        )
    }
}

pub(super) fn addr(ip: &str, port: u64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Splits a `kubectl logs --prefix` line, `[pod/NAME/CONTAINER] rest`, into the pod name
/// and the rest; other lines come back whole.
pub(super) fn strip_prefix(line: &str) -> (Option<&str>, &str) {
    if let Some(rest) = line.strip_prefix('[') {
        if let Some((prefix, body)) = rest.split_once("] ") {
            if !prefix.contains(' ') && prefix.contains('/') {
                let pod = prefix.split('/').nth(1).unwrap_or(prefix);
                return (Some(pod), body);
            }
        }
    }
    (None, line)
}

/// Reads one input's lines into records. Lines that are not tracer records (the tracer's
/// own warnings share a pod's log) are counted, not fatal.
pub(super) struct Reader {
    /// The input's name, the node of records that do not say theirs.
    pub(super) name: String,
    /// Per stream (a `kubectl logs` input holds one per pod): its newest wall time.
    pub(super) last_wall: HashMap<String, i128>,
    pub(super) skipped: u64,
    pub(super) first_skipped: Option<u64>,
    pub(super) line_no: u64,
}

impl Reader {
    pub(super) fn new(name: &str) -> Reader {
        Reader {
            name: name.to_string(),
            last_wall: HashMap::new(),
            skipped: 0,
            first_skipped: None,
            line_no: 0,
        }
    }

    pub(super) fn parse(&mut self, line: &str, seq: u64) -> Option<Rec> {
        self.line_no += 1;
        let line = line.trim_end();
        if line.is_empty() {
            return None;
        }
        let (pod, body) = strip_prefix(line);
        let value: Value = match serde_json::from_str(body) {
            Ok(v @ Value::Object(_)) if v["type"].is_string() => v,
            _ => {
                self.skipped += 1;
                self.first_skipped.get_or_insert(self.line_no);
                return None;
            }
        };
        let node = value["node"]
            .as_str()
            .or(pod)
            .unwrap_or(&self.name)
            .to_string();
        let wall = value["wall_ns"].as_i64().map(i128::from);
        let last = self
            .last_wall
            .entry(pod.unwrap_or("").to_string())
            .or_insert(0);
        if let Some(w) = wall {
            *last = (*last).max(w);
        }
        Some(Rec {
            node,
            key: wall.unwrap_or(*last),
            timed: wall.is_some(),
            seq,
            value,
        })
    }

    pub(super) fn report(&self) {
        if let Some(first) = self.first_skipped {
            eprintln!(
                "tracer merge: {}: skipped {} line(s) that are not tracer JSON records (the first is line {first})",
                self.name, self.skipped
            );
        }
    }
}
