//! One tracing session: resolve the namespace and interfaces, attach, stream events until
//! the duration ends or a signal comes, then print the flow summaries and detach.
use std::{collections::HashMap, net::IpAddr, time::Duration};

use anyhow::{bail, Result};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
};

use futures::StreamExt;

use crate::{
    attach::{Probes, Request},
    changes,
    cli::Args,
    events::{decode, DecodeError, Dir, Event},
    flows::FlowTable,
    kernel_state::{KernelState, Netlink, Watcher},
    netns::Netns,
    render::{renderer, Render},
    symbols,
};

const LOSS_POLL: Duration = Duration::from_millis(500);

pub async fn run(args: Args) -> Result<()> {
    let ns = Netns::open(&args.netns)?;
    let netlink = Netlink::connect(&ns)?;
    let mut state = netlink.snapshot().await?;
    state.hash_policy = crate::kernel_state::read_hash_policy(&ns);
    let interfaces = pick_interfaces(&state, &args.ifaces, &ns.label)?;
    let l3_ifindexes: Vec<u32> = interfaces
        .iter()
        .filter_map(|name| state.link_by_name(name))
        .filter(|l| !state.is_bridge_port(l.index))
        .map(|l| l.index)
        .collect();

    let mut probes = Probes::load(&Request {
        netns: &ns,
        mode: args.attach,
        vips: &args.vips,
        client_port: args.port,
        interfaces: &interfaces,
        l3_ifindexes: &l3_ifindexes,
    })?;
    // Subscribed before the ready line, so no change after it goes unseen, and a signal
    // right after it still finds our handler (the default action would skip the cleanup).
    let watcher = Watcher::start(&ns)?;
    let signals = Signals {
        int: signal(SignalKind::interrupt())?,
        term: signal(SignalKind::terminate())?,
    };
    let mut out = renderer(args.json, ns.label.clone());
    out.ready(&probes.ready);

    let result = stream(
        &args,
        watcher,
        signals,
        &mut probes,
        &netlink,
        &mut state,
        out.as_mut(),
    )
    .await;
    // Always detach, also when streaming failed.
    let owned_clsact = std::mem::take(&mut probes.owned_clsact);
    let detached = probes.detach(&ns);
    for iface in owned_clsact {
        if let Some(link) = state.link_by_name(&iface) {
            if let Err(e) = netlink.remove_clsact_if_empty(link.index).await {
                log::warn!("could not remove the clsact qdisc of {iface}: {e:#}");
            }
        }
    }
    result?;
    detached
}

/// The interfaces to attach to: the ones asked for (each must be a bridge or a bridge port),
/// or every bridge and its ports.
fn pick_interfaces(state: &KernelState, asked: &[String], ns: &str) -> Result<Vec<String>> {
    if asked.is_empty() {
        let found: Vec<String> = state
            .bridges_and_ports()
            .iter()
            .map(|l| l.name.clone())
            .collect();
        if found.is_empty() {
            bail!("netns {ns} has no bridge, so it does not look like a Meridio proxy; pass --iface to name the interfaces to trace");
        }
        return Ok(found);
    }
    for name in asked {
        let Some(link) = state.link_by_name(name) else {
            bail!("interface {name} not found in netns {ns}");
        };
        if !link.is_bridge && !state.is_bridge_port(link.index) {
            bail!("interface {name} in netns {ns} is neither a bridge nor a bridge port; the tracer follows the proxy's bridge and its ports");
        }
    }
    Ok(asked.to_vec())
}

/// Everything that turns records into output: the flow table, the namespace's state and
/// the renderer.
struct Tracker<'a> {
    flows: FlowTable,
    vips: Vec<IpAddr>,
    netlink: &'a Netlink,
    state: &'a mut KernelState,
    drop_reasons: &'a HashMap<u32, String>,
    out: &'a mut dyn Render,
}

