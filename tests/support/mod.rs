//! Shared pieces of the end-to-end tests: the root gate, the tracer as a child process with
//! its JSON records, and what the kernel says is loaded (bpftool, tc) as ground truth.
#![allow(dead_code)] // each test binary uses a different part of it

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{mpsc, Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use serde_json::Value;
use tracer::records::{self, Line, Record};

/// The tracer binary cargo builds with these tests (this package's `tracer-under-test`, the
/// same process as `tracer`), so a test never starts a stale one.
pub const TRACER: &str = env!("CARGO_BIN_EXE_tracer-under-test");
pub const OUR_PROGRAMS: [&str; 7] = [
    "meridio_tc_in",
    "meridio_tc_out",
    "meridio_fib4",
    "meridio_fib6",
    "meridio_fib4_raw",
    "meridio_fib6_raw",
    "meridio_drop",
];

/// How many times slower than a normal machine this one is: `cargo xtask kernels` sets
/// `MERIDIO_TEST_SLOWDOWN` in its emulated (TCG) machines; the tracer's start and stop
/// deadlines stretch by it.
pub fn slowdown() -> u32 {
    std::env::var("MERIDIO_TEST_SLOWDOWN")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// Labs and tracers are heavy on a 2-core machine and the checks read global kernel state
/// (loaded programs): one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the test lock, or returns `None` (and says so) when not root outside CI.
/// In CI (env `CI` set) a missing root is a failure, never a skip.
pub fn root_or_skip(test: &str) -> Option<MutexGuard<'static, ()>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var_os("CI").is_some() {
            panic!("{test}: end-to-end tests need root, and CI must run them");
        }
        eprintln!(
            "SKIPPED {test}: needs root (eBPF and network namespaces); run `sudo cargo xtask test`"
        );
        return None;
    }
    Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

pub struct Tracer {
    child: Child,
    /// The records read, typed (`None` for a line that would not read as one), and those
    /// lines: a test fails on them at [`Tracer::stop`], since the typed records must
    /// describe all the tracer writes.
    lines: Arc<Mutex<Typed>>,
    /// When each record was read, index for index with `lines`; locked after it.
    arrivals: Arc<Mutex<Vec<Instant>>>,
    stderr: Arc<Mutex<String>>,
    /// The stdout and stderr reader threads: they end at EOF, after the tracer exits.
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// The typed records read so far, line for line (`None` where a line did not read), and
/// the lines that did not.
type Typed = (Vec<Option<Line<'static>>>, Vec<String>);

pub struct Finished {
    pub status: ExitStatus,
    /// The tracer's lines as typed records, line for line.
    pub lines: Vec<Line<'static>>,
    pub stderr: String,
}

/// `Finished::$name()`: the records of one type, typed.
macro_rules! typed {
    ($($name:ident: $variant:ident,)*) => {
        $(pub fn $name(&self) -> Vec<&records::$variant<'static>> {
            self.lines
                .iter()
                .filter_map(|l| match &l.record {
                    Record::$variant(r) => Some(r),
                    _ => None,
                })
                .collect()
        })*
    };
}

impl Finished {
    pub fn of_type(&self, t: &str) -> Vec<&Line<'static>> {
        self.lines
            .iter()
            .filter(|l| l.record.type_name() == t)
            .collect()
    }

    typed! {
        readies: Ready,
        hops: Hop,
        decisions: Decision,
        routes: Route,
        drops: Drop,
        changes: Change,
        distributions: Distribution,
        flows: Flow,
    }
}

impl Tracer {
    /// Starts `tracer --json <args>` and waits for its ready record.
    pub fn start(args: &[&str]) -> Tracer {
        Self::start_command(Command::new(TRACER).arg("--json").args(args))
    }

