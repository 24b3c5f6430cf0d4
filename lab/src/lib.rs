//! The namespace lab: Meridio's trench-a traffic path (gateway, two stateless-lb
//! frontends, a proxy with its bridge, one target) recreated with netns, veths and bridges,
//! as Meridio runs it (the path a VIP's packets take from the gateway to a target). Owns
//! the lab's life (up, checks, down) and how tests talk to it (listener, client
//! connections, ground-truth counters).
//!
//! Everything lives inside namespaces named `<prefix><role>`; interface names live inside
//! the namespaces too, so labs with different prefixes coexist.
//!
//! A crate of its own: `cargo xtask` (lab, demo, bench) and the tracer's end-to-end tests
//! build the same lab through it. Besides the lab: [`netns`] runs code inside a namespace,
//! [`echo`] is the target's TCP echo server, [`daemon`] the detached one `cargo xtask lab
//! up` leaves running, [`cmd`] runs external commands with errors that carry their stderr,
//! [`vendor`] builds Meridio's own load balancer (nfqlb) and test client (mconnect).
//!
//! With [`Lb::Nfqlb`] the frontends run the real nfqlb (Maglev over NFQUEUE) as Meridio's
//! stateless-lb does, over [`LabSpec::targets`] targets that each run `mconnect -server`
//! on VIP port 4000 (answering with their hostname) and an echo server on port 4001; the
//! gateway's ephemeral ports are then 40000-60999, so fixed client ports below 40000 do not
//! meet mconnect's TIME_WAIT sockets.

mod client;
pub mod cmd;
pub mod daemon;
pub mod echo;
pub mod netns;
mod nfqlb;
mod node_view;
mod procs;
mod spec;
mod topology;
mod truth;
mod tunnel;
pub mod vendor;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub use crate::echo::Listener;
pub use crate::nfqlb::{read_answer, MconnectReport};
use client::exchange;
pub use node_view::{wait_ready, OnNode};
use spec::{target_infos, validate};
pub use spec::{LabNames, LabSpec, Lb, QueueRule, Role, TargetInfo};
pub use tunnel::{node_ns_name, vni, vxlan_dev, Node, UNDERLAY_IF, VXLAN_PORT};

pub const VIP4: Ipv4Addr = Ipv4Addr::new(20, 0, 0, 1);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 1);
pub const VIP_PORT: u16 = 4000;
/// The targets' echo server port with [`Lb::Nfqlb`] (mconnect answers on [`VIP_PORT`]).
pub const ECHO_PORT_NFQLB: u16 = 4001;
/// Most targets a lab has.
pub const MAX_TARGETS: u8 = 8;
/// nfqlb's fwmark (and frontend routing table) of target i is FWMARK_OFFSET + i.
pub const FWMARK_OFFSET: u32 = 5000;

/// Client port of the reachability check that `Lab::up` makes; tests should use others.
const CHECK_PORT: u16 = 34999;

/// A lab that is up. Dropping it tears it down unless [`Lab::keep`] was called.
pub struct Lab {
    pub spec: LabSpec,
    /// The prefix the lab was built with: `spec` is public, and teardown must not follow
    /// later edits of it.
    built_prefix: String,
    /// Likewise the interface names it was built with.
    built_names: LabNames,
    /// Long-lived process of each namespace (`holders`).
    holders: Vec<(Role, u32)>,
    /// The process holding the proc-only target's namespace.
    proc_only: Option<u32>,
    /// Every target, target 1 first.
    targets: Vec<TargetInfo>,
    /// nfqlb and mconnect, with [`Lb::Nfqlb`].
    vendor: Option<vendor::VendorTools>,
    /// `nfqlb flowlb` of each frontend.
    nfqlb_pids: Vec<(Role, u32)>,
    queue_rule: Option<QueueRule>,
}

