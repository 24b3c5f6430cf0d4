//! Inputs that must not hurt the merge, one test per defect: each compares what comes out
//! with the records written in (`testdata/node-a.jsonl`, `node-b.jsonl`).
use std::{
    io::{Cursor, Write as _},
    sync::mpsc,
    time::{Duration, Instant},
};

use tracer_records::{Line, Record};

use super::{
    follow::{read_source, Merger, ENDED_NS, IDLE_NS, MAX_HELD, MAX_HELD_BYTES, MAX_TIMELINES},
    input::{LineReader, Next, Source, MAX_LINE},
    *,
};

const NODE_A: &str = include_str!("testdata/node-a.jsonl");
const NODE_B: &str = include_str!("testdata/node-b.jsonl");

/// The records of `bytes` read as the batch merge reads an input, and its reader.
fn read_bytes(bytes: &[u8]) -> (Vec<Rec>, Reader) {
    let mut lines = LineReader::new(Cursor::new(bytes.to_vec()));
    let mut r = Reader::new("input");
    let mut recs = Vec::new();
    let mut seq = 0;
    loop {
        let next = match lines.next().unwrap() {
            Next::Pending => match lines.finish() {
                Some(n) => n,
                None => break,
            },
            n => n,
        };
        match next {
            Next::Line(l) => {
                seq += 1;
                recs.extend(r.parse(&l, seq));
            }
            other => r.skip(&other),
        }
    }
    (recs, r)
}

/// The records' texts: what --json writes back.
fn texts(recs: &[Rec]) -> Vec<&str> {
    recs.iter().map(|r| r.text.as_str()).collect()
}

fn node_a_lines() -> Vec<&'static str> {
    NODE_A.lines().collect()
}

/// `bad` put between node A's lines at a few places; the reader keeps every record.
fn with_bad_lines(bad: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, l) in node_a_lines().iter().enumerate() {
        if i % 7 == 3 {
            v.extend_from_slice(bad);
            v.push(b'\n');
        }
        v.extend_from_slice(l.as_bytes());
        v.push(b'\n');
    }
    v
}

fn bad_count() -> u64 {
    (0..node_a_lines().len()).filter(|i| i % 7 == 3).count() as u64
}

#[test]
fn an_oversized_line_is_skipped_and_counted_not_held() {
    let long = vec![b'{'; 3 * MAX_LINE];
    let input = with_bad_lines(&long);
    let (recs, r) = read_bytes(&input);
    assert_eq!(texts(&recs), node_a_lines());
    assert_eq!(r.skipped.oversized, bad_count());
    assert_eq!(r.skipped.total(), bad_count());
    assert_eq!(r.first_skipped, Some(4));
    // The line reader never holds more than the cap of a line.
    let mut lines = LineReader::new(Cursor::new(input));
    while lines.next().unwrap() != Next::Pending {
        assert!(lines.buf.capacity() <= 2 * MAX_LINE);
    }
    // Exactly the cap is a line; one byte more is not (and an unended last one too).
    let record = r#"{"type":"x"}"#;
    let at_cap = record.to_string() + &" ".repeat(MAX_LINE - record.len());
    let (recs, r) = read_bytes(format!("{at_cap}\n{at_cap} ").as_bytes());
    assert_eq!((recs.len(), r.skipped.oversized), (1, 1));
}

#[test]
fn invalid_utf8_is_skipped_and_counted_in_a_batch() {
    let (recs, r) = read_bytes(&with_bad_lines(
        b"{\"type\":\"hop\",\"ifname\":\"\xff\xfe\"}",
    ));
    assert_eq!(texts(&recs), node_a_lines());
    assert_eq!(r.skipped.invalid_utf8, bad_count());
    assert_eq!(r.skipped.total(), bad_count());
}

#[test]
fn lines_that_are_not_records_are_skipped_and_counted() {
    for bad in [
        "{{{",
        "[1,2,3]",
        r#""a string""#,
        "null",
        r#"{"no":"type"}"#,
    ] {
        let (recs, r) = read_bytes(&with_bad_lines(bad.as_bytes()));
        assert_eq!(texts(&recs), node_a_lines(), "{bad}");
        assert_eq!(r.skipped.not_record, bad_count(), "{bad}");
    }
    // A deep nest is an error of the parser, not a stack overflow.
    let deep = "[".repeat(100_000);
    let (recs, r) = read_bytes(&with_bad_lines(deep.as_bytes()));
    assert_eq!(
        (recs.len(), r.skipped.not_record),
        (node_a_lines().len(), bad_count())
    );
}

