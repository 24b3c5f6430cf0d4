//! `tracer merge` on inputs that must not hurt it, through the built binary: lines too long,
//! not UTF-8 or not JSON among a node's records, a followed pipe with a bad line in it, a
//! followed file truncated and then rotated, an interface name holding ESC. What comes out
//! is checked against the records written in. No lab, no root.
mod support;

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use support::{tracer_merge as merge, TRACER};
use tracer_records::{Line, Merged, Record};

const NODE_A: &str = include_str!("../tracer/src/merge/testdata/node-a.jsonl");
const NODE_B: &str = include_str!("../tracer/src/merge/testdata/node-b.jsonl");

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("merge-inputs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A merged --json line as the node wrote it: its record without the members merge adds
/// (a node's own line reads the same way).
fn as_written(line: &str) -> Line<'static> {
    let m: Merged = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    m.line
}

/// Records in an order that does not depend on the order they came in.
fn sort(v: &mut [Line<'static>]) {
    v.sort_by_cached_key(|l| serde_json::to_string(l).unwrap());
}

fn values(text: &str) -> Vec<Line<'static>> {
    let mut v: Vec<Line> = text.lines().map(as_written).collect();
    sort(&mut v);
    v
}

#[test]
fn bad_lines_in_a_batch_are_skipped_and_counted() {
    let d = dir("batch");
    let mut bad = Vec::new();
    for (i, l) in NODE_A.lines().enumerate() {
        match i {
            2 => bad.extend_from_slice(&vec![b'{'; 2 << 20]),
            5 => bad.extend_from_slice(b"{\"type\":\"hop\",\"ifname\":\"\xff\"}"),
            9 => bad.extend_from_slice(b"[2026-12-02T05:33:01Z WARN tracer] not JSON"),
            _ => {}
        }
        if [2, 5, 9].contains(&i) {
            bad.push(b'\n');
        }
        bad.extend_from_slice(l.as_bytes());
        bad.push(b'\n');
    }
    let (clean, dirty) = (d.join("clean.jsonl"), d.join("dirty.jsonl"));
    std::fs::write(&clean, NODE_A).unwrap();
    std::fs::write(&dirty, &bad).unwrap();
    let (clean, dirty) = (clean.to_str().unwrap(), dirty.to_str().unwrap());
    for json in [true, false] {
        let args = |f| if json { vec!["--json", f] } else { vec![f] };
        let want = merge(&args(clean), None);
        let got = merge(&args(dirty), None);
        assert!(got.status.success(), "{got:?}");
        assert_eq!(
            String::from_utf8(got.stdout.clone()).unwrap(),
            String::from_utf8(want.stdout.clone()).unwrap()
        );
        let stderr = String::from_utf8_lossy(&got.stderr);
        assert!(
            stderr.contains(
                "skipped 3 line(s) (1 not tracer JSON records, 1 not UTF-8, 1 longer than 1 MiB; the first is line 3)"
            ),
            "{stderr}"
        );
        if json {
            // Every record written in, once.
            let text = String::from_utf8(got.stdout).unwrap();
            assert_eq!(values(&text), values(NODE_A));
        }
    }
    std::fs::remove_dir_all(d).unwrap();
}

/// `kubectl logs -f ... | tracer merge --follow`: a line that is not UTF-8 (and one too
/// long) in the stream, and every record after it still comes out.
#[test]
fn a_followed_pipe_goes_on_past_bad_lines() {
    let mut input = Vec::new();
    input.extend_from_slice(NODE_A.as_bytes());
    input.extend_from_slice(b"\xc3\x28 not UTF-8\n");
    input.extend_from_slice(&vec![b'x'; (1 << 20) + 1]);
    input.push(b'\n');
    input.extend_from_slice(NODE_B.as_bytes());
    let t = Instant::now();
    let out = merge(&["--follow", "--json", "--hold", "0.1", "-"], Some(&input));
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(values(&text), values(&(NODE_A.to_string() + NODE_B)));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipped 2 line(s) (1 not UTF-8, 1 longer than 1 MiB"),
        "{stderr}"
    );
    eprintln!("followed pipe merged in {:?}", t.elapsed());
}

/// `tracer merge --follow FILE` running, its stdout lines as they come.
struct Following {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Following {
    fn start(path: &Path) -> Following {
        let mut child = Command::new(TRACER)
            .args(["merge", "--follow", "--json", "--hold", "0.1"])
            .arg(path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in stdout.lines() {
                if tx.send(l.unwrap()).is_err() {
                    break;
                }
            }
        });
        Following { child, lines }
    }

    /// The next `n` records, as written.
    fn take(&self, n: usize) -> Vec<Line<'static>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => got.push(as_written(&l)),
                Err(e) => panic!("{e}: {} of {n} records came", got.len()),
            }
        }
        sort(&mut got);
        got
    }

    fn stop(mut self) -> String {
        self.child.kill().unwrap();
        let out = self.child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn write_lines(path: &Path, lines: &[&str]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

fn sorted(lines: &[&str]) -> Vec<Line<'static>> {
    let mut v: Vec<Line> = lines.iter().map(|l| as_written(l)).collect();
    sort(&mut v);
    v
}

#[test]
fn a_followed_file_truncated_then_rotated_is_read_again() {
    let d = dir("follow");
    let path = d.join("node.jsonl");
    let (a, b): (Vec<&str>, Vec<&str>) = (NODE_A.lines().collect(), NODE_B.lines().collect());
    write_lines(&path, &a);
    let f = Following::start(&path);
    assert_eq!(f.take(a.len()), sorted(&a));
    // Truncated, then fewer bytes than were read written again.
    std::fs::File::create(&path).unwrap();
    write_lines(&path, &b[..3]);
    assert_eq!(f.take(3), sorted(&b[..3]));
    // Rotated: renamed away, a new file at the path, longer than the old one.
    std::fs::rename(&path, d.join("node.jsonl.1")).unwrap();
    write_lines(&path, &b);
    assert_eq!(f.take(b.len()), sorted(&b));
    let stderr = f.stop();
    assert!(
        stderr.contains("read again from the start 1 time(s) (truncated or rotated)"),
        "{stderr}"
    );
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn an_interface_name_with_esc_is_printed_escaped() {
    let d = dir("esc");
    let hop = NODE_A
        .lines()
        .find(|l| l.contains(r#""type":"hop""#))
        .unwrap();
    let mut v: Line = serde_json::from_str(hop).unwrap();
    let Record::Hop(h) = &mut v.record else {
        unreachable!("a hop line")
    };
    h.ifname = "eth0\u{1b}[2J\u{1b}]0;title\u{7}".into();
    let path = d.join("node.jsonl");
    std::fs::write(&path, serde_json::to_string(&v).unwrap() + "\n").unwrap();
    let out = merge(&[path.to_str().unwrap()], None);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    assert!(text.contains(r"eth0\x1b[2J\x1b]0;title\x07"), "{text}");
    // --json: the same value, escaped as JSON.
    let out = merge(&["--json", path.to_str().unwrap()], None);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(as_written(text.trim_end()), v);
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'));
    std::fs::remove_dir_all(d).unwrap();
}
