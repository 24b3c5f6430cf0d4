//! One tracing session over one or more namespaces ("sites": the proxy, and on the whole
//! path the frontends and targets too): attach to each, stream events until the duration
//! ends or a signal comes, follow interfaces and namespaces that come and go, then print
//! the flow summaries and detach everything. Events wait out a short reorder window
//! ([`reorder`]) on their way from the ring to the flow table.
//!
//! By stage: [`startup`] (which sites, inspected, loaded, attached), [`readers`] (the ring
//! reader), [`event_loop`] and [`churn`] (the run), [`shutdown`] (the last drain and the
//! summaries); [`site`] owns a site and the [`site::Attached`] guard that closes them all;
//! [`totals`] reads the kernel's per-VIP totals for the distribution and `/metrics`.
mod churn;
mod event_loop;
mod readers;
mod reorder;
mod shutdown;
mod site;
mod startup;
mod totals;

use anyhow::Result;
use futures::stream::SelectAll;
use tokio::{
    signal::unix::{signal, Signal, SignalKind},
    sync::{mpsc, watch},
};

use crate::{
    cli::Args,
    correlate::flows::FlowTable,
    discover::Role,
    metrics::Metrics,
    netns::kernel_state::Watcher,
    netns::Netns,
    output::{pcapng::Pcap, renderer},
};
use event_loop::Session;
use readers::{spawn_reader, QUEUE_BATCHES};
use reorder::Reorder;
use site::Attached;
use startup::InspectedSite;

/// A site asked for: a namespace to trace and how.
pub struct SiteSpec {
    pub netns: Netns,
    pub role: Role,
    /// How output names it: the pod, the netns name, or what the operator typed.
    pub label: String,
    /// Interfaces asked for; empty = by role, following them as they come and go.
    pub ifaces: Vec<String>,
}

/// Where the namespaces come from: given once (`--netns`), or discovered and followed.
pub enum Sites {
    Fixed(Vec<SiteSpec>),
    /// Whole path: every Meridio namespace of these roles that carries one of the VIPs.
    Discovered(Vec<Role>),
}

struct Signals {
    int: Signal,
    term: Signal,
}

pub async fn run(args: Args, sites: Sites) -> Result<()> {
    // Handlers first: a signal right after the ready line must find them (the default
    // action would skip the cleanup).
    let mut signals = Signals {
        int: signal(SignalKind::interrupt())?,
        term: signal(SignalKind::terminate())?,
    };
    let (roles, fixed) = startup::site_specs(&args, sites).await?;

    // Look at every namespace, then attach everywhere, before printing anything: all or
    // nothing.
    let started = std::time::Instant::now();
    let inspected = startup::inspect_all(&args, fixed, roles.is_some()).await?;
    log::debug!("start-up: namespaces inspected at {:?}", started.elapsed());
    let mut attached = startup::load_node(&args, started)?;
    let result = trace(
        &args,
        &mut attached,
        inspected,
        roles.as_deref(),
        &mut signals,
        started,
    )
    .await;
    // Every way out of the run, an error included, closes the sites here.
    attached.close().await;
    result
}

/// Attaches the sites, streams until the stop, and prints the summaries.
async fn trace(
    args: &Args,
    attached: &mut Attached,
    inspected: Vec<InspectedSite>,
    roles: Option<&[Role]>,
    signals: &mut Signals,
    started: std::time::Instant,
) -> Result<()> {
    let node_name = args
        .node
        .clone()
        .unwrap_or_else(crate::output::stamp::hostname);
    let stamp = crate::output::stamp::Stamp::measure(node_name);
    // Before the attach: a --pcap that is refused stops the tracer with nothing attached.
    let pcap = args
        .pcap
        .as_deref()
        .map(|p| Pcap::create(p, args.snap_len, args.pcap_limits(), stamp.clone()))
        .transpose()?;
    let metrics = match args.metrics {
        Some(addr) => {
            let m = Metrics::default();
            crate::metrics::serve(addr, &m)?;
            Some(m)
        }
        None => None,
    };
    startup::open_and_attach(args, inspected, attached, started)?;
    let multi = attached.sites.len() > 1 || roles.is_some();
    let (tx, mut rx) = mpsc::channel(QUEUE_BATCHES);
    let (stop_tx, stop) = watch::channel(false);
    let node_ring = attached.node.take_events()?;
    let mut s = Session {
        args,
        attached,
        node_reader: None,
        flows: FlowTable::new(args.vips.iter().copied()).with_max_flows(args.max_flows as usize),
        out: crate::draw::live(
            renderer(args.json, multi, stamp.clone()),
            args.svg.clone(),
            stamp,
        ),
        pcap,
        watchers: SelectAll::new(),
        tx,
        stop,
        lost_reported: 0,
        hops_evicted: 0,
        pending: Reorder::default(),
        watermark: 0,
        metrics,
    };
    s.node_reader = Some(spawn_reader(node_ring, s.tx.clone(), s.stop.clone())?);
    for index in 0..s.attached.sites.len() {
        let watcher = match &s.attached.sites[index] {
            Some(site) => Watcher::start(&site.ns)?,
            None => continue,
        };
        s.start_site(index, watcher);
    }
    startup::release_freed_heap();

    let result = event_loop::stream(&mut s, signals, &mut rx, roles).await;
    shutdown::finish(&mut s, stop_tx, rx).await?;
    result
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`, so change records and hops
/// share a time line.
fn monotonic_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
