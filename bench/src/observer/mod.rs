//! The processes the benchmark measures (the tracer, tcpdump): start one and time until it
//! says it is ready, read its output while it runs, sample its memory and BPF maps, stop it
//! with SIGINT and time until it is gone, and take its CPU time and peak RSS from wait4.
//! Owns the rule that every process started here is reaped, also on error paths: Drop
//! kills (by pid) and reaps a process that was not stopped.

mod output;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::{kill_process, pidfd_open, waitpid, Pid, PidfdFlags, Signal, WaitOptions};
use tracer_records::Record;

pub use output::Lines;
use output::{read_json_lines, read_stderr};

const READY_TIMEOUT: Duration = Duration::from_secs(15);
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// Lines of stderr kept for error messages and tcpdump's statistics.
const STDERR_KEEP: usize = 40;
/// `ready` records kept (hooks attached, refused, unavailable), one per traced namespace.
const READY_KEEP: usize = 64;

/// When a process counts as ready.
#[derive(Clone, Copy)]
pub enum ReadyOn {
    /// A JSON line on stdout whose "type" is this (the tracer's `ready` record).
    StdoutType(&'static str),
    /// A stderr line containing this (tcpdump's "listening on").
    StderrContains(&'static str),
}

/// One BPF map the process holds, from /proc/<pid>/fdinfo.
#[derive(Debug, Clone)]
pub struct MapInfo {
    pub id: u32,
    pub name: String,
    pub map_type: u32,
    pub memlock: u64,
}

/// A process that has been stopped and reaped.
#[derive(Debug, Clone)]
pub struct Exited {
    pub label: String,
    pub ready_after: Duration,
    /// From SIGINT to the process being gone (pidfd readable).
    pub exit_after: Duration,
    pub success: bool,
    /// user + system CPU over the whole life, and since the ready line.
    pub cpu: Duration,
    pub cpu_after_ready: Duration,
    pub maxrss_kb: u64,
    pub lines: Lines,
    pub stderr: Vec<String>,
}

/// A running observer process.
pub struct Observer {
    pub label: String,
    /// The process started (and reaped with wait4).
    pid: i32,
    /// The process signalled and inspected: `pid`, or the tracer a wrapper (unshare)
    /// forked, after [`Observer::follow_child`].
    inner: i32,
    pidfd: OwnedFd,
    pub ready_after: Duration,
    cpu_at_ready: Duration,
    /// Lines read from stdout so far (to see when the tracer has caught up).
    stdout_lines: Arc<AtomicU64>,
    stdout: Option<JoinHandle<Lines>>,
    stderr: Option<JoinHandle<Vec<String>>>,
    reaped: bool,
}

impl Observer {
    /// Starts `cmd` (stdout piped when `ready` looks there, else to /dev/null; stderr
    /// piped) and waits for its ready line.
    pub fn start(label: &str, mut cmd: Command, ready: ReadyOn) -> Result<Observer> {
        let on_stdout = matches!(ready, ReadyOn::StdoutType(_));
        cmd.stdin(Stdio::null())
            .stdout(if on_stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped());
        // SIGINT is how an observer is stopped: a harness started in the background of a
        // non-interactive shell has it ignored, and an ignored signal stays ignored across
        // exec, so it is set back to its default in the child.
        // SAFETY: signal() is async-signal-safe, as pre_exec requires.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start {label}"))?;
        let pid = child.id() as i32;
        // From here on the pid is ours to reap (wait4, for its rusage); `child` is never
        // waited on.
        let pidfd = match Pid::from_raw(pid).map(|p| pidfd_open(p, PidfdFlags::empty())) {
            Some(Ok(fd)) => fd,
            opened => {
                let e = match opened {
                    Some(Err(e)) => std::io::Error::from(e),
                    _ => std::io::Error::other("not a pid"),
                };
                signal(pid, Signal::KILL);
                let _ = child.wait();
                bail!("pidfd_open failed for {label}: {e}");
            }
        };
        let (ready_tx, ready_rx) = mpsc::channel::<Instant>();
        let stdout_lines = Arc::new(AtomicU64::new(0));
        if let Some(out) = &child.stdout {
            // A 1 MiB pipe instead of 64 KiB: a moment in which the harness's reader thread
            // is not scheduled must not block the tracer's writes (fcntl fails harmlessly
            // above /proc/sys/fs/pipe-max-size).
            let _ = rustix::pipe::fcntl_setpipe_size(out, 1 << 20);
        }
        let stdout = child.stdout.take().map(|out| {
            let want = match ready {
                ReadyOn::StdoutType(t) => t,
                ReadyOn::StderrContains(_) => "",
            };
            let (tx, n) = (ready_tx.clone(), stdout_lines.clone());
            std::thread::spawn(move || read_json_lines(out, want, &tx, &n))
        });
        let stderr = child.stderr.take().map(|err| {
            let want = match ready {
                ReadyOn::StderrContains(s) => s,
                ReadyOn::StdoutType(_) => "",
            };
            let tx = ready_tx.clone();
            std::thread::spawn(move || read_stderr(err, want, &tx))
        });
        drop(ready_tx);
        let mut obs = Observer {
            label: label.to_string(),
            pid,
            inner: pid,
            pidfd,
            ready_after: Duration::ZERO,
            cpu_at_ready: Duration::ZERO,
            stdout_lines,
            stdout,
            stderr,
            reaped: false,
        };
        loop {
            match ready_rx.recv_timeout(Duration::from_millis(10)) {
                Ok(at) => {
                    obs.ready_after = at - started;
                    obs.cpu_at_ready = proc_cpu(pid).unwrap_or_default();
                    return Ok(obs);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
            if obs.is_gone() {
                let ex = obs.reap(Instant::now())?;
                bail!(
                    "{label} exited before it was ready: {}",
                    ex.stderr.join(" | ")
                );
            }
            if started.elapsed() > READY_TIMEOUT {
                let ex = obs.interrupt_and_reap()?;
                bail!(
                    "{label} was not ready within {} s: {}",
                    READY_TIMEOUT.as_secs(),
                    ex.stderr.join(" | ")
                );
            }
        }
    }

    /// From now on signal and inspect the process's only child (the tracer, when `unshare
    /// --fork` started it); its CPU time at ready is taken again. wait4 on the wrapper
    /// still gives the whole rusage: a process's includes its reaped children's.
    pub fn follow_child(&mut self) -> Result<()> {
        let children: Vec<i32> = std::fs::read_dir("/proc")
            .context("cannot read /proc")?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| proc_ppid(*pid) == Some(self.pid))
            .collect();
        let [child] = children.as_slice() else {
            bail!(
                "{} (pid {}) has {} children, expected 1",
                self.label,
                self.pid,
                children.len()
            );
        };
        self.inner = *child;
        self.cpu_at_ready = proc_cpu(self.inner).unwrap_or_default();
        Ok(())
    }

    fn is_gone(&self) -> bool {
        poll_in(&self.pidfd, 0)
    }

    /// Waits until stdout has been quiet for `quiet` (the tracer has worked off what the
    /// ring held), at most `max`; returns how long that took.
    pub fn settle(&self, quiet: Duration, max: Duration) -> Duration {
        let start = Instant::now();
        let mut last = self.stdout_lines.load(Ordering::Relaxed);
        let mut since = Instant::now();
        while start.elapsed() < max {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.stdout_lines.load(Ordering::Relaxed);
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                break;
            }
        }
        start.elapsed()
    }

    /// CPU time used since the ready line, from /proc (10 ms ticks): taken before SIGINT
    /// it leaves out the summaries and detaching at exit.
    pub fn cpu_since_ready(&self) -> Duration {
        proc_cpu(self.inner)
            .unwrap_or_default()
            .saturating_sub(self.cpu_at_ready)
    }

    /// Memory now: (peak resident set so far (VmHWM), resident set (VmRSS)), in KiB.
    pub fn memory_kb(&self) -> (Option<u64>, Option<u64>) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.inner)).unwrap_or_default();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// The BPF maps this process holds open, from /proc/<pid>/fd and fdinfo; names from
    /// `bpftool -j map show` when it can say.
    pub fn bpf_maps(&self) -> Vec<MapInfo> {
        let mut maps: BTreeMap<u32, MapInfo> = BTreeMap::new();
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", self.inner)) else {
            return Vec::new();
        };
        for entry in dir.flatten() {
            let is_map = std::fs::read_link(entry.path())
                .map(|t| t.to_string_lossy() == "anon_inode:bpf-map")
                .unwrap_or(false);
            if !is_map {
                continue;
            }
            let fd = entry.file_name();
            let Ok(info) = std::fs::read_to_string(format!(
                "/proc/{}/fdinfo/{}",
                self.inner,
                fd.to_string_lossy()
            )) else {
                continue;
            };
            let field = |k: &str| -> Option<u64> {
                info.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .and_then(|v| v.trim().parse().ok())
            };
            if let (Some(id), Some(memlock)) = (field("map_id:"), field("memlock:")) {
                maps.insert(
                    id as u32,
                    MapInfo {
                        id: id as u32,
                        name: String::new(),
                        map_type: field("map_type:").unwrap_or(0) as u32,
                        memlock,
                    },
                );
            }
        }
        if let Ok(out) = lab::cmd::run("bpftool", &["-j", "map", "show"]) {
            if let Ok(serde_json::Value::Array(all)) = serde_json::from_str(&out) {
                for m in all {
                    let id = m["id"].as_u64().unwrap_or(0) as u32;
                    if let (Some(mine), Some(name)) = (maps.get_mut(&id), m["name"].as_str()) {
                        mine.name = name.to_string();
                    }
                }
            }
        }
        maps.into_values().collect()
    }

    /// The pid of the observer itself (the tracer, not a wrapper).
    pub fn observed_pid(&self) -> i32 {
        self.inner
    }

    /// The BPF programs the process holds open, from /proc/<pid>/fdinfo: (program id,
    /// run_cnt, run_time_ns), the counts being those of `kernel.bpf_stats_enabled`.
    pub fn bpf_progs(&self) -> Vec<(u32, u64, u64)> {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", self.inner)) else {
            return Vec::new();
        };
        let mut progs: Vec<(u32, u64, u64)> = dir
            .flatten()
            .filter(|e| {
                std::fs::read_link(e.path())
                    .map(|t| t.to_string_lossy() == "anon_inode:bpf-prog")
                    .unwrap_or(false)
            })
            .filter_map(|e| {
                let info = std::fs::read_to_string(format!(
                    "/proc/{}/fdinfo/{}",
                    self.inner,
                    e.file_name().to_string_lossy()
                ))
                .ok()?;
                let field = |k: &str| -> Option<u64> {
                    info.lines()
                        .find_map(|l| l.strip_prefix(k))
                        .and_then(|v| v.trim().parse().ok())
                };
                Some((
                    u32::try_from(field("prog_id:")?).ok()?,
                    field("run_cnt:").unwrap_or(0),
                    field("run_time_ns:").unwrap_or(0),
                ))
            })
            .collect();
        // One program may be open through several fds.
        progs.sort_unstable();
        progs.dedup_by_key(|p| p.0);
        progs
    }

    /// Sends SIGINT (when still running), the start of the exit time.
    pub fn interrupt(&self) -> Instant {
        let at = Instant::now();
        if !self.reaped {
            // Our own child (or its child, which the unreaped wrapper waits for), not
            // reaped yet, so the pid is still ours.
            signal(self.inner, Signal::INT);
        }
        at
    }

    pub fn interrupt_and_reap(self) -> Result<Exited> {
        let at = self.interrupt();
        self.reap(at)
    }

    /// Waits for the process to end (SIGKILL after EXIT_TIMEOUT), reaps it with wait4 and
    /// collects its output. `interrupted_at` is when SIGINT was sent.
    pub fn reap(mut self, interrupted_at: Instant) -> Result<Exited> {
        let remaining = EXIT_TIMEOUT.saturating_sub(interrupted_at.elapsed());
        if !poll_in(&self.pidfd, remaining.as_millis() as i32) {
            eprintln!(
                "{} did not exit within {} s of SIGINT; killing it",
                self.label,
                EXIT_TIMEOUT.as_secs()
            );
            // Our own child and its child, not reaped yet.
            signal(self.inner, Signal::KILL);
            signal(self.pid, Signal::KILL);
            poll_in(&self.pidfd, 5000);
        }
        let exit_after = interrupted_at.elapsed();
        // wait4 through libc: rustix has no call that returns one child's rusage.
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills it for our own child.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid out-pointers; the pid is our unreaped child.
        let r = unsafe { libc::wait4(self.pid, &mut status, 0, &mut ru) };
        self.reaped = true;
        if r != self.pid {
            bail!(
                "wait4 for {} failed: {}",
                self.label,
                std::io::Error::last_os_error()
            );
        }
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        let cpu = tv(ru.ru_utime) + tv(ru.ru_stime);
        let lines = self
            .stdout
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        Ok(Exited {
            label: self.label.clone(),
            ready_after: self.ready_after,
            exit_after,
            success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            cpu,
            cpu_after_ready: cpu.saturating_sub(self.cpu_at_ready),
            maxrss_kb: ru.ru_maxrss as u64,
            lines,
            stderr,
        })
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        if !self.reaped {
            // Our own child (and its child), not reaped yet.
            signal(self.inner, Signal::KILL);
            signal(self.pid, Signal::KILL);
            if let Some(pid) = Pid::from_raw(self.pid) {
                let _ = waitpid(Some(pid), WaitOptions::empty());
            }
        }
    }
}

