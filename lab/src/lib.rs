//! The namespace lab: Meridio's trench-a traffic path (gateway, two stateless-lb
//! frontends, a proxy with its bridge, one target) recreated with netns, veths and bridges,
//! as shared/meridio-path.md describes it. Owns the lab's life (up, checks, down) and how
//! tests talk to it (listener, client connections, ground-truth counters).
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

pub mod cmd;
pub mod daemon;
pub mod echo;
pub mod netns;
mod nfqlb;
mod node_view;
mod procs;
mod topology;
mod truth;
mod tunnel;
pub mod vendor;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

pub use crate::echo::Listener;
pub use crate::nfqlb::{read_answer, MconnectReport};
pub use node_view::{wait_ready, OnNode};
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
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What to build. `Default` is the lab of the Meridio tutorial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    /// Prepended to every netns name.
    pub prefix: String,
    /// Proxy (and target) table for the IPv4 VIP source rule.
    pub table_v4: u32,
    /// Proxy (and target) table for the IPv6 VIP source rule.
    pub table_v6: u32,
    /// Proxy fib_multipath_hash_policy (v4 and v6); 3 also sets hash_fields 0x0037
    /// (src/dst IP, proto, src/dst port) so the 5-tuple is hashed even over veths.
    pub hash_policy: u8,
    /// Interface names: the tutorial's by default, [`LabNames::OTHER`] to show that what
    /// reads the lab goes by structure, not by name.
    pub names: LabNames,
    /// Gives every namespace a long-lived process (`sleep infinity`), so each is also
    /// reachable through /proc/<pid>/ns/net, as pods' namespaces are on a node.
    pub holders: bool,
    /// Adds a second target whose namespace only a process holds (no /var/run/netns name,
    /// reachable through /proc alone), on a third proxy bridge port; see
    /// [`Lab::proc_only_target_pid`].
    pub proc_only_target: bool,
    /// 1: every pod on one node, conduits are veths. 2: proxy and target on node A,
    /// frontends and gateway on node B, conduits over VXLAN between them (see `tunnel`).
    pub nodes: u8,
    /// What picks the target in the frontends: a fixed nftables mark (default) or nfqlb.
    pub lb: Lb,
    /// Number of targets, 1 to [`MAX_TARGETS`]; see [`Lab::targets`]. With the stand-in all
    /// traffic goes to target 1 (its mark is fixed).
    pub targets: u8,
}

/// The frontends' load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lb {
    /// An nftables rule marks VIP traffic 5001 (target 1), nfqlb's verdict without nfqlb.
    #[default]
    StandIn,
    /// Meridio's nfqlb (`nfqlb flowlb`, Maglev over NFQUEUE) in each frontend, built from
    /// shared/vendor (see [`vendor`]); the targets run mconnect and echo servers.
    Nfqlb,
}

/// How VIP traffic reaches nfqlb's queues in the frontends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRule {
    /// Meridio's own: `queue num 0-3` in nft chain `inet meridio-nfqlb nfqlb`.
    Nft,
    /// The kernel lacks nft's queue expression: `iptables-legacy` / `ip6tables-legacy -t
    /// mangle -A PREROUTING -d <VIP> -j NFQUEUE --queue-balance 0:3` (the
    /// `inet meridio-nfqlb` table stays, with its VIP sets, without queue statements).
    IptablesLegacy,
}

/// One target of the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// 1-based; nfqlb's identifier (index - 1 in its Maglev table).
    pub index: u8,
    /// Netns name, prefix + "target-a-<index>".
    pub ns: String,
    /// UTS hostname of its servers (what mconnect answers): the netns name.
    pub hostname: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// Its interface holding the address and the VIPs.
    pub interface: String,
    /// The proxy's bridge port toward it.
    pub proxy_port: String,
    /// The fwmark nfqlb sets for it, also the frontends' routing table toward it.
    pub fwmark: u32,
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec {
            prefix: String::new(),
            table_v4: 1,
            table_v6: 2,
            hash_policy: 1,
            names: LabNames::TUTORIAL,
            holders: false,
            proc_only_target: false,
            nodes: 1,
            lb: Lb::StandIn,
            targets: 1,
        }
    }
}