    /// Like [`Tracer::start`] for a prepared command (say, [`view_command`] with --json).
    pub fn start_command(cmd: &mut Command) -> Tracer {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tracer");
        let lines = Arc::new(Mutex::new((Vec::new(), Vec::new())));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let typed = lines.clone();
        let times = arrivals.clone();
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                // One index in both, under the `lines` lock (see `wait_for`).
                let (typed, refused) = &mut *typed.lock().unwrap();
                match serde_json::from_str::<Line>(&line) {
                    Ok(l) => {
                        if matches!(l.record, Record::Ready(_)) {
                            let _ = ready_tx.send(());
                        }
                        typed.push(Some(l));
                    }
                    Err(e) => {
                        if let Err(e) = serde_json::from_str::<Value>(&line) {
                            panic!("tracer printed a line that is not JSON ({e}): {line}");
                        }
                        typed.push(None);
                        refused.push(format!("{e}: {line}"));
                    }
                }
                times.lock().unwrap().push(Instant::now());
            }
        });
        let err = child.stderr.take().unwrap();
        let errs = stderr.clone();
        let err_reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut e = errs.lock().unwrap();
                e.push_str(&line);
                e.push('\n');
            }
        });
        let t = Tracer {
            child,
            lines,
            arrivals,
            stderr,
            readers: vec![out_reader, err_reader],
        };
        // Whole-path runs attach to every namespace carrying the VIP: give them time.
        if ready_rx
            .recv_timeout(Duration::from_secs(60) * slowdown())
            .is_err()
        {
            let f = t.stop(libc::SIGKILL);
            panic!("tracer did not become ready: {:?}\n{}", f.status, f.stderr);
        }
        t
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits up to `timeout` for a record matching `pred` among those read after the
    /// first `skip`; returns it, its index and when it was read.
    pub fn wait_for(
        &self,
        skip: usize,
        timeout: Duration,
        pred: impl Fn(&Record<'static>) -> bool,
    ) -> Option<(Record<'static>, usize, Instant)> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                // The reader pushes to both under this lock: index i is in each.
                let typed = &self.lines.lock().unwrap().0;
                let found = typed.iter().enumerate().skip(skip).find_map(|(i, l)| {
                    l.as_ref()
                        .filter(|l| pred(&l.record))
                        .map(|l| (l.record.clone(), i))
                });
                if let Some((record, i)) = found {
                    let at = self.arrivals.lock().unwrap()[i];
                    return Some((record, i, at));
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// How many records have been read so far.
    pub fn count(&self) -> usize {
        self.lines.lock().unwrap().0.len()
    }

    /// Sends `signal` and waits for the exit (at most 10 s times [`slowdown`], then SIGKILL
    /// and fail).
    pub fn stop(mut self, signal: i32) -> Finished {
        let status = signal_and_wait(
            &mut self.child,
            signal,
            Duration::from_secs(10) * slowdown(),
        );
        // Every line the tracer wrote is read once the readers reach EOF.
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let (lines, refused) = std::mem::take(&mut *self.lines.lock().unwrap());
        let lines: Vec<Line<'static>> = lines.into_iter().flatten().collect();
        assert!(
            refused.is_empty(),
            "{} line(s) do not read as typed records (tracer::records), the first: {}",
            refused.len(),
            refused[0]
        );
        Finished {
            status,
            lines,
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }
}

/// Sends `signal` to the tracer child and waits for its exit; past `timeout` it is killed
/// and the test fails.
fn signal_and_wait(child: &mut Child, signal: i32, timeout: Duration) -> ExitStatus {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tracer did not exit within {timeout:?} of signal {signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The tracer run in a private mount namespace whose /run/netns holds only the netns files
/// of the lab with `prefix`: the node as a CI machine with only that lab would show it.
/// Namespaces that processes hold stay visible through /proc, unless `own_pids`: then the
/// tracer runs in a new pid namespace, whose /proc shows no process of this machine.
/// Without `own_pids` the shell execs the tracer, so the child's pid is the tracer's.
pub fn view_command(prefix: &str, own_pids: bool, args: &[&str]) -> Command {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let view = format!("/tmp/tracer-view-{}-{n}", std::process::id());
    std::fs::create_dir_all(&view).unwrap();
    let script = r#"set -e
view=$1; prefix=$2; shift 2
mount -t tmpfs tmpfs "$view"
for f in /run/netns/"$prefix"*; do
  [ -e "$f" ] || continue
  b=$(basename "$f"); : > "$view/$b"; mount --bind "$f" "$view/$b"
done
mount --rbind "$view" /run/netns
exec "$@""#;
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private"]);
    if own_pids {
        cmd.args(["-p", "-f", "--mount-proc"]);
    }
    cmd.args(["sh", "-c", script, "sh"])
        .args([view.as_str(), prefix, TRACER])
        .args(args);
    cmd
}

/// A test that fails half-way must not leave its tracer running.
impl Drop for Tracer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `count` TCP SYNs from the lab's gateway to `vip`:`port`, one every `interval_us`, each
/// from a new source port (hping3 counts them up from a random base); the gateway's stack
/// answers each SYN-ACK with a RST. Returns once hping3 says it sent them all.
pub fn syn_flood(lab: &lab::Lab, vip: std::net::IpAddr, port: u16, count: usize, interval_us: u32) {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns(lab::Role::Gateway)])
        .args(["hping3", "-q", "-S", "-p", &port.to_string()])
        .args(["-i", &format!("u{interval_us}"), "-c", &count.to_string()])
        .arg(vip.to_string())
        .output()
        .expect("hping3 (Debian package hping3) runs");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("{count} packets transmitted")),
        "hping3: {said}"
    );
}

/// `tracer merge ARGS`, fed `stdin` (for `-`) from a thread of its own so a large input
/// cannot block on a full output pipe.
pub fn tracer_merge(args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(TRACER)
        .arg("merge")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.map(<[u8]>::to_vec);
    let writer = std::thread::spawn(move || {
        if let Some(b) = stdin {
            let _ = input.write_all(&b);
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// The default lab (the tutorial's names and tables) with netns prefix `prefix`.
pub fn lab_up(prefix: &str) -> lab::Lab {
    lab::Lab::up(lab::LabSpec {
        prefix: prefix.into(),
        ..Default::default()
    })
    .expect("lab up")
}

/// Runs the tracer to completion with a bad argument list.
pub fn run_tracer(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(TRACER)
        .args(args)
        .output()
        .expect("run tracer");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn bpftool_json(args: &[&str]) -> Value {
    let out = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .expect("bpftool (Debian package bpftool) is needed by the tests");
    assert!(
        out.status.success(),
        "bpftool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Ids of the loaded programs that are ours, by name.
pub fn our_program_ids() -> Vec<u64> {
    bpftool_json(&["prog", "show"])
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|p| OUR_PROGRAMS.iter().any(|n| p["name"] == *n))
        .filter_map(|p| p["id"].as_u64())
        .collect()
}

/// Runs `ip` with `args` (also `ip netns exec NS CMD...`); a failure fails the test, with
/// its stderr.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How many programs of each name `pid` holds loaded (program names as bpftool shows
/// them; the kernel keeps 15 characters).
pub fn programs_held_by(pid: i32) -> std::collections::BTreeMap<String, usize> {
    let held = held_by(pid).programs;
    let mut names = std::collections::BTreeMap::new();
    for p in bpftool_json(&["prog", "show"])
        .as_array()
        .into_iter()
        .flatten()
    {
        if p["id"].as_u64().is_some_and(|id| held.contains(&id)) {
            *names
                .entry(p["name"].as_str().unwrap_or_default().to_string())
                .or_insert(0) += 1;
        }
    }
    names
}

/// BPF objects a process holds open: program ids (of program and link fds, from
/// /proc/<pid>/fdinfo) and how many link fds.
#[derive(Debug, Default)]
pub struct Held {
    pub programs: std::collections::HashSet<u64>,
    pub links: usize,
}

pub fn held_by(pid: i32) -> Held {
    let mut held = Held::default();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return held;
    };
    for fd in fds.flatten() {
        let Ok(info) = std::fs::read_to_string(fd.path()) else {
            continue;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Some(id) = field("prog_id:") {
            held.programs.insert(id);
        }
        if field("link_id:").is_some() {
            held.links += 1;
        }
    }
    held
}

/// Programs with our names that no live process holds: what a tracer left behind.
/// Unlike [`our_program_ids`], a tracer running elsewhere on the machine does not count.
pub fn orphaned_programs() -> Vec<u64> {
    let ours = our_program_ids();
    if ours.is_empty() {
        return ours;
    }
    let mut held = std::collections::HashSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() {
            held.extend(held_by(pid).programs);
        }
    }
    ours.into_iter().filter(|id| !held.contains(id)).collect()
}

/// Every tc qdisc and filter on every interface of `netns`, as `tc` prints them (empty
/// when the netlink attach path left nothing behind).
pub fn tc_state(netns: &str) -> String {
    let mut all = String::new();
    for args in [
        &["qdisc", "show"][..],
        &["filter", "show", "ingress"],
        &["filter", "show", "egress"],
    ] {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns, "tc"]).args(args);
        if args[0] == "filter" {
            // `tc filter show` needs a device: ask per device.
            let links = Command::new("ip")
                .args(["-n", netns, "-o", "link", "show"])
                .output()
                .unwrap();
            for line in String::from_utf8_lossy(&links.stdout).lines() {
                let dev = line.split(':').nth(1).unwrap_or("").trim();
                let dev = dev.split('@').next().unwrap_or(dev);
                let out = Command::new("ip")
                    .args([
                        "netns", "exec", netns, "tc", "filter", "show", "dev", dev, args[2],
                    ])
                    .output()
                    .unwrap();
                all += &String::from_utf8_lossy(&out.stdout);
            }
        } else {
            let out = cmd.output().unwrap();
            all += &String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("clsact") || l.contains("ingress"))
                .collect::<Vec<_>>()
                .join("\n");
        }
    }
    all
}

/// A tracer child whose stdout the test reads at its own pace: every line goes to a
/// callback on a reader thread, and [`PipedTracer::pause`] stops that thread from reading,
/// so the pipe fills and the tracer blocks on its stdout, as behind a slow terminal.
/// Unlike [`Tracer`] it keeps nothing itself (long runs would pile up records) and takes
/// any output mode (`--json` is not added).
pub struct PipedTracer {
    child: Child,
    /// true while the reader may read.
    gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr: Arc<Mutex<String>>,
}

impl PipedTracer {
    /// Starts `tracer <args>` and waits (20 s at most) for its ready record or line.
    pub fn start(args: &[&str], mut on_line: impl FnMut(&str) + Send + 'static) -> PipedTracer {
        Self::start_command(Command::new(TRACER).args(args), move |l| on_line(l))
    }

    /// Like [`PipedTracer::start`] for a prepared command (e.g. the tracer run by a
    /// wrapper that execs it, so the child's pid is the tracer's).
    pub fn start_command(
        cmd: &mut Command,
        mut on_line: impl FnMut(&str) + Send + 'static,
    ) -> PipedTracer {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tracer");
        let gate = Arc::new((Mutex::new(true), std::sync::Condvar::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let g = gate.clone();
        let reader = std::thread::spawn(move || {
            let mut out = BufReader::new(out);
            let mut line = String::new();
            loop {
                {
                    let (open, cv) = &*g;
                    let mut open = open.lock().unwrap();
                    while !*open {
                        open = cv.wait(open).unwrap();
                    }
                }
                line.clear();
                match out.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let l = line.trim_end_matches('\n');
                if l.starts_with("ready:") || l.contains(r#""type":"ready""#) {
                    let _ = ready_tx.send(());
                }
                on_line(l);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let errs = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut e = errs.lock().unwrap();
                e.push_str(&line);
                e.push('\n');
            }
        });
        let mut t = PipedTracer {
            child,
            gate,
            reader: Some(reader),
            stderr,
        };
        if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = t.child.kill();
            let status = t.child.wait();
            panic!(
                "tracer did not become ready: {status:?}\n{}",
                t.stderr.lock().unwrap()
            );
        }
        t
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Stops reading the tracer's stdout (the line being read, if any, still arrives).
    pub fn pause(&self) {
        *self.gate.0.lock().unwrap() = false;
    }

    pub fn resume(&self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
    }

    /// What the tracer wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Resumes reading, sends `signal`, waits for the exit (at most `timeout`, then
    /// SIGKILL and fail) and for the reader to reach the end of stdout. Returns the exit
    /// status and stderr.
    pub fn stop(mut self, signal: i32, timeout: Duration) -> (ExitStatus, String) {
        self.resume();
        let status = signal_and_wait(&mut self.child, signal, timeout);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        std::thread::sleep(Duration::from_millis(100));
        (status, self.stderr())
    }
}

impl Drop for PipedTracer {
    fn drop(&mut self) {
        // A test that failed half-way must not leave a tracer attached behind it.
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.resume();
        }
    }
}

/// Resident memory of a process in KiB (VmRSS in /proc/<pid>/status).
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// A third frontend (netns `<prefix>lbfe-c`, conduit 172.16.0.9) on the proxy bridge, and
/// the VIP table set to weights 1, 2, 1. Removed on drop.
pub struct ThirdFrontend {
    pub ns: String,
}

impl ThirdFrontend {
    pub fn add(lab: &lab::Lab) -> ThirdFrontend {
        let ns = format!("{}lbfe-c", lab.spec.prefix);
        let proxy = lab.ns(lab::Role::Proxy);
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &ns])
            .output();
        ip(&["netns", "add", &ns]);
        ip(&[
            "link",
            "add",
            "conduit-c.-0001",
            "netns",
            &ns,
            "type",
            "veth",
            "peer",
            "name",
            "conduit-c.-4242",
            "netns",
            &proxy,
        ]);
        ip(&[
            "-n",
            &proxy,
            "link",
            "set",
            "conduit-c.-4242",
            "master",
            "bridge0",
            "up",
        ]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            "172.16.0.9/24",
            "dev",
            "conduit-c.-0001",
        ]);
        ip(&["-n", &ns, "link", "set", "conduit-c.-0001", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &proxy,
            "route",
            "replace",
            "default",
            "table",
            "1",
            "nexthop",
            "via",
            "172.16.0.3",
            "dev",
            "bridge0",
            "weight",
            "1",
            "nexthop",
            "via",
            "172.16.0.5",
            "dev",
            "bridge0",
            "weight",
            "2",
            "nexthop",
            "via",
            "172.16.0.9",
            "dev",
            "bridge0",
            "weight",
            "1",
        ]);
        add_udp_counter(&ns);
        ThirdFrontend { ns }
    }

    pub fn received(&self) -> u64 {
        read_udp_counter(&self.ns)
    }
}

impl Drop for ThirdFrontend {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.ns])
            .output();
    }
}

