//! The lab with Meridio's real load balancer ([`super::Lb::Nfqlb`]): in each frontend
//! `nfqlb flowlb` configured as Meridio's stateless-lb configures it (one stream, one flow
//! for both VIPs, one Maglev slot per target), the queue rule that feeds it (nftables, or
//! iptables-legacy where the kernel lacks nft's queue expression), and in each target
//! `mconnect -server` on VIP port 4000 under the target's own hostname. Also the client
//! side run from the gateway: `mconnect` and a single hostname question.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::{Lab, QueueRule, Role, VIP4, VIP6, VIP_PORT};
use crate::{cmd, procs};

/// nfqlb's shared-memory table of the lab's one stream (Meridio: tshm-<stream>).
const SHM: &str = "tshm-stream-a";
/// The flow of both VIPs (Meridio: tshm-<stream>-<flow>).
const FLOW: &str = "tshm-stream-a-flow-a";
const FRONTENDS: [Role; 2] = [Role::FrontendA, Role::FrontendB];
/// How long `nfqlb flowlb` may take to open its control socket.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// What `mconnect -output json` reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MconnectReport {
    /// Connections answered per server hostname.
    pub hosts: BTreeMap<String, u64>,
    /// Connections attempted.
    pub connects: u64,
    pub failed_connects: u64,
    #[serde(default)]
    pub failed_reads: u64,
}

impl MconnectReport {
    /// Connections that the host with this name answered.
    pub fn count(&self, hostname: &str) -> u64 {
        self.hosts.get(hostname).copied().unwrap_or(0)
    }
}

