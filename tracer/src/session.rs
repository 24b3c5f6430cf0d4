//! One tracing session: resolve the namespace and interfaces, attach, stream events until
//! the duration ends or a signal comes, then print the flow summaries and detach.
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
};

use crate::{
    attach::{Probes, Request},
    cli::Args,
    events::{decode, Dir, Event},
    flows::FlowTable,
    kernel_state::{KernelState, Netlink},
    netns::Netns,
    render::{renderer, Render},
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
        vips: &args.vips,
        client_port: args.port,
        interfaces: &interfaces,
        l3_ifindexes: &l3_ifindexes,
    })?;
    let mut out = renderer(args.json, ns.label.clone());
    out.ready(&probes.ready);

    let result = stream(&args, &mut probes, &netlink, &mut state, out.as_mut()).await;
    // Always detach, also when streaming failed.
    let detached = probes.detach(&ns);
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

async fn stream(
    args: &Args,
    probes: &mut Probes,
    netlink: &Netlink,
    state: &mut KernelState,
    out: &mut dyn Render,
) -> Result<()> {
    // SAFETY: the RingBuf owns its map fd and keeps it open for as long as the AsyncFd holds it.
    let mut ring = unsafe { AsyncFd::register(probes.take_events()?)? };
    let mut flows = FlowTable::new(args.vips.iter().copied());
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = tokio::time::sleep(args.duration.unwrap_or(Duration::MAX / 4));
    tokio::pin!(deadline);
    let mut loss_timer = tokio::time::interval(LOSS_POLL);
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
                process(&mut batch, &mut flows, netlink, state, out).await?;
            }
            _ = loss_timer.tick() => report_loss(probes, &mut lost_reported, out)?,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = &mut deadline => break,
        }
    }

    // Drain what is already in the ring, then account for every flow.
    let rb = ring.get_mut();
    while let Some(item) = rb.next() {
        batch.push(decode(&item));
    }
    process(&mut batch, &mut flows, netlink, state, out).await?;
    report_loss(probes, &mut lost_reported, out)?;
    if let Ok(fresh) = netlink.snapshot().await {
        *state = KernelState {
            hash_policy: state.hash_policy,
            ..fresh
        };
    }
    for summary in flows.summaries(state) {
        out.summary(&summary);
    }
    Ok(())
}

async fn process(
    batch: &mut Vec<Result<Event, crate::events::DecodeError>>,
    flows: &mut FlowTable,
    netlink: &Netlink,
    state: &mut KernelState,
    out: &mut dyn Render,
) -> Result<()> {
    for ev in batch.drain(..) {
        match ev {
            Ok(Event::Packet(p)) => {
                if state.link(p.ifindex).is_none() {
                    // An interface appeared since the last snapshot.
                    *state = KernelState {
                        hash_policy: state.hash_policy,
                        ..netlink.snapshot().await?
                    };
                }
                if p.dir == Dir::Egress
                    && !state.is_bridge_port(p.ifindex)
                    && state
                        .neighbour_ip(p.ifindex, &p.eth_dst, p.dst.is_ipv6())
                        .is_none()
                {
                    // The routed hop names a next-hop MAC the cache has not seen yet.
                    state.neighbours = netlink.neighbours().await?;
                }
                if let Some(hop) = flows.on_packet(p, state) {
                    out.hop(&hop);
                }
            }
            Ok(Event::Fib(f)) => {
                if let Some(route) = flows.on_fib(f, state) {
                    out.route(&route);
                }
            }
            Ok(Event::Hash(h)) => flows.on_hash(h),
            Err(e) => log::warn!("skipping a malformed record: {e}"),
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
