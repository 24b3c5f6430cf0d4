//! What an observed process writes: the tracer's JSON lines, counted per record type as
//! they stream by, and stderr, kept for the report and watched for a ready line.

use super::*;

/// What the tracer's JSON stdout carried: lines per record type and the `lost` records.
#[derive(Debug, Clone, Default)]
pub struct Lines {
    pub by_type: BTreeMap<String, u64>,
    /// Sum of the `count` of every `lost` record.
    pub lost: u64,
    /// The `ready` records (one per traced namespace; the first READY_KEEP).
    pub ready: Vec<tracer_records::Ready<'static>>,
}

impl Lines {
    pub fn of(&self, kind: &str) -> u64 {
        self.by_type.get(kind).copied().unwrap_or(0)
    }

    /// Ring-buffer records delivered: one `hop` per packet per hook, one `route` per
    /// matched fib lookup (other lines are derived from them or are summaries).
    pub fn records(&self) -> u64 {
        self.of("hop") + self.of("route")
    }
}

/// The "type" of one JSON line: the tracer writes it first (typed records tagged "type"),
/// so the search from the start stays cheap at high rates; `discover --json` lines, whose
/// keys are sorted, find it further on.
fn line_type(line: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"type\":\"";
    let at = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = line[at..].iter().position(|&b| b == b'"')?;
    Some(&line[at..at + len])
}

/// Reads the tracer's JSON stdout to EOF: counts lines per type, sums `lost` counts and
/// reports the ready line. This is the tracer's only consumer, like a pipe into a file.
pub(super) fn read_json_lines(
    out: impl Read,
    ready_type: &str,
    ready: &mpsc::Sender<Instant>,
    n: &AtomicU64,
) -> Lines {
    let mut lines = Lines::default();
    let mut reader = BufReader::with_capacity(1 << 20, out);
    let mut buf = Vec::with_capacity(4096);
    let mut seen_ready = false;
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        n.fetch_add(1, Ordering::Relaxed);
        let kind = line_type(&buf).unwrap_or(b"?");
        // Only these two are parsed whole: the rest are counted by type, so the harness
        // stays faster than the tracer it reads.
        if (kind == b"ready" && lines.ready.len() < READY_KEEP) || kind == b"lost" {
            match serde_json::from_slice::<tracer_records::Line>(&buf).map(|l| l.record) {
                Ok(Record::Ready(r)) => lines.ready.push(r),
                Ok(Record::Lost(l)) => lines.lost += l.count,
                _ => {}
            }
        }
        if !seen_ready && kind == ready_type.as_bytes() {
            seen_ready = true;
            let _ = ready.send(Instant::now());
        }
        let kind = std::str::from_utf8(kind).unwrap_or("?");
        match lines.by_type.get_mut(kind) {
            Some(c) => *c += 1,
            None => {
                lines.by_type.insert(kind.to_string(), 1);
            }
        }
    }
    lines
}

pub(super) fn read_stderr(
    err: impl Read,
    ready_text: &str,
    ready: &mpsc::Sender<Instant>,
) -> Vec<String> {
    let mut kept = Vec::new();
    let mut seen_ready = false;
    for line in BufReader::new(err).lines().map_while(Result::ok) {
        if !seen_ready && !ready_text.is_empty() && line.contains(ready_text) {
            seen_ready = true;
            let _ = ready.send(Instant::now());
        }
        kept.push(line);
        if kept.len() > STDERR_KEEP {
            kept.remove(0);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_type_of_a_json_line() {
        assert_eq!(
            line_type(br#"{"dir":"egress","type":"hop","vip":"20.0.0.1"}"#),
            Some(&b"hop"[..])
        );
        assert_eq!(
            line_type(br#"{"type":"lost","count":3,"total":9}"#),
            Some(&b"lost"[..])
        );
        assert_eq!(
            line_type(br#"{"type":"change","what":"link","text":"a \"type\":\"x\""}"#),
            Some(&b"change"[..])
        );
        assert_eq!(line_type(b"not json"), None);
    }
}
