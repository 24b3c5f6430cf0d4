//! A program run as one node of the two-node lab would see the machine, the way the
//! DaemonSet's tracer sees its worker: in the node's network namespace (hostNetwork), in a
//! private mount namespace whose /run/netns holds only the netns files of that node's pods,
//! and in a pid namespace of its own (its /proc shows no process of the other node). Owns
//! those mounts, the process group the program runs in, and reading its JSON lines back.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::process::{kill_process_group, Pid, Signal};

use super::{Lab, Node, Role};

/// Mounts the view, then execs the program. Runs as pid 1 of the new pid namespace.
const VIEW_SCRIPT: &str = r#"set -e
view=$1; shift
mount -t tmpfs tmpfs "$view"
while [ "$1" != "--" ]; do
  : > "$view/$1"; mount --bind "/run/netns/$1" "$view/$1"; shift
done
shift
mount --rbind "$view" /run/netns
exec "$@""#;

/// The program running on a node. Dropping it kills it.
pub struct OnNode {
    child: Child,
    /// The mount point of the private netns directory (empty outside the view).
    view: PathBuf,
}

impl Lab {
    /// The pods of `node` (in a two-node lab).
    pub fn pods_on(&self, node: Node) -> Vec<Role> {
        Role::ALL
            .into_iter()
            .filter(|r| Node::of(*r) == node)
            .collect()
    }

    /// Starts `program args` as on `node`, its stdout and stderr to the given files.
    pub fn spawn_on_node(
        &self,
        node: Node,
        program: &Path,
        args: &[&str],
        stdout: Stdio,
        stderr: Stdio,
    ) -> Result<OnNode> {
        if self.spec.nodes != 2 {
            bail!("the lab `{}` has one node", self.built_prefix);
        }
        let node_ns = crate::netns::netns_path(&self.node_ns(node))?;
        let view = PathBuf::from("/run/meridio-tracer-lab").join(format!(
            "view-{}-{}",
            self.node_ns(node),
            std::process::id()
        ));
        std::fs::create_dir_all(&view)
            .with_context(|| format!("could not create {}", view.display()))?;
        let mut cmd = crate::cmd::command("nsenter");
        cmd.arg(format!("--net={}", node_ns.display()))
            .args(["--", "unshare", "-m", "--propagation", "private"])
            .args(["-p", "-f", "--mount-proc", "sh", "-c", VIEW_SCRIPT, "sh"])
            .arg(&view);
        for role in self.pods_on(node) {
            cmd.arg(self.ns(role));
        }
        cmd.arg("--").arg(program).args(args);
        // Its own group: `unshare -f` does not pass SIGINT on to its child, so the
        // signal goes to the whole group (see `interrupt`).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("could not start {} on {node:?}", program.display()))?;
        Ok(OnNode { child, view })
    }
}

impl OnNode {
    /// Whether it has exited, and how.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// SIGINT to the program (its group), then waits for its exit status; past `timeout`
    /// it is killed and that is an error.
    pub fn interrupt(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal(Signal::INT);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.signal(Signal::KILL);
                let _ = self.child.wait();
                bail!("it did not exit within {timeout:?} of SIGINT; killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill(2) on the process group this child leads (not yet reaped).
    fn signal(&self, signal: Signal) {
        if let Some(pid) = Pid::from_raw(self.child.id() as i32) {
            let _ = kill_process_group(pid, signal);
        }
    }
}

impl Drop for OnNode {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(Signal::KILL);
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir(&self.view);
    }
}

/// Waits until the JSON lines in `file` hold a `ready` record for each of `netns`, or the
/// program has exited, or `timeout` has passed.
pub fn wait_ready(file: &Path, netns: &[String], on: &mut OnNode, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let ready: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["type"] == "ready")
            .filter_map(|v| v["netns"].as_str().map(str::to_string))
            .collect();
        if netns.iter().all(|n| ready.contains(n)) {
            return Ok(());
        }
        if let Some(status) = on.try_wait()? {
            bail!("it exited ({status}) before it was ready; it traces {ready:?}");
        }
        if Instant::now() > deadline {
            bail!("not ready for all of {netns:?} within {timeout:?}; it traces {ready:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