impl Lab {
    /// Builds the lab: removes leftovers of the same prefix, builds, waits for IPv6
    /// addresses, checks that both VIPs answer from the gateway. On failure tears down
    /// what it made and returns the error.
    pub fn up(spec: LabSpec) -> Result<Lab> {
        validate(&spec)?;
        // Before anything is built: the first build of the tools takes a while and may fail.
        let vendor = match spec.lb {
            Lb::Nfqlb => Some(vendor::ensure().context("could not build nfqlb and mconnect")?),
            Lb::StandIn => None,
        };
        let mut lab = Lab {
            built_prefix: spec.prefix.clone(),
            built_names: spec.names,
            holders: Vec::new(),
            proc_only: None,
            targets: target_infos(&spec.prefix, &spec.names, spec.targets),
            vendor,
            nfqlb_pids: Vec::new(),
            queue_rule: None,
            spec,
        };
        lab.down()
            .context("could not remove the leftovers of an earlier lab with this prefix")?;
        // On error `lab` is dropped here, which tears down what was built (the processes
        // are in the pid file from the moment they start).
        topology::build(&lab)?;
        if lab.spec.holders {
            for role in Role::ALL {
                let pid = procs::hold(&lab.built_prefix, &lab.ns(role))?;
                lab.holders.push((role, pid));
            }
        }
        if lab.spec.proc_only_target {
            let hostname = format!("{}target-a-2", lab.built_prefix);
            let pid = procs::unshared(&lab.built_prefix, &hostname)?;
            lab.proc_only = Some(pid);
            topology::build_proc_only_target(&lab, pid)?;
        }
        if lab.spec.lb == Lb::Nfqlb {
            nfqlb::setup(&mut lab)?;
        }
        lab.wait_ipv6_ready()?;
        lab.check_reachable()?;
        lab.teach_proxy_bridge()?;
        Ok(lab)
    }

    /// Deletes the namespaces (ignoring ones already gone) and stops the prefix's
    /// recorded echo server daemon, if any.
    pub fn down(&self) -> Result<()> {
        teardown(&self.built_prefix)
    }

    /// Leaves the lab up after this value is gone (for `cargo xtask lab up`).
    pub fn keep(self) {
        std::mem::forget(self);
    }

    /// The interface names the lab was built with.
    pub fn names(&self) -> LabNames {
        self.built_names
    }