/// Other people's tracer processes that may be watching the benchmark's lab: those without
/// `--netns` (discovery mode attaches to every proxy and frontend it finds, ours too) and
/// those pointed at a `prefix` namespace. Their programs would run on our packets, in the
/// baseline too, so the report says when they were there.
pub fn foreign_tracers(prefix: &str, exclude: &[i32]) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| !exclude.contains(pid))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim() == "tracer")
                .unwrap_or(false)
        })
        .filter(|pid| {
            let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
            match args.iter().position(|a| *a == b"--netns") {
                None => !args.iter().any(|a| a.starts_with(b"--netns=")),
                Some(i) => args
                    .get(i + 1)
                    .is_some_and(|ns| ns.starts_with(prefix.as_bytes())),
            }
        })
        .count()
}

/// Whether `fd` becomes readable within `timeout_ms` (a pidfd is readable once the
/// process has exited).
fn poll_in(fd: &OwnedFd, timeout_ms: i32) -> bool {
    let timeout = Duration::from_millis(timeout_ms.max(0) as u64)
        .try_into()
        .ok();
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    poll(&mut fds, timeout.as_ref()).is_ok_and(|n| n > 0)
}

/// Sends `sig` to `pid`, ignoring errors (the process may be gone already).
fn signal(pid: i32, sig: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = kill_process(pid, sig);
    }
}

/// The parent pid of a process, from /proc/<pid>/stat.
fn proc_ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// utime + stime of a running process, from /proc/<pid>/stat.
fn proc_cpu(pid: i32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Some(Duration::from_nanos((utime + stime) * 1_000_000_000 / hz))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process started, interrupted and reaped through its pidfd: its SIGINT death is
    /// not a success, and it went within the exit timeout.
    #[test]
    fn an_interrupted_process_is_reaped() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo listening on >&2; exec sleep 30"]);
        let o = Observer::start("sleep", c, ReadyOn::StderrContains("listening on")).unwrap();
        let ex = o.interrupt_and_reap().unwrap();
        assert!(!ex.success);
        assert!(
            ex.exit_after < Duration::from_secs(5),
            "{:?}",
            ex.exit_after
        );
    }
}