/// Ground truth in a frontend netns: UDP datagrams from the VIP that arrive there.
pub fn add_udp_counter(ns: &str) {
    let nft = format!(
        "add table inet tracer-truth\n\
         add chain inet tracer-truth pre {{ type filter hook prerouting priority -300; policy accept; }}\n\
         add counter inet tracer-truth udp_from_vip\n\
         add rule inet tracer-truth pre ip saddr {} udp sport {} counter name \"udp_from_vip\"\n",
        lab::VIP4,
        lab::VIP_PORT
    );
    nft_apply(ns, &nft);
}

/// Loads nftables `rules` (`nft -f` syntax) in `ns`.
pub fn nft_apply(ns: &str, rules: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft in {ns}: {rules}");
}

pub fn read_udp_counter(ns: &str) -> u64 {
    nft_packets(ns, "tracer-truth", "udp_from_vip")
}

/// Packets counted so far by the named nftables counter of table `inet <table>` in `ns`.
pub fn nft_packets(ns: &str, table: &str, counter: &str) -> u64 {
    nft_counter(ns, "inet", table, counter)
}

/// Packets counted so far by the named nftables counter of table `<family> <table>` in `ns`.
pub fn nft_counter(ns: &str, family: &str, table: &str, counter: &str) -> u64 {
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", ns, "nft", "-j", "list", "counter", family, table, counter,
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|i| i["counter"]["packets"].as_u64())
        .unwrap_or_else(|| panic!("no counter {counter} in {ns}: {v}"))
}

