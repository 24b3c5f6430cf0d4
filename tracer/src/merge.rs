//! `tracer merge`: the JSON lines of tracers on several nodes (files, or `kubectl logs
//! --prefix` output) put together into one timeline per flow, joined by the flow's 5-tuple
//! and ordered by wall clock (`wall_ns`: each node's kernel clock means nothing on another
//! node). With `--follow` the inputs are live streams and records wait a bounded hold-back
//! window for slower streams before they are printed. Kubernetes logs or files carry the
//! streams; this reads them, nothing more.
use std::{
    collections::{BTreeMap, BinaryHeap, HashMap},
    fs::File,
    io::{BufRead, BufReader, Write},
    sync::mpsc,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::output::stamp::rfc3339;

/// Records held at most in --follow mode, whatever the window: beyond it the oldest go out
/// early (and are counted), so a flood cannot grow the merger without bound.
const MAX_HELD: usize = 100_000;

pub struct Options {
    pub inputs: Vec<String>,
    pub json: bool,
    pub follow: bool,
    pub hold: Duration,
}

/// One input line that is a tracer record.
#[derive(Debug, Clone)]
struct Rec {
    value: Value,
    node: String,
    /// Wall clock of the record; an untimed one (ready, flow summary, ...) takes the last
    /// wall time of its stream, so it stays where its stream put it.
    key: i128,
    timed: bool,
    /// Order of reading, to keep equal keys stable.
    seq: u64,
}

/// The 5-tuple from the client's side, as every flow-level record can give it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct FlowKey {
    proto: String,
    client: String,
    client_port: u64,
    vip: String,
    vip_port: u64,
}

