//! The detached echo servers that `cargo xtask lab up` leaves in the targets' netns (one
//! per target), so a user can connect by hand after xtask has exited. Owns their pid file
//! (/run/meridio-tracer-lab/<prefix or "default">.pid), starting and stopping them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::process::{kill_process, Pid, Signal};

const PID_DIR: &str = "/run/meridio-tracer-lab";

/// Pid file of the daemon of the lab with this prefix.
pub fn pid_file(prefix: &str) -> PathBuf {
    let name = if prefix.is_empty() { "default" } else { prefix };
    PathBuf::from(PID_DIR).join(format!("{name}.pid"))
}

/// Starts `<xtask_exe> lab serve --port <port>` in `ns_name` via `ip netns exec`, in its
/// own session with stdio on /dev/null, waits until it listens on `port`, and adds its pid
/// to the prefix's pid file (a lab with several targets has one daemon in each).
pub fn start(prefix: &str, ns_name: &str, xtask_exe: &Path, port: u16) -> Result<u32> {
    let mut cmd = crate::cmd::command("ip");
    cmd.args(["netns", "exec", ns_name]).arg(xtask_exe).args([
        "lab",
        "serve",
        "--port",
        &port.to_string(),
    ]);
    let mut child = crate::cmd::detached(&mut cmd)
        .spawn()
        .context("could not start the lab's echo server daemon")?;
    // `ip netns exec` execs the command in place, so the child's pid is the daemon's.
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !listening(pid, port) {
        if let Some(status) = child.try_wait()? {
            bail!("the lab's echo server daemon exited at once ({status}); run `ip netns exec {ns_name} {} lab serve --port {port}` to see why", xtask_exe.display());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the lab's echo server daemon did not listen on port {port} within 5 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::create_dir_all(PID_DIR).with_context(|| format!("could not create {PID_DIR}"))?;
    let file = pid_file(prefix);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .with_context(|| format!("could not open {}", file.display()))?;
    writeln!(f, "{pid}").with_context(|| format!("could not write {}", file.display()))?;
    Ok(pid)
}

/// Whether process `pid` has a TCP socket listening on `port` in its netns:
/// /proc/<pid>/net shows the sockets of that process's netns.
pub(crate) fn listening(pid: u32, port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["tcp6", "tcp"].iter().any(|f| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{f}"))
            .map(|text| {
                text.lines().skip(1).any(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    // cols[1] = local address:port, cols[3] = state (0A = LISTEN).
                    cols.len() > 3 && cols[1].ends_with(&want) && cols[3] == "0A"
                })
            })
            .unwrap_or(false)
    })
}

/// Whether `pid` is alive and is a `lab serve` daemon (a recycled pid must not be killed).
fn is_daemon(pid: i32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.windows(2).any(|w| w[0] == b"lab" && w[1] == b"serve")
}

fn gone(pid: i32) -> bool {
    // A zombie (state Z) has stopped serving; count it as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

/// Stops the recorded daemons of this prefix, if any, and removes their pid file. Returns
/// whether a running daemon was stopped.
pub fn stop(prefix: &str) -> Result<bool> {
    let file = pid_file(prefix);
    let Ok(text) = std::fs::read_to_string(&file) else {
        return Ok(false);
    };
    let pids: Vec<i32> = text
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|&pid| pid > 0 && is_daemon(pid))
        .collect();
    for &pid in &pids {
        // A pid checked above to be our daemon.
        signal(pid, Signal::TERM);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    for &pid in &pids {
        while !gone(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !gone(pid) {
            signal(pid, Signal::KILL);
        }
    }
    std::fs::remove_file(&file).with_context(|| format!("could not remove {}", file.display()))?;
    Ok(!pids.is_empty())
}

/// kill(2); a pid that is gone already is no error here.
fn signal(pid: i32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = kill_process(pid, signal);
    }
}
