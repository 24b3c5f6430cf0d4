//! The lab's long-lived processes: one `sleep infinity` per namespace, so each namespace is
//! also reachable through /proc/<pid>/ns/net as a pod's is on a node, and the one process
//! that alone holds the proc-only target's namespace (made with `unshare`, no netns name),
//! and with nfqlb the frontends' `nfqlb flowlb` and the targets' `mconnect -server`.
//! Owns their pid file (/run/meridio-tracer-lab/<prefix or "default">.procs) and stopping
//! them.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::process::{kill_process, waitpid, Pid, Signal, WaitOptions};

use crate::cmd;

const PID_DIR: &str = "/run/meridio-tracer-lab";

/// Pid file of the long-lived processes of the lab with this prefix.
pub fn pid_file(prefix: &str) -> PathBuf {
    let name = if prefix.is_empty() { "default" } else { prefix };
    PathBuf::from(PID_DIR).join(format!("{name}.procs"))
}

/// Starts `sleep infinity` inside the named netns; returns its pid.
pub(super) fn hold(prefix: &str, ns_name: &str) -> Result<u32> {
    let mut cmd = cmd::command("ip");
    cmd.args(["netns", "exec", ns_name, "sleep", "infinity"]);
    spawn_recorded(prefix, cmd, &format!("the long-lived process of {ns_name}"))
}

/// Starts `sleep infinity` in a new network and UTS namespace whose hostname is
/// `hostname` (as a pod's is its name); returns its pid. Only /proc/<pid>/ns/net leads to
/// that network namespace.
pub(super) fn unshared(prefix: &str, hostname: &str) -> Result<u32> {
    let mut cmd = cmd::command("unshare");
    cmd.args(["--net", "--uts", "--", "sh", "-c"])
        .arg("hostname \"$0\" && exec sleep infinity")
        .arg(hostname);
    spawn_recorded(
        prefix,
        cmd,
        &format!("the process holding the namespace of {hostname}"),
    )
}

/// Starts `program args` in netns `ns_name` under a UTS namespace of its own whose hostname
/// is `hostname` (a target pod's servers see the pod's name); returns its pid.
pub(super) fn server(
    prefix: &str,
    ns_name: &str,
    hostname: &str,
    program: &Path,
    args: &[&str],
) -> Result<u32> {
    let mut cmd = cmd::command("ip");
    cmd.args([
        "netns", "exec", ns_name, "unshare", "--uts", "--", "sh", "-c",
    ])
    .arg("hostname \"$0\" && exec \"$@\"")
    .arg(hostname)
    .arg(program)
    .args(args);
    let name = program.file_name().unwrap_or_default().to_string_lossy();
    spawn_recorded(prefix, cmd, &format!("{name} in {ns_name}"))
}

/// Starts `nfqlb flowlb` in netns `ns_name` and in a mount namespace of its own with a
/// private tmpfs on /dev/shm (as a pod has: nfqlb keeps its tables in POSIX shared memory,
/// and two frontends must not share them); returns its pid. `nsenter -t <pid> -m -n`
/// reaches it (`ip netns exec` would make yet another mount namespace).
pub(super) fn nfqlb_flowlb(prefix: &str, ns_name: &str, nfqlb: &Path) -> Result<u32> {
    let mut cmd = cmd::command("ip");
    cmd.args([
        "netns",
        "exec",
        ns_name,
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
    ])
    .arg("mount -t tmpfs tmpfs /dev/shm && exec \"$@\"")
    .arg("nfqlb")
    .arg(nfqlb)
    .args([
        "flowlb",
        "--promiscuous_ping",
        "--queue=0:3",
        "--qlength=1024",
        "--hash_mode=0",
    ]);
    spawn_recorded(prefix, cmd, &format!("nfqlb flowlb in {ns_name}"))
}

/// Spawns `cmd` in its own session with stdio on /dev/null, records its pid, and waits
/// until it has become the long-lived program (`ip netns exec`, `unshare` and `sh` exec in
/// place, so the pid stays the same).
fn spawn_recorded(prefix: &str, mut cmd: Command, what: &str) -> Result<u32> {
    let mut child = crate::cmd::detached(&mut cmd)
        .spawn()
        .with_context(|| format!("could not start {what}"))?;
    let pid = child.id();
    if let Err(e) = record(prefix, pid) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !is_ours(pid) {
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited at once ({status})");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not start within 5 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // The Child is dropped without waiting: `stop_all` kills and reaps it.
    Ok(pid)
}

fn record(prefix: &str, pid: u32) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(PID_DIR).with_context(|| format!("could not create {PID_DIR}"))?;
    let file = pid_file(prefix);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .with_context(|| format!("could not open {}", file.display()))?;
    writeln!(f, "{pid}").with_context(|| format!("could not write {}", file.display()))
}

/// Whether `pid` is alive and one of ours (`sleep infinity`, `nfqlb flowlb` or `mconnect
/// -server`, wherever they were built: a lab brought up from another checkout is torn
/// down too): a recycled pid is not killed.
fn is_ours(pid: u32) -> bool {
    let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    if c == b"sleep\0infinity\0" {
        return true;
    }
    let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
    let Some((argv0, rest)) = args.split_first() else {
        return false;
    };
    let name = Path::new(std::ffi::OsStr::from_bytes(argv0)).file_name();
    match name.and_then(|n| n.to_str()) {
        Some("nfqlb") => rest.first() == Some(&&b"flowlb"[..]),
        Some("mconnect") => rest.first() == Some(&&b"-server"[..]),
        _ => false,
    }
}

fn gone(pid: u32) -> bool {
    // A zombie has left its namespaces; count it as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

/// Kills the recorded processes of this prefix (ignoring ones already gone), reaps the
/// ones that are this process's children, and removes the pid file.
pub(super) fn stop_all(prefix: &str) -> Result<()> {
    let file = pid_file(prefix);
    let Ok(text) = std::fs::read_to_string(&file) else {
        return Ok(());
    };
    let pids: Vec<u32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let killed: Vec<u32> = pids
        .into_iter()
        .filter(|&pid| pid > 0 && is_ours(pid))
        .collect();
    for &pid in &killed {
        // A pid checked above to be one of our sleepers.
        if let Some(pid) = Pid::from_raw(pid as i32) {
            let _ = kill_process(pid, Signal::KILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    for &pid in &killed {
        while !gone(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Reaps it when it is our child; ECHILD (ignored) when it is not.
        if let Some(pid) = Pid::from_raw(pid as i32) {
            let _ = waitpid(Some(pid), WaitOptions::NOHANG);
        }
    }
    if let Some(pid) = killed.iter().find(|p| !gone(**p) && is_ours(**p)) {
        bail!("the lab's long-lived process {pid} did not stop");
    }
    std::fs::remove_file(&file).with_context(|| format!("could not remove {}", file.display()))
}
