//! Reading the inputs: a line (with or without a `kubectl logs --prefix`) into a record,
//! and the flow it belongs to.
use std::collections::HashMap;

use serde_json::Value;
use tracer_records::{Line, Record};

use super::escape;

/// One input line that is a tracer record.
#[derive(Debug, Clone)]
pub(crate) struct Rec {
    /// The line as the tracer wrote it (without a `kubectl logs --prefix`): what --json
    /// writes back, so a node's bytes come out as they went in.
    pub(super) text: String,
    /// The record, or `None` for a JSON object whose `"type"` these types do not know (a
    /// newer tracer on another node): --json passes it through, the text view skips it.
    pub(super) line: Option<Line<'static>>,
    pub(super) node: String,
    /// Wall clock of the record; an untimed one (ready, flow summary, ...) takes the last
    /// wall time of its stream, so it stays where its stream put it.
    pub(crate) key: i128,
    pub(super) timed: bool,
    /// Order of reading, to keep equal keys stable.
    pub(super) seq: u64,
}

impl Rec {
    pub(super) fn record(&self) -> Option<&Record<'static>> {
        self.line.as_ref().map(|l| &l.record)
    }

    /// About what holding the record costs: its text, the strings parsed out of it (no
    /// longer than the text) and the record itself.
    pub(super) fn weight(&self) -> usize {
        2 * self.text.len() + std::mem::size_of::<Rec>()
    }

    /// The text with `extra` members added at its end (`,"timeline":1`).
    pub(super) fn text_with(&self, extra: &str) -> String {
        let body = self.text.strip_suffix('}').unwrap_or(&self.text);
        format!("{body}{extra}}}")
    }
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
    pub(super) fn of(r: &Rec) -> Option<FlowKey> {
        let k = r.record()?.flow_key()?;
        Some(FlowKey {
            proto: k.proto.into_owned(),
            client: k.client.to_string(),
            client_port: k.client_port.into(),
            vip: k.vip.to_string(),
            vip_port: k.vip_port.into(),
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

/// Streams of one input whose newest wall time is kept (a `kubectl logs` input holds one
/// per pod): beyond it the half that went quiet longest is forgotten (counted).
pub(super) const MAX_STREAMS: usize = 1024;

/// An input's lines that were skipped, by why.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Skipped {
    /// Not JSON, or JSON but not an object with a `"type"` (the tracer's own warnings
    /// share a pod's log).
    pub(super) not_record: u64,
    pub(super) invalid_utf8: u64,
    /// Longer than [`MAX_LINE`](super::input::MAX_LINE).
    pub(super) oversized: u64,
}

impl Skipped {
    pub(super) fn total(&self) -> u64 {
        self.not_record + self.invalid_utf8 + self.oversized
    }
}

/// Reads one input's lines into records. Lines that are not tracer records are skipped and
/// counted, never fatal: a stream goes on.
pub(crate) struct Reader {
    /// The input's name, the node of records that do not say theirs.
    pub(super) name: String,
    /// Per stream (a `kubectl logs` input holds one per pod): its newest wall time.
    pub(super) last_wall: HashMap<String, i128>,
    pub(super) skipped: Skipped,
    pub(super) first_skipped: Option<u64>,
    pub(super) line_no: u64,
    /// Times a followed file was read again from its start (truncated or rotated).
    pub(super) reopened: u64,
    /// Streams forgotten beyond [`MAX_STREAMS`].
    pub(super) forgotten_streams: u64,
    /// What [`Reader::report`] last said, so a follow stream repeats only what changed.
    reported: (Skipped, u64, u64),
}

impl Reader {
    pub(crate) fn new(name: &str) -> Reader {
        Reader {
            name: name.to_string(),
            last_wall: HashMap::new(),
            skipped: Skipped::default(),
            first_skipped: None,
            line_no: 0,
            reopened: 0,
            forgotten_streams: 0,
            reported: Default::default(),
        }
    }

    /// A line the [`LineReader`](super::input::LineReader) skipped (too long, not UTF-8).
    pub(super) fn skip(&mut self, why: &super::input::Next) {
        use super::input::Next;
        self.line_no += 1;
        match why {
            Next::Oversized => self.skipped.oversized += 1,
            Next::InvalidUtf8 => self.skipped.invalid_utf8 += 1,
            Next::Line(_) | Next::Pending => return,
        }
        self.first_skipped.get_or_insert(self.line_no);
    }

    /// The record a line holds, or `None` (counted) for one that holds none.
    pub(crate) fn parse(&mut self, line: &str, seq: u64) -> Option<Rec> {
        self.line_no += 1;
        let line = line.trim_end();
        if line.is_empty() {
            return None;
        }
        let (pod, body) = strip_prefix(line);
        let (line, node, wall) = match serde_json::from_str::<Line>(body) {
            Ok(l) => {
                let node = l.stamp.node.as_deref().map(str::to_string);
                let wall = l.stamp.wall_ns;
                (Some(l), node, wall)
            }
            // Not a record of these types: kept if it is one of a type they do not know.
            Err(_) => match serde_json::from_str::<Value>(body) {
                Ok(v @ Value::Object(_)) if v["type"].is_string() => (
                    None,
                    v["node"].as_str().map(str::to_string),
                    v["wall_ns"].as_i64(),
                ),
                _ => {
                    self.skipped.not_record += 1;
                    self.first_skipped.get_or_insert(self.line_no);
                    return None;
                }
            },
        };
        let node = node
            .or(pod.map(str::to_string))
            .unwrap_or_else(|| self.name.clone());
        let wall = wall.map(i128::from);
        let stream = pod.unwrap_or("");
        if !self.last_wall.contains_key(stream) && self.last_wall.len() >= MAX_STREAMS {
            self.forget_quiet_streams();
        }
        let last = self.last_wall.entry(stream.to_string()).or_insert(0);
        if let Some(w) = wall {
            *last = (*last).max(w);
        }
        Some(Rec {
            // Valid JSON, but it may still carry raw DEL or C1 in a string, or a tab or CR
            // between members: --json writes it back with those escaped.
            text: escape::json(body).into_owned(),
            line,
            node,
            key: wall.unwrap_or(*last),
            timed: wall.is_some(),
            seq,
        })
    }

    /// Drops the half of the streams whose newest wall time is oldest.
    fn forget_quiet_streams(&mut self) {
        let mut walls: Vec<i128> = self.last_wall.values().copied().collect();
        let mid = walls.len() / 2;
        let cut = *walls.select_nth_unstable(mid).1;
        let before = self.last_wall.len();
        self.last_wall.retain(|_, w| *w > cut);
        self.forgotten_streams += (before - self.last_wall.len()) as u64;
    }

    /// Says on stderr what was skipped, re-opened or forgotten, if anything changed since
    /// it last said so (and then returns true).
    pub(super) fn report(&mut self) -> bool {
        let now = (self.skipped, self.reopened, self.forgotten_streams);
        if now == self.reported {
            return false;
        }
        self.reported = now;
        eprintln!("tracer merge: {}", self.summary());
        true
    }

    /// One sentence of the counts: `NAME: skipped 3 line(s) (2 not tracer JSON records, 1
    /// not UTF-8; the first is line 4)`.
    pub(super) fn summary(&self) -> String {
        let s = &self.skipped;
        let mut parts = Vec::new();
        if s.total() > 0 {
            let kinds: Vec<String> = [
                (s.not_record, "not tracer JSON records"),
                (s.invalid_utf8, "not UTF-8"),
                (s.oversized, "longer than 1 MiB"),
            ]
            .into_iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
            parts.push(format!(
                "skipped {} line(s) ({}; the first is line {})",
                s.total(),
                kinds.join(", "),
                self.first_skipped.unwrap_or(0)
            ));
        }
        if self.reopened > 0 {
            parts.push(format!(
                "read again from the start {} time(s) (truncated or rotated)",
                self.reopened
            ));
        }
        if self.forgotten_streams > 0 {
            parts.push(format!(
                "forgot the wall time of {} quiet stream(s) (more than {MAX_STREAMS} pods)",
                self.forgotten_streams
            ));
        }
        escape::text(&format!("{}: {}", self.name, parts.join("; "))).into_owned()
    }
}