/// A pipe (`kubectl logs -f`): a line that is not UTF-8 does not end the stream.
#[test]
fn a_bad_line_does_not_end_a_followed_pipe() {
    let mut input = with_bad_lines(b"\xff\xfe not UTF-8");
    input.extend_from_slice(&vec![b'x'; MAX_LINE + 1]);
    input.extend_from_slice(b"\n");
    input.extend_from_slice(NODE_B.as_bytes());
    let source = Source {
        name: "-".into(),
        lines: LineReader::new(Box::new(Cursor::new(input))),
        id: None,
    };
    let (tx, rx) = mpsc::sync_channel(100_000);
    let r = read_source(source, &tx);
    drop(tx);
    let got: Vec<String> = rx.iter().map(|r| r.text).collect();
    let want: Vec<&str> = NODE_A.lines().chain(NODE_B.lines()).collect();
    assert_eq!(got, want);
    assert_eq!(r.skipped.invalid_utf8, bad_count());
    assert_eq!(r.skipped.oversized, 1);
}

/// A followed file, its reader in a thread: the records it sends, until `want` came.
struct Tail {
    rx: mpsc::Receiver<Rec>,
    thread: std::thread::JoinHandle<Reader>,
}

impl Tail {
    fn start(path: &std::path::Path) -> Tail {
        let source = Source::open(path.to_str().unwrap()).unwrap();
        assert!(source.id.is_some(), "a regular file is followed");
        let (tx, rx) = mpsc::sync_channel(100_000);
        let thread = std::thread::spawn(move || read_source(source, &tx));
        Tail { rx, thread }
    }

    fn take(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(r) => got.push(r.text),
                Err(e) => panic!("{e}: {} of {n} records came: {got:#?}", got.len()),
            }
        }
        got
    }

    /// Ends the reader (its next send fails) and returns its counts.
    fn stop(self, path: &std::path::Path) -> Reader {
        drop(self.rx);
        append(path, &NODE_B.lines().take(1).collect::<Vec<_>>());
        self.thread.join().unwrap()
    }
}

