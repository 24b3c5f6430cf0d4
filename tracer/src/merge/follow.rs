//! --follow: live inputs merged through a bounded hold-back window.
use std::{
    collections::{BTreeMap, BinaryHeap, HashMap},
    io::Write,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use tracer_records::Record;

use super::{
    escape, flow_line, node_line, put, unmatched_lookup, with_timeline, FlowKey, Next, Options,
    Reader, Rec, Source,
};

/// Records held at most in --follow mode, whatever the window: beyond it (or beyond
/// [`MAX_HELD_BYTES`]) the oldest go out early (and are counted), so a flood cannot grow
/// the merger without bound.
pub(super) const MAX_HELD: usize = 100_000;

/// What the held records may weigh at most ([`Rec::weight`]).
pub(super) const MAX_HELD_BYTES: usize = 256 << 20;

/// Records on their way from the readers to the merger, at most (each line at most
/// [`MAX_LINE`](super::input::MAX_LINE)).
const CHANNEL: usize = 64;

/// Timelines kept at most: beyond it the tenth whose newest record is oldest is forgotten
/// (counted); a later record of one opens a new timeline.
pub(super) const MAX_TIMELINES: usize = 100_000;

/// A timeline is forgotten when no record of it went out for this long (records' wall
/// clock; the tracer's `--flow-timeout` defaults to 60 s) ...
pub(super) const IDLE_NS: i128 = 600_000_000_000;

/// ... or this long after a node's summary of its flow (the flow ended there; the other
/// nodes' summaries follow within their 2 s linger and the clocks' disagreement).
pub(super) const ENDED_NS: i128 = 30_000_000_000;

/// How often the timelines are pruned, in records' wall clock.
const PRUNE_EVERY_NS: i128 = 1_000_000_000;

/// Counts that changed are said on stderr at most this often while streams go on.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// --follow: a reader thread per input sends its records; records wait until they are
/// `hold` older than the wall clock (or the held set is full), then go out in wall-clock
/// order. One that comes after a later one went out is printed anyway, marked late.
pub(super) fn follow(sources: Vec<Source>, o: &Options, out: &mut impl Write) -> Result<()> {
    let (tx, rx) = mpsc::sync_channel::<Rec>(CHANNEL);
    let mut threads = Vec::new();
    for source in sources {
        let tx = tx.clone();
        threads.push(std::thread::spawn(move || {
            read_source(source, &tx);
        }));
    }
    drop(tx);
    let mut m = Merger::new(o.hold.as_nanos() as i128, o.json);
    let mut said = (0, 0);
    let mut last_said: Option<Instant> = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(rec) => m.push(rec),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let _ = m.release(now_wall_ns(), out);
        if (m.early, m.forgotten) != said && last_said.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
            said = (m.early, m.forgotten);
            last_said = Some(Instant::now());
            m.report();
        }
    }
    let _ = m.release(i128::MAX, out);
    if (m.early, m.forgotten) != said {
        m.report();
    }
    if m.printed == 0 {
        bail!("no tracer JSON records came in (run the tracers with --json)");
    }
    Ok(())
}

