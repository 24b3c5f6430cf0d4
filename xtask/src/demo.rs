//! `cargo xtask demo`: the whole-path tracer on the lab as Meridio runs it (the real nfqlb
//! in both frontends, three targets), while the seed's own commands run from the gateway:
//! one connection per family as `nc 20.0.0.1 4000 -p 35000` makes it (its story, pod by pod,
//! with the target nfqlb chose and the proxy's next-hop), then `mconnect -nconn 400` (the
//! distribution over targets and next-hops, beside mconnect's own report). Between the two,
//! one more IPv4 connection traced as JSON lines (`target/demo/flow.jsonl`) and drawn by
//! `tracer draw` (`target/demo/flow.svg`). Owns the tracer child's life: start, wait for its
//! "ready" line, SIGINT, reap; the lab goes down on every path (Lab's Drop).

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::toolchain::{ensure_host_tools, ensure_tracefs, LAB_TOOLS};
use anyhow::{bail, Context, Result};
use lab::{Lab, LabSpec, Lb, VIP4, VIP6, VIP_PORT};

const CLIENT_PORT: u16 = 35000;
/// The client port of the connection the demo draws.
const PICTURE_PORT: u16 = 35001;
const CONNECTIONS: u32 = 400;
/// Whole-path start-up attaches to every pod: give it time on a slow machine.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Past this after SIGINT the tracer is killed.
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
        lb: Lb::Nfqlb,
        targets: 3,
        ..LabSpec::default()
    };
    let lab = Lab::up(spec).context("could not bring the lab up")?;
    let gw = lab.ns(lab::Role::Gateway);
    let vips = ["--vip", &VIP4.to_string(), "--vip", &VIP6.to_string()].map(String::from);

    println!("== one connection per family, as `nc <VIP> {VIP_PORT} -p {CLIENT_PORT}` from {gw}, followed through every pod ==");
    let port = CLIENT_PORT.to_string();
    let mut args = vips.to_vec();
    args.extend(["--port".to_string(), port]);
    let mut tracer = start_tracer(release, &args, |_| true)?;
    let mut answers = Vec::new();
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        let host = lab
            .ask_hostname(vip, CLIENT_PORT)
            .with_context(|| format!("the connection to {vip} failed"))?;
        answers.push(format!(
            "nc {vip} {VIP_PORT} -p {CLIENT_PORT} (from {gw}) printed: {host}"
        ));
    }
    // The flows close; their stories end with the summaries at the tracer's exit.
    std::thread::sleep(Duration::from_millis(500));
    check(tracer.stop()?)?;
    for a in &answers {
        println!("{a}");
    }

    println!();
    println!("== the picture of one flow: nc {VIP4} {VIP_PORT} -p {PICTURE_PORT} from {gw}, traced as JSON lines, drawn by `tracer draw` ==");
    picture(release, &lab, &vips)?;

    println!();
    println!("== mconnect -address {VIP4}:{VIP_PORT} -nconn {CONNECTIONS} -timeout 2s from {gw} (counts only: --records none) ==");
    let mut args = vips.to_vec();
    args.extend(["--records".to_string(), "none".to_string()]);
    // Only the distribution: the 400 flow summaries would bury it.
    let mut in_distribution = false;
    let mut tracer = start_tracer(release, &args, move |line| {
        if line.starts_with("distribution") {
            in_distribution = true;
        } else if !line.starts_with("  ") {
            in_distribution = false;
        }
        in_distribution
    })?;
    let report = lab.mconnect(IpAddr::V4(VIP4), CONNECTIONS)?;
    std::thread::sleep(Duration::from_millis(500));
    check(tracer.stop()?)?;
    let hosts: Vec<String> = report
        .hosts
        .iter()
        .map(|(host, n)| format!("{host} {n}"))
        .collect();
    println!(
        "mconnect's own report: {} ({} connects, {} failed)",
        hosts.join(", "),
        report.connects,
        report.failed_connects
    );
    lab.down()?;
    Ok(())
}

/// One IPv4 connection traced as JSON lines into target/demo/flow.jsonl, then drawn into
/// target/demo/flow.svg.
fn picture(release: bool, lab: &Lab, vips: &[String]) -> Result<()> {
    let dir = crate::workspace_root().join("target/demo");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let records = dir.join("flow.jsonl");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&records)
            .with_context(|| format!("cannot create {}", records.display()))?,
    );
    let mut args = vips.to_vec();
    args.extend(["--json", "--port", &PICTURE_PORT.to_string()].map(String::from));
    let mut tracer = start_tracer(release, &args, move |line| {
        let _ = writeln!(file, "{line}").and_then(|_| file.flush());
        false
    })?;
    let host = lab
        .ask_hostname(IpAddr::V4(VIP4), PICTURE_PORT)
        .with_context(|| format!("the connection to {VIP4} failed"))?;
    std::thread::sleep(Duration::from_millis(500));
    check(tracer.stop()?)?;
    let svg = dir.join("flow.svg");
    let status = Command::new(crate::tracer_path(release))
        .arg("draw")
        .arg(&records)
        .arg("-o")
        .arg(&svg)
        .status()
        .context("could not run tracer draw")?;
    check(status)?;
    println!(
        "nc {VIP4} {VIP_PORT} -p {PICTURE_PORT} printed: {host}\nwrote {} (`tracer draw {}`)",
        svg.display(),
        records.display()
    );
    Ok(())
}

fn check(status: ExitStatus) -> Result<()> {
    if !status.success() {
        bail!("the tracer failed ({status})");
    }
    Ok(())
}

/// Starts the whole-path tracer and waits for its first "ready" line, forwarding the stdout
/// lines `show` keeps (its stderr is inherited).
fn start_tracer(
    release: bool,
    args: &[String],
    mut show: impl FnMut(&str) -> bool + Send + 'static,
) -> Result<Tracer> {
    let path = crate::tracer_path(release);
    let mut child = Command::new(&path)
        .args(args)
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
            if show(&line) {
                println!("{line}");
            }
            // The text view's ready line, or the JSON one.
            if line.starts_with("ready") || line.starts_with(r#"{"type":"ready""#) {
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