fn append(path: &std::path::Path, lines: &[&str]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("merge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_truncated_followed_file_is_read_again_from_its_start() {
    let dir = temp_dir("truncated");
    let path = dir.join("node.jsonl");
    let a = node_a_lines();
    append(&path, &a);
    let tail = Tail::start(&path);
    assert_eq!(tail.take(a.len()), a);
    // Truncated (as `> file` or logrotate's copytruncate do), then fewer bytes written.
    std::fs::File::create(&path).unwrap();
    let b: Vec<&str> = NODE_B.lines().take(3).collect();
    append(&path, &b);
    assert_eq!(tail.take(b.len()), b);
    let r = tail.stop(&path);
    assert_eq!(r.reopened, 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_rotated_followed_file_is_read_again_from_its_start() {
    let dir = temp_dir("rotated");
    let path = dir.join("node.jsonl");
    let a = node_a_lines();
    append(&path, &a[..3]);
    let tail = Tail::start(&path);
    assert_eq!(tail.take(3), a[..3]);
    // Rotated: renamed away, a new file at the path, longer than what was read.
    std::fs::rename(&path, dir.join("node.jsonl.1")).unwrap();
    append(&path, &a);
    assert_eq!(tail.take(a.len()), a);
    let r = tail.stop(&path);
    assert_eq!(r.reopened, 1);
    std::fs::remove_dir_all(dir).unwrap();
}

fn timed_recs() -> Vec<Rec> {
    let mut r = Reader::new("a");
    NODE_A
        .lines()
        .enumerate()
        .filter_map(|(i, l)| r.parse(l, i as u64))
        .filter(|r| r.timed)
        .collect()
}

/// Large records (a newer tracer's type, passed through): the held set stays under its
/// byte bound, the rest go out early (counted), none is lost.
#[test]
fn held_records_are_bounded_by_bytes_and_counted() {
    eprintln!(
        "a held record weighs {} bytes and its text",
        std::mem::size_of::<Rec>()
    );
    let pad = "p".repeat(MAX_LINE - 100);
    let mut m = Merger::new(i128::MAX / 4, true);
    let mut r = Reader::new("a");
    let n = 200;
    let mut out = Vec::new();
    let mut peak = 0;
    for i in 0..n {
        let line = format!(r#"{{"type":"newer","wall_ns":{i},"pad":"{pad}"}}"#);
        m.push(r.parse(&line, 1).expect("a record of an unknown type"));
        m.release(0, &mut out).unwrap();
        peak = peak.max(m.held_bytes);
    }
    assert!(m.held.len() < MAX_HELD);
    assert!(peak <= MAX_HELD_BYTES + 2 * MAX_LINE + 1024, "{peak}");
    assert_eq!(m.early, (n - m.held.len()) as u64);
    assert!(m.early > 0);
    m.release(i128::MAX, &mut out).unwrap();
    let walls: Vec<i64> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["wall_ns"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(walls, (0..n as i64).collect::<Vec<_>>());
}

/// A hop of node A's first flow from another client (address, port): another flow.
fn hop_from(client: std::net::IpAddr, port: u16, key: i128) -> Rec {
    static HOP: std::sync::OnceLock<Rec> = std::sync::OnceLock::new();
    let mut r = HOP
        .get_or_init(|| {
            timed_recs()
                .into_iter()
                .find(|r| matches!(r.record(), Some(Record::Hop(h)) if h.vip.is_ipv4()))
                .unwrap()
        })
        .clone();
    let Some(Line {
        record: Record::Hop(h),
        ..
    }) = r.line.as_mut()
    else {
        unreachable!()
    };
    if h.dst == h.vip {
        (h.src, h.sport) = (client, port);
    } else {
        (h.dst, h.dport) = (client, port);
    }
    r.key = key;
    r
}

fn hop_of_flow(port: u16, key: i128) -> Rec {
    hop_from([10, 0, 0, 1].into(), port, key)
}

#[test]
fn timelines_of_idle_and_ended_flows_are_pruned() {
    let s = 1_000_000_000i128;
    let mut m = Merger::new(0, false);
    let mut out = Vec::new();
    for port in 1..=50 {
        m.push(hop_of_flow(port, s));
    }
    // One flow ends: a node's summary of it.
    let mut summary = read_bytes(NODE_A.as_bytes())
        .0
        .into_iter()
        .find(|r| matches!(r.record(), Some(Record::Flow(_))))
        .unwrap();
    summary.key = 2 * s;
    let ended = FlowKey::of(&summary).unwrap();
    m.push(summary);
    m.release(3 * s, &mut out).unwrap();
    assert_eq!(m.timelines.len(), 51);
    // Past ENDED_NS the ended flow is forgotten, the idle ones stay until IDLE_NS.
    m.push(hop_of_flow(60_000, 2 * s + ENDED_NS + s));
    m.release(i128::MAX, &mut out).unwrap();
    assert_eq!(m.timelines.len(), 51);
    assert!(!m.timelines.contains_key(&ended));
    m.push(hop_of_flow(60_001, s + IDLE_NS + s));
    m.release(i128::MAX, &mut out).unwrap();
    let ports: Vec<u64> = m.timelines.keys().map(|k| k.client_port).collect();
    assert_eq!(ports.len(), 2, "{ports:?}");
    // A flow seen again after it was forgotten opens a new timeline.
    m.push(hop_of_flow(1, s + IDLE_NS + 2 * s));
    m.release(i128::MAX, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches(":1 <-> ").count(), 2, "{text}");
    assert_eq!(m.forgotten, 0, "pruned by the rule, not by the bound");
}

#[test]
fn timelines_are_bounded_and_the_overflow_counted() {
    let mut m = Merger::new(0, true);
    let mut sink = Vec::new();
    let n = MAX_TIMELINES + 500;
    let hop = hop_of_flow(1, 0);
    for i in 0..n {
        // Every flow's own client address and port: n distinct flows.
        let client = std::net::Ipv4Addr::from(0x0a00_0000 + (i / 60_000) as u32);
        let mut r = hop_from(client.into(), (i % 60_000) as u16, i as i128);
        r.text.clone_from(&hop.text);
        m.push(r);
        m.release(i128::MAX, &mut sink).unwrap();
    }
    assert!(m.timelines.len() <= MAX_TIMELINES);
    assert_eq!(m.forgotten as usize + m.timelines.len(), n);
    assert!(m.forgotten > 0);
    assert_eq!(m.printed as usize, n, "every record went out");
}

#[test]
fn the_streams_of_an_input_are_bounded() {
    let line = NODE_A.lines().find(|l| l.contains(r#""wall_ns""#)).unwrap();
    let mut r = Reader::new("-");
    for i in 0..3 * read::MAX_STREAMS {
        assert!(r.parse(&format!("[pod/p{i}/tracer] {line}"), 1).is_some());
        assert!(r.last_wall.len() <= read::MAX_STREAMS);
    }
    assert!(r.forgotten_streams > 0);
    assert_eq!(
        r.forgotten_streams as usize + r.last_wall.len(),
        3 * read::MAX_STREAMS
    );
}

/// An interface name with ESC (Linux allows it), a pod name with CR: the text view shows
/// them escaped; --json writes the same values with no raw control character.
#[test]
fn control_characters_from_the_inputs_are_escaped() {
    let hop = NODE_A
        .lines()
        .find(|l| l.contains(r#""type":"hop""#))
        .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(hop).unwrap();
    let evil = "eth\u{1b}]0;owned\u{7}\u{9b}2J\u{7f}";
    v["ifname"] = evil.into();
    let line = serde_json::to_string(&v).unwrap();
    let ready = NODE_A
        .lines()
        .find(|l| l.contains(r#""type":"ready""#))
        .unwrap();
    let mut ready: serde_json::Value = serde_json::from_str(ready).unwrap();
    ready.as_object_mut().unwrap().remove("node");
    let ready = serde_json::to_string(&ready).unwrap();
    let input = format!("{line}\n[pod/evil\r\u{1b}[2K/tracer] {ready}\n");
    let (recs, _) = read_bytes(input.as_bytes());
    assert_eq!(recs.len(), 2);
    let text = {
        let mut out = Vec::new();
        write_batch(&recs, false, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    assert!(text.contains(r"eth\x1b]0;owned\x07\u{9b}2J\x7f"), "{text}");
    assert!(text.contains(r"node evil\x0d\x1b[2K: ready"), "{text}");
    // --json: serde writes ESC escaped but DEL and C1 raw; a raw tab between members is
    // valid JSON too. All go out escaped, the values the same.
    let raw = format!("{{\"type\":\"newer\",\t\"s\":\"a\u{7f}b\u{9b}c\"}}\n{line}\n");
    let (recs, _) = read_bytes(raw.as_bytes());
    let mut out = Vec::new();
    write_batch(&recs, true, &mut out).unwrap();
    let json = String::from_utf8(out).unwrap();
    assert!(
        !json.chars().any(|c| c.is_control() && c != '\n'),
        "{json:?}"
    );
    let back: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(back[0]["s"], "a\u{7f}b\u{9b}c");
    assert!(back.iter().any(|b| b["ifname"] == evil));
    // Good input goes through byte for byte.
    let (recs, _) = read_bytes(NODE_A.as_bytes());
    assert_eq!(texts(&recs), node_a_lines());
}

#[test]
fn follow_text_escapes_control_characters() {
    let hop = NODE_A
        .lines()
        .find(|l| l.contains(r#""type":"hop""#))
        .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(hop).unwrap();
    v["ifname"] = "x\u{1b}[31m".into();
    v["netns"] = "ns\r".into();
    let (recs, _) = read_bytes(serde_json::to_string(&v).unwrap().as_bytes());
    let mut m = Merger::new(0, false);
    let mut out = Vec::new();
    m.push(recs[0].clone());
    m.release(i128::MAX, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    assert!(
        text.contains(r"x\x1b[31m") && text.contains(r"ns\x0d"),
        "{text}"
    );
}

/// A batch merge holds every record: past its bound it stops with one sentence.
#[test]
fn a_batch_merge_is_bounded() {
    let source = || Source {
        name: "a".into(),
        lines: LineReader::new(Box::new(Cursor::new(NODE_A.as_bytes().to_vec()))),
        id: None,
    };
    let (all, _) = read_bytes(NODE_A.as_bytes());
    let weight: usize = all.iter().map(Rec::weight).sum();
    let got = read_all(vec![source()], weight).unwrap();
    assert_eq!(texts(&got), node_a_lines());
    let err = read_all(vec![source()], weight - 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("more records than a batch merge keeps in memory"),
        "{err}"
    );
}

/// --follow says the counts again only when they changed (and the caller rate-limits).
#[test]
fn counts_are_said_again_only_when_they_change() {
    let mut r = Reader::new("a");
    assert!(!r.report(), "nothing to say");
    r.skip(&Next::InvalidUtf8);
    assert!(r.report());
    assert!(!r.report(), "said already");
    assert!(r.parse("not JSON", 2).is_none());
    r.reopened += 1;
    assert!(r.report());
    assert_eq!(
        r.summary(),
        "a: skipped 2 line(s) (1 not tracer JSON records, 1 not UTF-8; the first is line 1); \
         read again from the start 1 time(s) (truncated or rotated)"
    );
}