impl Tracker<'_> {
    /// Re-reads the namespace's state, keeping what netlink does not carry.
    async fn refresh(&mut self) -> Result<()> {
        let fresh = self.netlink.snapshot().await?;
        *self.state = KernelState {
            hash_policy: self.state.hash_policy,
            ..fresh
        };
        Ok(())
    }

    /// After a netlink notification: re-read, print what changed for the VIPs.
    async fn on_netlink_change(&mut self) -> Result<()> {
        let old = self.state.clone();
        self.refresh().await?;
        let ts_ns = monotonic_ns();
        for change in changes::diff(&old, self.state, &self.vips) {
            self.out.change(ts_ns, &change);
        }
        Ok(())
    }

    async fn process(&mut self, batch: &mut Vec<Result<Event, DecodeError>>) -> Result<()> {
        for ev in batch.drain(..) {
            match ev {
                Ok(Event::Packet(p)) => {
                    if self.state.link(p.ifindex).is_none() {
                        // An interface appeared since the last snapshot.
                        self.refresh().await?;
                    }
                    if p.dir == Dir::Egress
                        && !self.state.is_bridge_port(p.ifindex)
                        && self
                            .state
                            .neighbour_ip(p.ifindex, &p.eth_dst, p.dst.is_ipv6())
                            .is_none()
                    {
                        // The routed hop names a next-hop MAC the cache has not seen yet.
                        self.state.neighbours = self.netlink.neighbours().await?;
                    }
                    if let Some(hop) = self.flows.on_packet(p, self.state) {
                        self.out.hop(&hop);
                    }
                }
                Ok(Event::Fib(f)) => {
                    if let Some(route) = self.flows.on_fib(f, self.state) {
                        self.out.route(&route);
                    }
                }
                Ok(Event::Hash(h)) => self.flows.on_hash(h),
                Ok(Event::Drop(d)) => {
                    let reason = self
                        .drop_reasons
                        .get(&d.reason)
                        .cloned()
                        .unwrap_or_else(|| format!("reason {}", d.reason));
                    let location = symbols::symbolize(d.location);
                    if let Some(hop) = self.flows.on_drop(d, reason, location, self.state) {
                        self.out.dropped(&hop);
                    }
                }
                Err(e) => log::warn!("skipping a malformed record: {e}"),
            }
        }
        Ok(())
    }
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`, so change records and hops
/// share a time line.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Netlink notifications come in bursts (a route replace is several messages): wait this
/// long after the first before re-reading, well inside the one second an operator waits.
const CHANGE_SETTLE: Duration = Duration::from_millis(50);

struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

async fn stream(
    args: &Args,
    mut watcher: Watcher,
    mut signals: Signals,
    probes: &mut Probes,
    netlink: &Netlink,
    state: &mut KernelState,
    out: &mut dyn Render,
) -> Result<()> {
    // SAFETY: the RingBuf owns its map fd and keeps it open for as long as the AsyncFd holds it.
    let mut ring = unsafe { AsyncFd::register(probes.take_events()?)? };
    let drop_reasons = probes.drop_reasons.clone();
    let mut tracker = Tracker {
        flows: FlowTable::new(args.vips.iter().copied()),
        vips: args.vips.clone(),
        netlink,
        state,
        drop_reasons: &drop_reasons,
        out,
    };
    let deadline = tokio::time::sleep(args.duration.unwrap_or(Duration::MAX / 4));
    tokio::pin!(deadline);
    let mut loss_timer = tokio::time::interval(LOSS_POLL);
    let idle_ns = args.flow_timeout.as_nanos() as u64;
    let mut lost_reported = 0u64;
    let mut batch = Vec::new();

    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let rb = guard.get_inner_mut();
                while let Some(item) = rb.next() {
                    batch.push(decode(&item));
                }
                guard.clear_ready();
                tracker.process(&mut batch).await?;
            }
            Some(_) = watcher.messages.next() => {
                tokio::time::sleep(CHANGE_SETTLE).await;
                while watcher.messages.try_recv().is_ok() {}
                tracker.on_netlink_change().await?;
            }
            _ = loss_timer.tick() => {
                report_loss(probes, &mut lost_reported, tracker.out)?;
                for ended in tracker.flows.expire(monotonic_ns(), idle_ns, tracker.state) {
                    tracker.out.summary(&ended);
                }
            }
            _ = signals.int.recv() => break,
            _ = signals.term.recv() => break,
            _ = &mut deadline => break,
        }
    }

    // Drain what is already in the ring, then account for every flow.
    let rb = ring.get_mut();
    while let Some(item) = rb.next() {
        batch.push(decode(&item));
    }
    tracker.process(&mut batch).await?;
    report_loss(probes, &mut lost_reported, tracker.out)?;
    // Summaries judge against the state as it is now; a failed re-read keeps the last one.
    if let Err(e) = tracker.refresh().await {
        log::warn!("could not re-read the namespace's routes for the summary: {e:#}");
    }
    let summaries = tracker.flows.summaries(tracker.state);
    for summary in &summaries {
        tracker.out.summary(summary);
    }
    let distribution = tracker.flows.distribution(&summaries);
    if distribution.iter().any(|d| d.flows > 1) {
        for d in distribution {
            tracker.out.distribution(&d);
        }
    }
    Ok(())
}

fn report_loss(probes: &Probes, reported: &mut u64, out: &mut dyn Render) -> Result<()> {
    let total = probes.lost()?;
    if total > *reported {
        out.lost(total - *reported, total);
        *reported = total;
    }
    Ok(())
}