/// The lab's interface names (each at most 15 characters, the kernel's limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabNames {
    /// Gateway: its bridge and its ports toward frontend A and B.
    pub gw_bridge: &'static str,
    pub gw_port_fea: &'static str,
    pub gw_port_feb: &'static str,
    /// Frontends: the external interface (both), the conduit of A and of B.
    pub fe_ext: &'static str,
    pub fea_conduit: &'static str,
    pub feb_conduit: &'static str,
    /// Proxy: the bridge and its ports toward frontend A, frontend B, the target and the
    /// proc-only target.
    pub px_bridge: &'static str,
    pub px_port_fea: &'static str,
    pub px_port_feb: &'static str,
    pub px_port_tg: &'static str,
    pub px_port_tg2: &'static str,
    /// The targets' interfaces holding the VIPs (target, proc-only target).
    pub tg_if: &'static str,
    pub tg2_if: &'static str,
}

impl LabNames {
    /// As NSM names them in the Meridio tutorial (service name cut to 10 chars, '-',
    /// connection id).
    pub const TUTORIAL: LabNames = LabNames {
        gw_bridge: "vlan0",
        gw_port_fea: "vlan0-fe-a",
        gw_port_feb: "vlan0-fe-b",
        fe_ext: "ext-vlan0",
        fea_conduit: "conduit-a.-b89d",
        feb_conduit: "conduit-a.-b84a",
        px_bridge: "bridge0",
        px_port_fea: "conduit-a.-3150",
        px_port_feb: "conduit-a.-6496",
        px_port_tg: "proxy.cond-0a85",
        px_port_tg2: "proxy.cond-1b2c",
        tg_if: "nsm-0",
        tg2_if: "nsm-0",
    };

    /// Other names for every interface: another conduit and bridge, other NSM ids.
    pub const OTHER: LabNames = LabNames {
        gw_bridge: "uplink0",
        gw_port_fea: "uplink0-1",
        gw_port_feb: "uplink0-2",
        fe_ext: "eth-ext",
        fea_conduit: "cdt-x.-cccc",
        feb_conduit: "cdt-x.-dddd",
        px_bridge: "br-meridio",
        px_port_fea: "cdt-x.-aaaa",
        px_port_feb: "cdt-x.-bbbb",
        px_port_tg: "prx.cnd-1234",
        px_port_tg2: "prx.cnd-5678",
        tg_if: "nsm-7",
        tg2_if: "nsm-8",
    };

    fn all(&self) -> [&'static str; 13] {
        [
            self.gw_bridge,
            self.gw_port_fea,
            self.gw_port_feb,
            self.fe_ext,
            self.fea_conduit,
            self.feb_conduit,
            self.px_bridge,
            self.px_port_fea,
            self.px_port_feb,
            self.px_port_tg,
            self.px_port_tg2,
            self.tg_if,
            self.tg2_if,
        ]
    }
}

impl Default for LabNames {
    fn default() -> Self {
        LabNames::TUTORIAL
    }
}

/// The pods of the path (the gateway is a container in the tutorial).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Gateway,
    FrontendA,
    FrontendB,
    Proxy,
    Target,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Gateway,
        Role::FrontendA,
        Role::FrontendB,
        Role::Proxy,
        Role::Target,
    ];

    /// Netns name without the prefix.
    fn base_name(self) -> &'static str {
        match self {
            Role::Gateway => "trench-a",
            Role::FrontendA => "lbfe-a",
            Role::FrontendB => "lbfe-b",
            Role::Proxy => "proxy-a",
            Role::Target => "target-a-1",
        }
    }
}

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

fn target_infos(prefix: &str, names: &LabNames, n: u8) -> Vec<TargetInfo> {
    (1..=n)
        .map(|i| {
            let host = if i == 1 { 6 } else { 7 + i };
            let proxy_port = if i == 1 {
                names.px_port_tg.to_string()
            } else {
                let base = names.px_port_tg;
                let cut = base.len().saturating_sub(2);
                format!("{}f{i}", &base[..cut])
            };
            let ns = target_ns_name(prefix, i);
            TargetInfo {
                index: i,
                hostname: ns.clone(),
                ns,
                ipv4: Ipv4Addr::new(172, 16, 0, host),
                ipv6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, host as u16),
                interface: names.tg_if.to_string(),
                proxy_port,
                fwmark: FWMARK_OFFSET + i as u32,
            }
        })
        .collect()
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