    /// The long-lived process in `role`'s namespace (with `holders`): its
    /// /proc/<pid>/ns/net is that namespace.
    pub fn holder_pid(&self, role: Role) -> Option<u32> {
        self.holders
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, pid)| *pid)
    }

    /// The process that alone holds the proc-only target's namespace (with
    /// `proc_only_target`): /proc/<pid>/ns/net is the only way to it. Its UTS hostname is
    /// prefix + "target-a-2"; it has nsm-style interface `names().tg2_if` with 172.16.0.7 /
    /// fd00::7 and both VIPs, on proxy bridge port `names().px_port_tg2`.
    pub fn proc_only_target_pid(&self) -> Option<u32> {
        self.proc_only
    }

    /// Netns name of `role`, e.g. prefix + "proxy-a".
    pub fn ns(&self, role: Role) -> String {
        ns_name(&self.built_prefix, role)
    }

    /// Every target, target 1 (`Role::Target`) first: netns prefix + "target-a-<i>",
    /// hostname the same, 172.16.0.6 / fd00::6 for target 1 and 172.16.0.(7+i) /
    /// fd00::(7+i) for the others, interface `names().tg_if` in each, proxy bridge port
    /// `names().px_port_tg` for target 1 and that name with its last two characters
    /// replaced by `f<i>` for the others (`proxy.cond-0af2`), fwmark 5000 + i.
    pub fn targets(&self) -> Vec<TargetInfo> {
        self.targets.clone()
    }

    /// Netns name of target `i` (1-based); panics when the lab has no such target.
    pub fn target_ns(&self, i: u8) -> String {
        self.target(i).ns.clone()
    }

    fn target(&self, i: u8) -> &TargetInfo {
        self.targets
            .iter()
            .find(|t| t.index == i)
            .unwrap_or_else(|| panic!("the lab has no target {i} (it has {})", self.targets.len()))
    }

    /// Every netns of the lab with a name (the roles', then targets 2..).
    fn all_ns(&self) -> Vec<String> {
        let mut v: Vec<String> = Role::ALL.iter().map(|r| self.ns(*r)).collect();
        v.extend(self.targets.iter().skip(1).map(|t| t.ns.clone()));
        v
    }

    /// How VIP traffic is queued to nfqlb (with [`Lb::Nfqlb`]; None with the stand-in).
    pub fn queue_rule(&self) -> Option<QueueRule> {
        self.queue_rule
    }

    /// The port of the targets' echo server that [`Lab::connect`] and [`Lab::listen`] use:
    /// [`VIP_PORT`] with the stand-in, [`ECHO_PORT_NFQLB`] with nfqlb (mconnect has 4000).
    pub fn echo_port(&self) -> u16 {
        match self.spec.lb {
            Lb::StandIn => VIP_PORT,
            Lb::Nfqlb => ECHO_PORT_NFQLB,
        }
    }

    /// Netns name of a node of a two-node lab, e.g. prefix + "node-a".
    pub fn node_ns(&self, node: Node) -> String {
        node_ns_name(&self.built_prefix, node)
    }

    /// Address on the conduit subnet: 172.16.0.3 / fd00::3 for FrontendA, .5 / ::5 for
    /// FrontendB (the proxy's ECMP next-hops); also bridge0's .1 / ::1 for Proxy and
    /// nsm-0's .6 / ::6 for Target. Panics for Gateway, which is not on that subnet.
    pub fn frontend_conduit_ip(&self, role: Role, v6: bool) -> IpAddr {
        let host = match role {
            Role::FrontendA => 3,
            Role::FrontendB => 5,
            Role::Proxy => 1,
            Role::Target => 6,
            Role::Gateway => panic!("the gateway has no address on the conduit subnet"),
        };
        if v6 {
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, host))
        } else {
            IpAddr::V4(Ipv4Addr::new(172, 16, 0, host as u8))
        }
    }

    /// The proxy's bridge port that leads to `role`. Panics for Gateway and Proxy, to
    /// which no bridge port leads.
    pub fn proxy_port_towards(&self, role: Role) -> &'static str {
        let n = &self.built_names;
        match role {
            Role::FrontendA => n.px_port_fea,
            Role::FrontendB => n.px_port_feb,
            Role::Target => n.px_port_tg,
            Role::Gateway | Role::Proxy => panic!("no proxy bridge port leads to {role:?}"),
        }
    }

    /// Runs `ip netns exec <ns> args...` and returns its stdout; the error carries stderr.
    pub fn sh(&self, role: Role, args: &[&str]) -> Result<String> {
        let ns = self.ns(role);
        let mut full = vec!["netns", "exec", ns.as_str()];
        full.extend_from_slice(args);
        crate::cmd::run("ip", &full)
    }

    /// Starts an echo server on [::]:[`Lab::echo_port`] (both VIPs) in the target netns, or
    /// with nfqlb in every target's; it is ready to accept when this returns and stops on
    /// drop.
    pub fn listen(&self) -> Result<Listener> {
        match self.spec.lb {
            Lb::StandIn => Listener::start(&self.ns(Role::Target), VIP_PORT),
            Lb::Nfqlb => {
                let names: Vec<&str> = self.targets.iter().map(|t| t.ns.as_str()).collect();
                Listener::start_in(&names, ECHO_PORT_NFQLB)
            }
        }
    }

    /// From the gateway netns: connects from source port `client_port` (SO_REUSEADDR;
    /// source address chosen by the kernel) to `vip`:[`Lab::echo_port`] within 3 s, writes
    /// `payload`, shuts down writing and returns what comes back before EOF.
    pub fn connect(&self, vip: IpAddr, client_port: u16, payload: &[u8]) -> Result<Vec<u8>> {
        let gw = self.ns(Role::Gateway);
        let dest = SocketAddr::new(vip, self.echo_port());
        crate::netns::in_netns(&gw, || exchange(dest, client_port, payload))?
            .with_context(|| format!("connection from {gw} port {client_port} to {dest} failed"))
    }

    /// Waits until no namespace holds a tentative IPv6 address (DAD is off, so this is
    /// quick; it guards against a kernel that still marks them).
    fn wait_ipv6_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        for ns in self.all_ns() {
            loop {
                let failed =
                    crate::cmd::run("ip", &["-n", &ns, "-6", "addr", "show", "dadfailed"])?;
                if !failed.trim().is_empty() {
                    bail!(
                        "an IPv6 address in {ns} failed duplicate address detection: {}",
                        failed.trim()
                    );
                }
                let tentative =
                    crate::cmd::run("ip", &["-n", &ns, "-6", "addr", "show", "tentative"])?;
                if tentative.trim().is_empty() {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "IPv6 addresses in {ns} are still tentative after 5 s: {}",
                        tentative.trim()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// One echo round trip to each VIP from the gateway, through a temporary listener.
    /// One datagram from each frontend to the proxy's bridge address, so the proxy's
    /// bridge has learned every frontend's MAC (for its 300 s ageing time) and forwards
    /// replies to one port instead of flooding them. Tests that want flooding wait it out
    /// or flush the FDB.
    fn teach_proxy_bridge(&self) -> Result<()> {
        for fe in [Role::FrontendA, Role::FrontendB] {
            for v6 in [false, true] {
                let to = SocketAddr::new(self.frontend_conduit_ip(Role::Proxy, v6), 9);
                crate::netns::in_netns(&self.ns(fe), || -> std::io::Result<()> {
                    let any: IpAddr = if v6 {
                        Ipv6Addr::UNSPECIFIED.into()
                    } else {
                        Ipv4Addr::UNSPECIFIED.into()
                    };
                    let sock = std::net::UdpSocket::bind(SocketAddr::new(any, 0))?;
                    sock.send_to(b"fdb", to)?;
                    Ok(())
                })?
                .with_context(|| {
                    format!("could not send from {} to the proxy bridge", self.ns(fe))
                })?;
            }
        }
        Ok(())
    }

    fn check_reachable(&self) -> Result<()> {
        let _listener = self.listen()?;
        for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
            let payload = format!("lab check {vip}\n");
            let echoed = self
                .connect(vip, CHECK_PORT, payload.as_bytes())
                .with_context(|| {
                    format!(
                        "the lab was built but {vip} port {} is not reachable from {}",
                        self.echo_port(),
                        self.ns(Role::Gateway)
                    )
                })?;
            if echoed != payload.as_bytes() {
                bail!(
                    "the lab was built but the echo from {vip} was {:?} instead of {payload:?}",
                    String::from_utf8_lossy(&echoed)
                );
            }
            if self.spec.lb == Lb::Nfqlb {
                // mconnect behind nfqlb: the answer is one of the targets' hostnames.
                let host = self.ask_hostname(vip, CHECK_PORT).with_context(|| {
                    format!(
                        "the lab was built but mconnect on {vip} port {VIP_PORT} does not answer"
                    )
                })?;
                if !self.targets.iter().any(|t| t.hostname == host) {
                    bail!("the lab was built but {vip} port {VIP_PORT} answered {host:?}, no target's hostname");
                }
            }
        }
        Ok(())
    }
}

/// Netns name of target `i` in the lab with this prefix.
pub fn target_ns_name(prefix: &str, i: u8) -> String {
    format!("{prefix}target-a-{i}")
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.down() {
            eprintln!("warning: could not tear down the lab: {e:#}");
        }
    }
}

