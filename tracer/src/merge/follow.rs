//! --follow: live inputs merged through a bounded hold-back window.
use std::{
    collections::{BTreeMap, BinaryHeap, HashMap},
    io::{BufRead, Write},
    sync::mpsc,
    time::Duration,
};

use anyhow::{bail, Result};

use super::{flow_line, node_line, unmatched_lookup, with_timeline, FlowKey, Options, Reader, Rec};

/// Records held at most in --follow mode, whatever the window: beyond it the oldest go out
/// early (and are counted), so a flood cannot grow the merger without bound.
pub(super) const MAX_HELD: usize = 100_000;

/// --follow: a reader thread per input sends its records; records wait until they are
/// `hold` older than the wall clock (or the heap is full), then go out in wall-clock order.
/// One that comes after a later one went out is printed anyway, marked late.
pub(super) fn follow(
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

pub(super) fn now_wall_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// The --follow hold-back window: a heap of records by wall clock.
pub(crate) struct Merger {
    pub(super) hold_ns: i128,
    pub(super) json: bool,
    /// Min-heap by (key, seq) through Reverse.
    pub(super) held: BinaryHeap<std::cmp::Reverse<(i128, u64, usize)>>,
    pub(super) recs: BTreeMap<usize, Rec>,
    pub(super) next: usize,
    /// Newest key released: a record older than this is late.
    pub(super) released: i128,
    pub(super) timelines: HashMap<FlowKey, usize>,
    pub(super) starts: HashMap<usize, i128>,
    pub(super) printed: u64,
    pub(super) early: u64,
}

impl Merger {
    pub(crate) fn new(hold_ns: i128, json: bool) -> Merger {
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

    pub(crate) fn push(&mut self, mut rec: Rec) {
        // Streams number their own lines: make the order of arrival the tie-break.
        rec.seq = self.next as u64;
        self.held
            .push(std::cmp::Reverse((rec.key, rec.seq, self.next)));
        self.recs.insert(self.next, rec);
        self.next += 1;
    }

    /// Writes what is older than `now - hold` (everything with `i128::MAX`).
    pub(crate) fn release(&mut self, now: i128, out: &mut impl Write) -> std::io::Result<()> {
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

    pub(super) fn emit(&mut self, r: &Rec, out: &mut impl Write) -> std::io::Result<()> {
        let late = r.timed && r.key < self.released;
        if r.timed {
            self.released = self.released.max(r.key);
        }
        self.printed += 1;
        let Some(k) = FlowKey::of(r) else {
            return if self.json {
                writeln!(out, "{}", r.text)
            } else if let Some(l) = node_line(r) {
                writeln!(out, "{l}")
            } else {
                Ok(())
            };
        };
        let n = self.timelines.len() + 1;
        let n = *self.timelines.entry(k.clone()).or_insert(n);
        if self.json {
            return writeln!(out, "{}", with_timeline(r, n, late));
        }
        if unmatched_lookup(r) {
            return Ok(());
        }
        let start = *self.starts.entry(n).or_insert_with(|| {
            let _ = writeln!(out, "timeline {n} {}", k.text());
            r.key
        });
        let Some(mut line) = flow_line(n, r, start) else {
            return Ok(());
        };
        if late {
            line += "  (late)";
        }
        writeln!(out, "{line}")
    }
}