/// One `/proc/net/*` statistic of `ns`: `netstat`/`snmp` style (a header line, then a value
/// line, both starting with `group:`) or `snmp6` style (`name value` per line, no group).
pub fn proc_stat(ns: &str, file: &str, group: &str, name: &str) -> u64 {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "cat", &format!("/proc/net/{file}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    if group.is_empty() {
        return text
            .lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(name)).then(|| w.next().unwrap().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no {name} in {file} of {ns}"));
    }
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{group}:")))
        .collect();
    let names: Vec<&str> = lines[0].split_whitespace().collect();
    let values: Vec<&str> = lines[1].split_whitespace().collect();
    let i = names.iter().position(|n| *n == name).unwrap();
    values[i].parse().unwrap()
}

/// A tracer on each node of a two-node lab, as the DaemonSet runs it (`--json --node
/// NAME`, whole path): its lines in `dir/NAME.jsonl`, its stderr in `dir/NAME.err`.
/// Returns once each is ready on every pod of its node (all carry a VIP or VIP rules).
pub fn start_node_tracers(
    lab: &lab::Lab,
    dir: &std::path::Path,
    name: impl Fn(lab::Node) -> String,
) -> Vec<(
    lab::Node,
    lab::OnNode,
    std::path::PathBuf,
    std::path::PathBuf,
)> {
    let mut tracers = Vec::new();
    for node in lab::Node::ALL {
        let node_name = name(node);
        let out = dir.join(format!("{node_name}.jsonl"));
        let err = dir.join(format!("{node_name}.err"));
        let mut on = lab
            .spawn_on_node(
                node,
                std::path::Path::new(TRACER),
                &["--json", "--node", &node_name],
                std::fs::File::create(&out).unwrap().into(),
                std::fs::File::create(&err).unwrap().into(),
            )
            .unwrap();
        let traced: Vec<String> = lab
            .pods_on(node)
            .into_iter()
            .filter(|r| *r != lab::Role::Gateway)
            .map(|r| lab.ns(r))
            .collect();
        if let Err(e) = lab::wait_ready(&out, &traced, &mut on, Duration::from_secs(60)) {
            panic!(
                "tracer on {node:?}: {e:#}\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        tracers.push((node, on, out, err));
    }
    tracers
}

/// One plain HTTP/1.0 GET of `path` (with its query, already encoded) from `addr`: the
/// status line's code and the body. A server that does not answer within 5 s fails the test.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)
        .unwrap_or_else(|e| panic!("nothing answers on {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path} from {addr}: not an HTTP response: {text}"));
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}