/// Starts and configures nfqlb in both frontends, loads the queue rules, starts mconnect in
/// every target.
pub(super) fn setup(lab: &mut Lab) -> Result<()> {
    let tools = lab.vendor.clone().context("nfqlb was not built")?;
    let prefix = lab.built_prefix.clone();
    // mconnect's hundreds of connections leave TIME_WAIT sockets on ephemeral ports, which
    // a fixed client port (tests use 34999-39999) could then not bind: keep them above.
    let gw = lab.ns(Role::Gateway);
    cmd::run(
        "ip",
        &[
            "netns",
            "exec",
            &gw,
            "sysctl",
            "-qw",
            "net.ipv4.ip_local_port_range=40000 60999",
        ],
    )?;
    for fe in FRONTENDS {
        let ns = lab.ns(fe);
        let pid = procs::nfqlb_flowlb(&prefix, &ns, &tools.nfqlb)?;
        lab.nfqlb_pids.push((fe, pid));
        wait_ready(pid, &ns)?;
        lab.nfqlb(
            fe,
            &[
                "init",
                "--ownfw=0",
                &format!("--shm={SHM}"),
                "--M=10000",
                "--N=100",
            ],
        )?;
        for i in lab.targets.iter().map(|t| t.index).collect::<Vec<_>>() {
            activate(lab, fe, i)?;
        }
        lab.nfqlb(
            fe,
            &[
                "flow-set",
                &format!("--name={FLOW}"),
                &format!("--target={SHM}"),
                "--prio=1",
                "--protocols=tcp,udp",
                &format!("--dsts={VIP4}/32,{VIP6}/128"),
            ],
        )?;
    }
    lab.queue_rule = Some(queue_rules(lab)?);
    for t in lab.targets.clone() {
        let address = format!("[::]:{VIP_PORT}");
        let pid = procs::server(
            &prefix,
            &t.ns,
            &t.hostname,
            &tools.mconnect,
            &["-server", "-address", &address],
        )?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while !crate::daemon::listening(pid, VIP_PORT) {
            if Instant::now() > deadline {
                bail!(
                    "mconnect in {} did not listen on port {VIP_PORT} within 5 s",
                    t.ns
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Waits until flowlb of `pid` has its abstract control socket `@nfqlb` in its netns.
fn wait_ready(pid: u32, ns: &str) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let unix = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).with_context(|| {
            format!("nfqlb flowlb (pid {pid}) in {ns} ended before it was ready")
        })?;
        if unix
            .lines()
            .any(|l| l.split_whitespace().last() == Some("@nfqlb"))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nfqlb flowlb in {ns} did not open its control socket @nfqlb within 5 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn activate(lab: &Lab, fe: Role, i: u8) -> Result<()> {
    let fwmark = lab.target(i).fwmark.to_string();
    lab.nfqlb(
        fe,
        &[
            "activate",
            &format!("--index={}", i - 1),
            &format!("--shm={SHM}"),
            &fwmark,
        ],
    )
    .map(|_| ())
}

/// Loads `inet meridio-nfqlb` with Meridio's `queue num 0-3` in both frontends, or, where
/// the kernel has no nft queue expression, the table without it plus iptables-legacy
/// NFQUEUE rules.
fn queue_rules(lab: &Lab) -> Result<QueueRule> {
    let queue = "counter queue num 0-3";
    let with_queue = super::topology::nfqlb_table(Some(queue), Some(queue));
    let mut rule = QueueRule::Nft;
    for fe in FRONTENDS {
        let ns = lab.ns(fe);
        let load = |script: &str| {
            cmd::run_with_stdin(
                "ip",
                &["netns", "exec", &ns, "nft", "-f", "-"],
                Some(script),
            )
        };
        if rule == QueueRule::Nft {
            match load(&with_queue) {
                Ok(_) => continue,
                // The kernel's answer when nft_queue is not built: "Could not process rule:
                // No such file or directory" on the queue statement.
                Err(e) if format!("{e:#}").contains("No such file or directory") => {
                    rule = QueueRule::IptablesLegacy;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("could not load the meridio-nfqlb table in {ns}"))
                }
            }
        }
        load(&super::topology::nfqlb_table(None, None))
            .with_context(|| format!("could not load the meridio-nfqlb table in {ns}"))?;
        for (prog, vip) in [
            ("iptables-legacy", format!("{VIP4}/32")),
            ("ip6tables-legacy", format!("{VIP6}/128")),
        ] {
            cmd::run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &ns,
                    prog,
                    "-t",
                    "mangle",
                    "-A",
                    "PREROUTING",
                    "-d",
                    &vip,
                    "-j",
                    "NFQUEUE",
                    "--queue-balance",
                    "0:3",
                ],
            )
            .with_context(|| format!("could not add the NFQUEUE rule for {vip} in {ns}"))?;
        }
    }
    Ok(rule)
}

impl Lab {
    /// Pid of `nfqlb flowlb` in that frontend (with [`super::Lb::Nfqlb`]).
    pub fn nfqlb_pid(&self, role: Role) -> Option<u32> {
        self.nfqlb_pids
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, pid)| *pid)
    }

    /// Runs `nfqlb <args>` in the network and mount namespaces of that frontend's flowlb
    /// (`nsenter -t <pid> -m -n`: its /dev/shm holds the tables); returns its stdout.
    pub fn nfqlb(&self, role: Role, args: &[&str]) -> Result<String> {
        let pid = self.nfqlb_pid(role).with_context(|| {
            format!(
                "no nfqlb runs in {} (the lab's lb is not nfqlb)",
                self.ns(role)
            )
        })?;
        let tools = self.vendor.as_ref().context("nfqlb was not built")?;
        let pid = pid.to_string();
        let mut full = vec!["-t", pid.as_str(), "-m", "-n"];
        let nfqlb = tools.nfqlb.to_string_lossy();
        full.push(&nfqlb);
        full.extend_from_slice(args);
        cmd::run("nsenter", &full).with_context(|| format!("nfqlb in {} failed", self.ns(role)))
    }

    /// Takes target `i` out of both frontends' Maglev tables (`nfqlb deactivate`), as
    /// Meridio does when a target leaves.
    pub fn deactivate_target(&self, i: u8) -> Result<()> {
        self.target(i);
        for fe in FRONTENDS {
            self.nfqlb(
                fe,
                &[
                    "deactivate",
                    &format!("--index={}", i - 1),
                    &format!("--shm={SHM}"),
                ],
            )?;
        }
        Ok(())
    }

    /// Puts target `i` back into both frontends' Maglev tables (`nfqlb activate`).
    pub fn activate_target(&self, i: u8) -> Result<()> {
        for fe in FRONTENDS {
            activate(self, fe, i)?;
        }
        Ok(())
    }

    /// Runs `mconnect -address <vip>:4000 -nconn <nconn> -timeout 2s -output json` in the
    /// gateway netns (with [`super::Lb::Nfqlb`]) and returns its report; failed connections
    /// are in the report, not an error.
    pub fn mconnect(&self, vip: IpAddr, nconn: u32) -> Result<MconnectReport> {
        let tools = self
            .vendor
            .as_ref()
            .context("mconnect runs only in a lab whose lb is nfqlb")?;
        let gw = self.ns(Role::Gateway);
        let address = SocketAddr::new(vip, VIP_PORT).to_string();
        let out = cmd::command("ip")
            .args(["netns", "exec", &gw])
            .arg(&tools.mconnect)
            .args(["-address", &address, "-nconn", &nconn.to_string()])
            .args(["-timeout", "2s", "-output", "json"])
            .stdin(std::process::Stdio::null())
            .output()
            .context("could not start mconnect")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        // mconnect exits 1 when a connection failed, after printing its report.
        serde_json::from_str(stdout.trim()).with_context(|| {
            format!(
                "mconnect to {address} from {gw} printed no report ({}): {} {}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
    }

    /// From the gateway netns: a TCP connection from source port `client_port` to
    /// `vip`:4000 that returns what the server wrote first (mconnect: its hostname), as
    /// `nc <vip> 4000 -p <client_port>` prints. The same port to the same VIP cannot be
    /// used again for 60 s (TIME_WAIT); the gateway's ephemeral ports (mconnect's) are
    /// 40000-60999 in this lab, so pick client ports below 40000.
    pub fn ask_hostname(&self, vip: IpAddr, client_port: u16) -> Result<String> {
        let mut stream = self.open(vip, client_port)?;
        read_answer(&mut stream).with_context(|| {
            format!("asking {vip} port {VIP_PORT} from client port {client_port} failed")
        })
    }

    /// From the gateway netns: a TCP connection from `client_port` to `vip`:4000 left open,
    /// with a 5 s read timeout (the socket stays in the gateway's netns whichever thread
    /// uses it). mconnect's server answers each write with its hostname again
    /// ([`read_answer`]).
    pub fn open(&self, vip: IpAddr, client_port: u16) -> Result<TcpStream> {
        let gw = self.ns(Role::Gateway);
        let dest = SocketAddr::new(vip, VIP_PORT);
        let stream =
            crate::netns::in_netns(&gw, || crate::client::connect_from(dest, client_port))?
                .with_context(|| {
                    format!("connecting to {dest} from {gw} port {client_port} failed")
                })?;
        stream.set_read_timeout(Some(crate::client::READ_TIMEOUT))?;
        Ok(stream)
    }
}

/// What the server wrote next (mconnect's server: its hostname), trimmed.
pub fn read_answer(stream: &mut TcpStream) -> Result<String> {
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => bail!("the server closed the connection without a word"),
            Ok(n) => return Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                bail!("no answer within 5 s")
            }
            Err(e) => return Err(e).context("could not read the answer"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_mconnect_json() {
        let out = r#"{"hosts":{"h-target-a-1":130,"h-target-a-2":140},"connects":270,"failed_connects":0,"failed_reads":0,"start_time":"2024-01-01T00:00:00Z","timeout":2000000000,"duration":1000}"#;
        let r: super::MconnectReport = serde_json::from_str(out).unwrap();
        assert_eq!(r.connects, 270);
        assert_eq!(r.failed_connects, 0);
        assert_eq!(r.count("h-target-a-2"), 140);
        assert_eq!(r.count("nope"), 0);
    }
}
