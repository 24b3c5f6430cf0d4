//! `cargo xtask demo`: the tracer watching the lab's proxy while one IPv4 and one IPv6
//! connection go through it. Owns the tracer child's life: start, wait for its "ready"
//! line, SIGINT, reap; the lab goes down on every path (Lab's Drop).

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lab::{Lab, LabSpec, Role, VIP4, VIP6};
use xtask::toolchain::{ensure_host_tools, ensure_tracefs, LAB_TOOLS};

const CLIENT_PORT: u16 = 35000;
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The tracer is asked to stop after 8 s anyway; past this it is killed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

/// The running tracer. Dropping it interrupts and reaps it, so no error path leaves a
/// tracer attached.
struct Tracer {
    child: Child,
    output: Option<JoinHandle<()>>,
}

impl Tracer {
    /// Sends SIGINT, waits (killing it past EXIT_TIMEOUT) and forwards the rest of its output.
    fn stop(&mut self) -> Result<ExitStatus> {
        if self.child.try_wait()?.is_none() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        }
        let deadline = Instant::now() + EXIT_TIMEOUT;
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "the tracer did not exit within {} s of SIGINT; killing it",
                    EXIT_TIMEOUT.as_secs()
                );
                let _ = self.child.kill();
                break self.child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if let Some(t) = self.output.take() {
            let _ = t.join();
        }
        Ok(status)
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if self.output.is_some() {
            let _ = self.stop();
        }
    }
}

pub fn demo(release: bool, prefix: &str) -> Result<()> {
    crate::require_root("demo")?;
    ensure_host_tools(LAB_TOOLS)?;
    ensure_tracefs()?;
    crate::build(release)?;

    let spec = LabSpec {
        prefix: prefix.to_string(),
        ..LabSpec::default()
    };
    let lab = Lab::up(spec).context("could not bring the lab up")?;
    let _listener = lab.listen()?;
    let mut tracer = start_tracer(release, &lab)?;

    for (vip, payload) in [
        (IpAddr::V4(VIP4), "hello meridio v4\n"),
        (IpAddr::V6(VIP6), "hello meridio v6\n"),
    ] {
        if vip.is_ipv6() {
            std::thread::sleep(Duration::from_millis(500));
        }
        let echoed = lab.connect(vip, CLIENT_PORT, payload.as_bytes())?;
        if echoed != payload.as_bytes() {
            bail!(
                "the echo from {vip} was {:?} instead of {payload:?}",
                String::from_utf8_lossy(&echoed)
            );
        }
    }

    let status = tracer.stop()?;
    lab.down()?;
    if !status.success() {
        bail!("the tracer failed ({status})");
    }
    Ok(())
}

/// Starts the tracer on the lab's proxy and waits for its "ready" line, forwarding its
/// stdout line by line (its stderr is inherited).
fn start_tracer(release: bool, lab: &Lab) -> Result<Tracer> {
    let path = crate::tracer_path(release);
    let mut child = Command::new(&path)
        .args(["--netns", &lab.ns(Role::Proxy)])
        .args(["--vip", &VIP4.to_string(), "--vip", &VIP6.to_string()])
        .args(["--port", &CLIENT_PORT.to_string(), "--duration", "8"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("could not start {}", path.display()))?;
    let stdout = child
        .stdout
        .take()
        .context("no stdout pipe from the tracer")?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let output = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            if line.starts_with("ready") {
                let _ = ready_tx.send(());
            }
        }
    });
    let mut tracer = Tracer {
        child,
        output: Some(output),
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match ready_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(()) => return Ok(tracer),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = tracer.stop()?;
                bail!("the tracer exited before it was ready ({status})");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(status) = tracer.child.try_wait()? {
            let _ = tracer.stop();
            bail!("the tracer exited before it was ready ({status})");
        }
        if Instant::now() > deadline {
            bail!(
                "the tracer did not print its \"ready\" line within {} s",
                READY_TIMEOUT.as_secs()
            );
        }
    }
}