impl FlowKey {
    fn of(v: &Value) -> Option<FlowKey> {
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

    fn text(&self) -> String {
        format!(
            "{} {} <-> {}",
            self.proto,
            addr(&self.client, self.client_port),
            addr(&self.vip, self.vip_port)
        )
    }
}

fn addr(ip: &str, port: u64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Splits a `kubectl logs --prefix` line, `[pod/NAME/CONTAINER] rest`, into the pod name
/// and the rest; other lines come back whole.
fn strip_prefix(line: &str) -> (Option<&str>, &str) {
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
struct Reader {
    /// The input's name, the node of records that do not say theirs.
    name: String,
    /// Per stream (a `kubectl logs` input holds one per pod): its newest wall time.
    last_wall: HashMap<String, i128>,
    skipped: u64,
    first_skipped: Option<u64>,
    line_no: u64,
}

impl Reader {
    fn new(name: &str) -> Reader {
        Reader {
            name: name.to_string(),
            last_wall: HashMap::new(),
            skipped: 0,
            first_skipped: None,
            line_no: 0,
        }
    }

    fn parse(&mut self, line: &str, seq: u64) -> Option<Rec> {
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

    fn report(&self) {
        if let Some(first) = self.first_skipped {
            eprintln!(
                "tracer merge: {}: skipped {} line(s) that are not tracer JSON records (the first is line {first})",
                self.name, self.skipped
            );
        }
    }
}

fn open(input: &str) -> Result<Box<dyn BufRead + Send>> {
    if input == "-" {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let f = File::open(input).with_context(|| format!("cannot read {input}"))?;
    Ok(Box::new(BufReader::new(f)))
}

pub fn run(o: Options) -> Result<()> {
    let inputs = if o.inputs.is_empty() {
        vec!["-".to_string()]
    } else {
        o.inputs.clone()
    };
    if inputs.iter().filter(|i| *i == "-").count() > 1 {
        bail!("standard input (-) can be given only once");
    }
    let mut sources = Vec::new();
    for i in &inputs {
        sources.push((i.clone(), open(i)?));
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if o.follow {
        follow(sources, &o, &mut out)
    } else {
        let mut recs = Vec::new();
        let mut seq = 0;
        for (name, input) in sources {
            let mut r = Reader::new(&name);
            for line in input.lines() {
                let line = line.with_context(|| format!("reading {name}"))?;
                seq += 1;
                recs.extend(r.parse(&line, seq));
            }
            r.report();
        }
        if recs.is_empty() {
            bail!(
                "no tracer JSON records in {} (run the tracers with --json)",
                inputs.join(", ")
            );
        }
        let _ = write_batch(&recs, o.json, &mut out);
        Ok(())
    }
}

/// The timelines of `recs` (all of them read), flows in order of their first record.
fn timelines(recs: &[Rec]) -> (Vec<&Rec>, Vec<(FlowKey, Vec<&Rec>)>) {
    let mut node_level = Vec::new();
    let mut flows: HashMap<FlowKey, Vec<&Rec>> = HashMap::new();
    for r in recs {
        match FlowKey::of(&r.value) {
            Some(k) => flows.entry(k).or_default().push(r),
            None => node_level.push(r),
        }
    }
    let mut flows: Vec<(FlowKey, Vec<&Rec>)> = flows.into_iter().collect();
    for (_, t) in &mut flows {
        // Timed records by wall clock; summaries last, in the order read.
        t.sort_by_key(|r| (!r.timed, if r.timed { r.key } else { 0 }, r.seq));
    }
    flows.sort_by_key(|(k, t)| {
        (
            t.iter().find(|r| r.timed).map_or(i128::MAX, |r| r.key),
            k.clone(),
        )
    });
    node_level.sort_by_key(|r| (r.key, r.seq));
    (node_level, flows)
}

fn write_batch(recs: &[Rec], json: bool, out: &mut impl Write) -> std::io::Result<()> {
    let (node_level, flows) = timelines(recs);
    if json {
        for r in &node_level {
            writeln!(out, "{}", r.value)?;
        }
        for (i, (_, t)) in flows.iter().enumerate() {
            for r in t {
                writeln!(out, "{}", with_timeline(&r.value, i + 1))?;
            }
        }
        return out.flush();
    }
    for r in &node_level {
        if r.value["type"] != "change" {
            writeln!(out, "{}", node_line(r))?;
        }
    }
    for (i, (k, t)) in flows.iter().enumerate() {
        let mut nodes: Vec<&str> = Vec::new();
        for r in t {
            if !nodes.contains(&r.node.as_str()) {
                nodes.push(&r.node);
            }
        }
        writeln!(
            out,
            "timeline {} {}  (nodes: {})",
            i + 1,
            k.text(),
            nodes.join(", ")
        )?;
        let start = t.iter().find(|r| r.timed).map_or(0, |r| r.key);
        for r in t.iter().filter(|r| !unmatched_lookup(&r.value)) {
            writeln!(out, "{}", flow_line(i + 1, r, start))?;
        }
    }
    for r in node_level.iter().filter(|r| r.value["type"] == "change") {
        writeln!(out, "{}", node_line(r))?;
    }
    out.flush()
}

/// A lookup in a table that did not match (the lookup goes on to the next rule): the
/// tracer's text view leaves them out too; --json keeps them.
fn unmatched_lookup(v: &Value) -> bool {
    v["type"] == "route"
        && (v["err"] == -(libc::EAGAIN as i64) || (v["err"] != 0 && v["table"] == 255))
}

fn with_timeline(v: &Value, n: usize) -> Value {
    let mut v = v.clone();
    v["timeline"] = Value::from(n);
    v
}

fn time_of_day(wall: i128) -> String {
    let t = rfc3339(wall);
    t.get(11..t.len() - 1).unwrap_or(&t).to_string()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

/// A record that belongs to no flow: what a node traces, changes, losses.
fn node_line(r: &Rec) -> String {
    let v = &r.value;
    match s(v, "type") {
        "ready" => format!(
            "node {}: ready {} {} (VIPs {})",
            r.node,
            s(v, "role"),
            s(v, "netns"),
            list(&v["vips"])
        ),
        "change" => format!(
            "{}  node {} {}: change: {}",
            time_of_day(r.key),
            r.node,
            s(v, "netns"),
            s(v, "text")
        ),
        "lost" => format!("node {}: WARNING: {} records lost", r.node, v["count"]),
        "evicted" => format!(
            "node {}: WARNING: {} per-hop counters evicted",
            r.node, v["count"]
        ),
        "distribution" => format!(
            "node {}: distribution of {}: {}",
            r.node,
            s(v, "vip"),
            v["nexthops"]
        ),
        other => format!("node {}: {other} {v}", r.node),
    }
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// One line of a timeline: when, where (node, netns, interface) and what.
fn flow_line(n: usize, r: &Rec, start: i128) -> String {
    let v = &r.value;
    let at = if r.timed {
        format!(
            "{}  +{:>9.3} ms",
            time_of_day(r.key),
            (r.key - start) as f64 / 1e6
        )
    } else {
        format!("{:>18}  {:>12}", "", "")
    };
    let place = format!("{} {}", r.node, s(v, "netns"));
    let what = match s(v, "type") {
        "hop" => {
            let mut w = format!(
                "{:<16} {:<7} {}  {:<8} {:>5} B  {} > {}",
                s(v, "ifname"),
                s(v, "dir"),
                if s(v, "path") == "egress" {
                    "from VIP"
                } else {
                    "to VIP  "
                },
                if s(v, "proto") == "tcp" {
                    s(v, "tcp_flags")
                } else {
                    s(v, "proto")
                },
                v["len"],
                addr(s(v, "src"), v["sport"].as_u64().unwrap_or(0)),
                addr(s(v, "dst"), v["dport"].as_u64().unwrap_or(0)),
            );
            if let Some(nh) = v["nexthop"].as_str() {
                w += &format!("  next-hop {nh} ({})", s(v, "eth_dst"));
            }
            w
        }
        "route" => format!(
            "fib lookup table {}: first usable gw {} dev {}{}",
            v["table"],
            s(v, "gw"),
            s(v, "dev"),
            if v["err"] != 0 {
                format!(" (error {})", v["err"])
            } else {
                String::new()
            }
        ),
        "decision" => format!(
            "decision: table {}, hash {} ({}), predicted {}, actual {}",
            v["table"],
            v["hash"],
            s(v, "hash_source"),
            v["predicted"].as_str().unwrap_or("unknown"),
            v["actual"].as_str().unwrap_or("unknown")
        ),
        "drop" => format!(
            "DROPPED on {}: {} at {}",
            s(v, "ifname"),
            s(v, "reason"),
            s(v, "location")
        ),
        "flow" => {
            let e = &v["egress"];
            format!(
                "summary: ingress {} packets on {}; egress {} packets to next-hop {} via {}{}",
                v["ingress"]["packets"],
                s(&v["ingress"], "ifname"),
                e["packets"],
                e["nexthop"].as_str().unwrap_or("-"),
                e["ifname"].as_str().unwrap_or("-"),
                if e["consistent"] == false {
                    " INCONSISTENT"
                } else {
                    ""
                }
            )
        }
        other => format!("{other} {v}"),
    };
    format!("  #{n} {at}  {place:<28} {what}")
}

/// --follow: a reader thread per input sends its records; records wait until they are
/// `hold` older than the wall clock (or the heap is full), then go out in wall-clock order.
/// One that comes after a later one went out is printed anyway, marked late.
fn follow(
    sources: Vec<(String, Box<dyn BufRead + Send>)>,
    o: &Options,
    out: &mut impl Write,
) -> Result<()> {
    let (tx, rx) = mpsc::sync_channel::<Rec>(1024);
    let mut threads = Vec::new();
    for (name, input) in sources {
        let tx = tx.clone();
        let tail = name != "-" && std::fs::metadata(&name).is_ok_and(|m| m.is_file());
        threads.push(std::thread::spawn(move || {
            let mut r = Reader::new(&name);
            let mut input = input;
            let mut line = String::new();
            let mut seq = 0u64;
            loop {
                line.clear();
                match input.read_line(&mut line) {
                    Ok(0) if tail => std::thread::sleep(Duration::from_millis(200)),
                    Ok(0) | Err(_) => break,
                    // A file being written may end mid-line: keep the start, read on.
                    Ok(_) if tail && !line.ends_with('\n') => {
                        let mut rest = String::new();
                        while !rest.ends_with('\n') {
                            match input.read_line(&mut rest) {
                                Ok(0) => std::thread::sleep(Duration::from_millis(50)),
                                Ok(_) => {}
                                Err(_) => break,
                            }
                        }
                        line += &rest;
                        seq += 1;
                        if let Some(rec) = r.parse(&line, seq) {
                            if tx.send(rec).is_err() {
                                break;
                            }
                        }
                    }
                    Ok(_) => {
                        seq += 1;
                        if let Some(rec) = r.parse(&line, seq) {
                            if tx.send(rec).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            r.report();
        }));
    }
    drop(tx);
    let mut m = Merger::new(o.hold.as_nanos() as i128, o.json);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(rec) => m.push(rec),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let _ = m.release(now_wall_ns(), out);
    }
    let _ = m.release(i128::MAX, out);
    if m.early > 0 {
        eprintln!("tracer merge: {} records went out before their hold-back window ended (more than {MAX_HELD} waiting)", m.early);
    }
    if m.printed == 0 {
        bail!("no tracer JSON records came in (run the tracers with --json)");
    }
    Ok(())
}

fn now_wall_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// The --follow hold-back window: a heap of records by wall clock.
struct Merger {
    hold_ns: i128,
    json: bool,
    /// Min-heap by (key, seq) through Reverse.
    held: BinaryHeap<std::cmp::Reverse<(i128, u64, usize)>>,
    recs: BTreeMap<usize, Rec>,
    next: usize,
    /// Newest key released: a record older than this is late.
    released: i128,
    timelines: HashMap<FlowKey, usize>,
    starts: HashMap<usize, i128>,
    printed: u64,
    early: u64,
}

impl Merger {
    fn new(hold_ns: i128, json: bool) -> Merger {
        Merger {
            hold_ns,
            json,
            held: BinaryHeap::new(),
            recs: BTreeMap::new(),
            next: 0,
            released: i128::MIN,
            timelines: HashMap::new(),
            starts: HashMap::new(),
            printed: 0,
            early: 0,
        }
    }

    fn push(&mut self, mut rec: Rec) {
        // Streams number their own lines: make the order of arrival the tie-break.
        rec.seq = self.next as u64;
        self.held
            .push(std::cmp::Reverse((rec.key, rec.seq, self.next)));
        self.recs.insert(self.next, rec);
        self.next += 1;
    }

    /// Writes what is older than `now - hold` (everything with `i128::MAX`).
    fn release(&mut self, now: i128, out: &mut impl Write) -> std::io::Result<()> {
        let cutoff = now.saturating_sub(self.hold_ns);
        while let Some(std::cmp::Reverse((key, _, id))) = self.held.peek().copied() {
            let full = self.held.len() > MAX_HELD;
            if key > cutoff && !full {
                break;
            }
            self.early += u64::from(full && key > cutoff);
            self.held.pop();
            let rec = self.recs.remove(&id).expect("held");
            self.emit(&rec, out)?;
        }
        out.flush()
    }

    fn emit(&mut self, r: &Rec, out: &mut impl Write) -> std::io::Result<()> {
        let late = r.timed && r.key < self.released;
        if r.timed {
            self.released = self.released.max(r.key);
        }
        self.printed += 1;
        let Some(k) = FlowKey::of(&r.value) else {
            return if self.json {
                writeln!(out, "{}", r.value)
            } else {
                writeln!(out, "{}", node_line(r))
            };
        };
        let n = self.timelines.len() + 1;
        let n = *self.timelines.entry(k.clone()).or_insert(n);
        if self.json {
            let mut v = with_timeline(&r.value, n);
            if late {
                v["late"] = Value::Bool(true);
            }
            return writeln!(out, "{v}");
        }
        if unmatched_lookup(&r.value) {
            return Ok(());
        }
        let start = *self.starts.entry(n).or_insert_with(|| {
            let _ = writeln!(out, "timeline {n} {}", k.text());
            r.key
        });
        let mut line = flow_line(n, r, start);
        if late {
            line += "  (late)";
        }
        writeln!(out, "{line}")
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;