/// Netns name of `role` in the lab with this prefix.
pub fn ns_name(prefix: &str, role: Role) -> String {
    format!("{prefix}{}", role.base_name())
}

/// Tears down the lab with this prefix (what `cargo xtask lab down` does): stops its
/// recorded echo server daemon and long-lived processes, deletes its namespaces, ignoring
/// ones already gone.
pub fn teardown(prefix: &str) -> Result<()> {
    let mut errors = Vec::new();
    // The processes first: a process inside a deleted netns would keep it alive, unseen.
    if let Err(e) = crate::daemon::stop(prefix) {
        errors.push(format!("{e:#}"));
    }
    if let Err(e) = procs::stop_all(prefix) {
        errors.push(format!("{e:#}"));
    }
    // The roles' namespaces, then every extra target's that exists (the number of targets
    // is not known here).
    let extra = (2..=MAX_TARGETS).map(|i| target_ns_name(prefix, i));
    for ns in Role::ALL.iter().map(|r| ns_name(prefix, *r)).chain(extra) {
        if crate::netns::netns_path(&ns).is_err() {
            continue;
        }
        if let Err(e) = crate::cmd::run("ip", &["netns", "del", &ns]) {
            // Gone meanwhile is fine.
            if crate::netns::netns_path(&ns).is_ok() {
                errors.push(format!("{e:#}"));
            }
        }
    }
    // A two-node lab's node namespaces (none for one node).
    tunnel::teardown(prefix, &mut errors);
    if !errors.is_empty() {
        bail!(
            "could not tear down the lab `{prefix}`: {}",
            errors.join("; ")
        );
    }
    Ok(())
}