/// One input's reader: its records to the merger until it ends (a pipe closed, a read
/// error); a regular file is followed as it grows, and read again from its start when it
/// was truncated or rotated. A bad line is skipped and counted, never the end. Returns
/// the reader's counts.
pub(super) fn read_source(mut s: Source, tx: &mpsc::SyncSender<Rec>) -> Reader {
    let tail = s.id.is_some();
    let mut r = Reader::new(&s.name);
    let mut seq = 0u64;
    let mut last_said: Option<Instant> = None;
    let mut reopen_failed = false;
    loop {
        let next = match s.lines.next() {
            Ok(Next::Pending) if tail => {
                match s.reopen_if_replaced() {
                    Ok(true) => r.reopened += 1,
                    Ok(false) => std::thread::sleep(Duration::from_millis(200)),
                    Err(e) => {
                        if !std::mem::replace(&mut reopen_failed, true) {
                            eprintln!(
                                "tracer merge: {}: replaced, but the new file cannot be read ({e}); still reading the old one",
                                escape::text(&s.name)
                            );
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                Next::Pending
            }
            Ok(Next::Pending) => match s.lines.finish() {
                Some(last) => last,
                None => break,
            },
            Ok(next) => next,
            Err(e) => {
                eprintln!(
                    "tracer merge: reading {}: {e}; that input ends here",
                    escape::text(&s.name)
                );
                break;
            }
        };
        match next {
            Next::Line(line) => {
                seq += 1;
                if let Some(rec) = r.parse(&line, seq) {
                    if tx.send(rec).is_err() {
                        break;
                    }
                }
            }
            Next::Pending => {}
            skipped => r.skip(&skipped),
        }
        if last_said.is_none_or(|t| t.elapsed() >= REPORT_EVERY) && r.report() {
            last_said = Some(Instant::now());
        }
    }
    r.report();
    r
}

pub(super) fn now_wall_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// A flow's timeline in the --follow output.
pub(super) struct Timeline {
    pub(super) n: usize,
    /// Wall clock of its first line in the text view (its header went out then).
    pub(super) start: Option<i128>,
    /// Newest wall clock of its records.
    pub(super) last: i128,
    /// A node's summary of the flow went out.
    pub(super) ended: bool,
}

/// The --follow hold-back window: a heap of records by wall clock.
pub(crate) struct Merger {
    pub(super) hold_ns: i128,
    pub(super) json: bool,
    /// Min-heap by (key, seq) through Reverse.
    pub(super) held: BinaryHeap<std::cmp::Reverse<(i128, u64, usize)>>,
    pub(super) recs: BTreeMap<usize, Rec>,
    /// The weight of `recs`.
    pub(super) held_bytes: usize,
    pub(super) next: usize,
    /// Newest key released: a record older than this is late.
    pub(super) released: i128,
    pub(super) timelines: HashMap<FlowKey, Timeline>,
    pub(super) last_timeline: usize,
    pruned_at: i128,
    pub(super) printed: u64,
    /// Records that went out before their window ended (the held set was full).
    pub(super) early: u64,
    /// Timelines forgotten beyond [`MAX_TIMELINES`].
    pub(super) forgotten: u64,
}

impl Merger {
    pub(crate) fn new(hold_ns: i128, json: bool) -> Merger {
        Merger {
            hold_ns,
            json,
            held: BinaryHeap::new(),
            recs: BTreeMap::new(),
            held_bytes: 0,
            next: 0,
            released: i128::MIN,
            timelines: HashMap::new(),
            last_timeline: 0,
            pruned_at: i128::MIN,
            printed: 0,
            early: 0,
            forgotten: 0,
        }
    }

    pub(crate) fn push(&mut self, mut rec: Rec) {
        // Streams number their own lines: make the order of arrival the tie-break.
        rec.seq = self.next as u64;
        self.held
            .push(std::cmp::Reverse((rec.key, rec.seq, self.next)));
        self.held_bytes += rec.weight();
        self.recs.insert(self.next, rec);
        self.next += 1;
    }

    /// Writes what is older than `now - hold` (everything with `i128::MAX`).
    pub(crate) fn release(&mut self, now: i128, out: &mut impl Write) -> std::io::Result<()> {
        let cutoff = now.saturating_sub(self.hold_ns);
        while let Some(std::cmp::Reverse((key, _, id))) = self.held.peek().copied() {
            let full = self.held.len() > MAX_HELD || self.held_bytes > MAX_HELD_BYTES;
            if key > cutoff && !full {
                break;
            }
            self.early += u64::from(full && key > cutoff);
            self.held.pop();
            let rec = self.recs.remove(&id).expect("held");
            self.held_bytes -= rec.weight();
            self.emit(&rec, out)?;
        }
        self.prune();
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
                put(out, &l)
            } else {
                Ok(())
            };
        };
        if !self.timelines.contains_key(&k) && self.timelines.len() >= MAX_TIMELINES {
            self.forget_idlest();
        }
        let last_timeline = &mut self.last_timeline;
        let t = self.timelines.entry(k.clone()).or_insert_with(|| {
            *last_timeline += 1;
            Timeline {
                n: *last_timeline,
                start: None,
                last: r.key,
                ended: false,
            }
        });
        t.last = t.last.max(r.key);
        t.ended |= matches!(r.record(), Some(Record::Flow(_)));
        let n = t.n;
        if self.json {
            return writeln!(out, "{}", with_timeline(r, n, late));
        }
        if unmatched_lookup(r) {
            return Ok(());
        }
        let start = match t.start {
            Some(start) => start,
            None => {
                put(out, &format!("timeline {n} {}", k.text()))?;
                *t.start.insert(r.key)
            }
        };
        let Some(mut line) = flow_line(n, r, start) else {
            return Ok(());
        };
        if late {
            line += "  (late)";
        }
        put(out, &line)
    }

    /// Forgets the timelines of flows that ended or went idle ([`ENDED_NS`], [`IDLE_NS`]
    /// before the newest record that went out).
    fn prune(&mut self) {
        if self.released < self.pruned_at.saturating_add(PRUNE_EVERY_NS) {
            return;
        }
        self.pruned_at = self.released;
        let idle = self.released.saturating_sub(IDLE_NS);
        let ended = self.released.saturating_sub(ENDED_NS);
        self.timelines
            .retain(|_, t| t.last >= idle && !(t.ended && t.last < ended));
    }

    /// At [`MAX_TIMELINES`]: forgets the tenth whose newest record is oldest.
    fn forget_idlest(&mut self) {
        let mut lasts: Vec<i128> = self.timelines.values().map(|t| t.last).collect();
        let cut = *lasts.select_nth_unstable(MAX_TIMELINES / 10).1;
        let before = self.timelines.len();
        self.timelines.retain(|_, t| t.last > cut);
        self.forgotten += (before - self.timelines.len()) as u64;
    }

    /// Says on stderr what went out early and what was forgotten.
    pub(super) fn report(&self) {
        let mut parts = Vec::new();
        if self.early > 0 {
            parts.push(format!(
                "{} records went out before their hold-back window ended (more than {MAX_HELD} records or 256 MiB waiting)",
                self.early
            ));
        }
        if self.forgotten > 0 {
            parts.push(format!(
                "{} timelines forgotten before their flows ended (more than {MAX_TIMELINES} open)",
                self.forgotten
            ));
        }
        if !parts.is_empty() {
            eprintln!("tracer merge: {}", parts.join("; "));
        }
    }
}