fn validate(spec: &LabSpec) -> Result<()> {
    if spec
        .prefix
        .contains(|c: char| c == '/' || c.is_whitespace())
    {
        bail!(
            "lab prefix `{}` must not contain `/` or spaces",
            spec.prefix
        );
    }
    for (what, t) in [("table-v4", spec.table_v4), ("table-v6", spec.table_v6)] {
        // 0 is not a table; 253-255 are the kernel's default, main and local tables.
        if t == 0 || (253..=255).contains(&t) {
            bail!("{what} {t} is not usable: pick a routing table other than 0 and 253-255");
        }
    }
    let names = spec.names.all();
    if let Some(bad) = names.iter().find(|n| {
        n.is_empty() || n.len() > 15 || n.contains(|c: char| c == '/' || c.is_whitespace())
    }) {
        bail!("interface name `{bad}` is not usable: 1 to 15 characters, no `/` or spaces");
    }
    if !(1..=2).contains(&spec.nodes) {
        bail!("a lab has 1 or 2 nodes, not {}", spec.nodes);
    }
    if spec.hash_policy > 3 {
        bail!("hash policy {} is not one of 0, 1, 2, 3", spec.hash_policy);
    }
    if !(1..=MAX_TARGETS).contains(&spec.targets) {
        bail!("a lab has 1 to {MAX_TARGETS} targets, not {}", spec.targets);
    }
    if spec.proc_only_target && spec.targets > 1 {
        bail!("the proc-only target (hostname target-a-2) cannot be combined with more than one target: choose one of them");
    }
    if spec.targets > 1 && spec.names.px_port_tg.len() < 3 {
        bail!(
            "proxy port name `{}` is too short to derive the other targets' port names from",
            spec.names.px_port_tg
        );
    }
    let ports: Vec<TargetInfo> = target_infos(&spec.prefix, &spec.names, spec.targets);
    if let Some(clash) = ports
        .iter()
        .skip(1)
        .find(|t| names.contains(&t.proxy_port.as_str()))
    {
        bail!(
            "target {}'s proxy port name `{}` clashes with another interface name of the lab",
            clash.index,
            clash.proxy_port
        );
    }
    if spec.nodes == 2 && spec.targets > 1 {
        bail!("a two-node lab has one target");
    }
    Ok(())
}

/// The client side of [`Lab::connect`], run inside the gateway netns.
fn exchange(dest: SocketAddr, client_port: u16, payload: &[u8]) -> Result<Vec<u8>> {
    let mut stream = connect_from(dest, client_port)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    stream
        .write_all(payload)
        .context("could not send the payload")?;
    stream
        .shutdown(Shutdown::Write)
        .context("could not shut down writing")?;
    let mut echoed = Vec::new();
    if let Err(e) = stream.read_to_end(&mut echoed) {
        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            bail!("no end of the echo within 5 s (got {} bytes)", echoed.len());
        }
        return Err(e).context("could not read the echo");
    }
    Ok(echoed)
}

/// A TCP connection from source port `client_port` (SO_REUSEADDR) to `dest` within 3 s,
/// in the calling thread's netns.
fn connect_from(dest: SocketAddr, client_port: u16) -> Result<TcpStream> {
    let domain = if dest.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))
        .context("could not create a TCP socket")?;
    socket
        .set_reuse_address(true)
        .context("could not set SO_REUSEADDR")?;
    let local: SocketAddr = if dest.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, client_port).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, client_port).into()
    };
    socket
        .bind(&local.into())
        .with_context(|| format!("could not bind source port {client_port}"))?;
    if let Err(e) = socket.connect_timeout(&dest.into(), CONNECT_TIMEOUT) {
        if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
            // The same 4-tuple is still in TIME_WAIT from an earlier connection.
            bail!("could not connect: {e} (the same source port to the same VIP was used less than 60 s ago; pick another client port)");
        }
        return Err(e).context("could not connect within 3 s");
    }
    Ok(socket.into())
}
