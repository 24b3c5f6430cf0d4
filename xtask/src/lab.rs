//! The namespace lab: Meridio's trench-a traffic path (gateway, two stateless-lb
//! frontends, a proxy with its bridge, one target) recreated with netns, veths and bridges,
//! as shared/meridio-path.md describes it. Owns the lab's life (up, checks, down) and how
//! tests talk to it (listener, client connections, ground-truth counters).
//!
//! Everything lives inside namespaces named `<prefix><role>`; interface names live inside
//! the namespaces too, so labs with different prefixes coexist.

mod topology;
mod truth;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

pub use crate::echo::Listener;

pub const VIP4: Ipv4Addr = Ipv4Addr::new(20, 0, 0, 1);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 1);
pub const VIP_PORT: u16 = 4000;

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
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec {
            prefix: String::new(),
            table_v4: 1,
            table_v6: 2,
            hash_policy: 1,
        }
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
}

impl Lab {
    /// Builds the lab: removes leftovers of the same prefix, builds, waits for IPv6
    /// addresses, checks that both VIPs answer from the gateway. On failure tears down
    /// what it made and returns the error.
    pub fn up(spec: LabSpec) -> Result<Lab> {
        validate(&spec)?;
        let lab = Lab {
            built_prefix: spec.prefix.clone(),
            spec,
        };
        lab.down()
            .context("could not remove the leftovers of an earlier lab with this prefix")?;
        // On error `lab` is dropped here, which tears down what was built.
        topology::build(&lab)?;
        lab.wait_ipv6_ready()?;
        lab.check_reachable()?;
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

    /// Netns name of `role`, e.g. prefix + "proxy-a".
    pub fn ns(&self, role: Role) -> String {
        ns_name(&self.built_prefix, role)
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
        match role {
            Role::FrontendA => topology::PX_PORT_FEA,
            Role::FrontendB => topology::PX_PORT_FEB,
            Role::Target => topology::PX_PORT_TG,
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

    /// Starts an echo server on [::]:4000 in the target netns (both VIPs); it is ready to
    /// accept when this returns and stops on drop.
    pub fn listen(&self) -> Result<Listener> {
        Listener::start(&self.ns(Role::Target), VIP_PORT)
    }

    /// From the gateway netns: connects from source port `client_port` (SO_REUSEADDR;
    /// source address chosen by the kernel) to `vip`:4000 within 3 s, writes `payload`,
    /// shuts down writing and returns what comes back before EOF.
    pub fn connect(&self, vip: IpAddr, client_port: u16, payload: &[u8]) -> Result<Vec<u8>> {
        let gw = self.ns(Role::Gateway);
        let dest = SocketAddr::new(vip, VIP_PORT);
        crate::netns::in_netns(&gw, || exchange(dest, client_port, payload))?
            .with_context(|| format!("connection from {gw} port {client_port} to {dest} failed"))
    }

    /// Waits until no namespace holds a tentative IPv6 address (DAD is off, so this is
    /// quick; it guards against a kernel that still marks them).
    fn wait_ipv6_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        for role in Role::ALL {
            let ns = self.ns(role);
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
    fn check_reachable(&self) -> Result<()> {
        let _listener = self.listen()?;
        for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
            let payload = format!("lab check {vip}\n");
            let echoed = self
                .connect(vip, CHECK_PORT, payload.as_bytes())
                .with_context(|| {
                    format!(
                        "the lab was built but {vip} port {VIP_PORT} is not reachable from {}",
                        self.ns(Role::Gateway)
                    )
                })?;
            if echoed != payload.as_bytes() {
                bail!(
                    "the lab was built but the echo from {vip} was {:?} instead of {payload:?}",
                    String::from_utf8_lossy(&echoed)
                );
            }
        }
        Ok(())
    }
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
/// recorded echo server daemon, deletes its namespaces, ignoring ones already gone.
pub fn teardown(prefix: &str) -> Result<()> {
    let mut errors = Vec::new();
    // The daemon first: a process inside a deleted netns would keep it alive, unseen.
    if let Err(e) = crate::daemon::stop(prefix) {
        errors.push(format!("{e:#}"));
    }
    for role in Role::ALL {
        let ns = ns_name(prefix, role);
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
    if spec.hash_policy > 3 {
        bail!("hash policy {} is not one of 0, 1, 2, 3", spec.hash_policy);
    }
    Ok(())
}

/// The client side of [`Lab::connect`], run inside the gateway netns.
fn exchange(dest: SocketAddr, client_port: u16, payload: &[u8]) -> Result<Vec<u8>> {
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
    let mut stream: TcpStream = socket.into();
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
