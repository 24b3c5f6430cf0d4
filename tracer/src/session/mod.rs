//! One tracing session over one or more namespaces ("sites": the proxy, and on the whole
//! path the frontends and targets too): attach to each, stream events until the duration
//! ends or a signal comes, follow interfaces and namespaces that come and go, then print
//! the flow summaries and detach everything. Events wait out a short reorder window
//! ([`reorder`]) on their way from the ring to the flow table.
mod reorder;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use anyhow::{bail, Result};
use aya::maps::{MapData, RingBuf};
use futures::{stream::SelectAll, FutureExt, StreamExt};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, Signal, SignalKind},
    sync::{mpsc, watch},
};

use tracer_common::RING_BYTES;

use crate::{
    bpf::{NodeProbes, NodeRequest, Probes, Request},
    cli::Args,
    correlate::flows::{add_lb_tables, FlowTable, SiteView},
    discover::{self, Role},
    events::{decode, DecodeError, Dir, Event},
    netns::changes::{self, Change},
    netns::kernel_state::{
        read_hash_policy, ConnTask, KernelState, NeighbourUpdate, Netlink, Watcher,
    },
    netns::Netns,
    output::symbols,
    output::{pcapng::Pcap, renderer, Render},
};
use reorder::Reorder;

const LOSS_POLL: Duration = Duration::from_millis(500);
/// How often the whole-path mode looks for pods that came or went.
const REDISCOVER: Duration = Duration::from_secs(1);
/// Netlink notifications come in bursts (a route replace is several messages): wait this
/// long after the first before re-reading, well inside the one second an operator waits.
const CHANGE_SETTLE: Duration = Duration::from_millis(50);

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

/// Events read from one ring, each with the index of the site it belongs to.
type Batch = Vec<(usize, Result<Event, DecodeError>)>;

/// Batches that may wait between the ring reader and the flow table, records a batch holds
/// at most, and events that may wait in the reorder window: together they bound what a
/// flood can pile up in memory (and what the tracer must work off after it). Beyond them the
/// reader waits, the ring fills, and the kernel counts what it could not write; the per-hop
/// counts stay exact in the kernel all the same.
const QUEUE_BATCHES: usize = 4;
const BATCH_RECORDS: usize = 4096;
/// How often a reader collects what the programs wrote without waking it.
const READER_POLL: Duration = Duration::from_millis(10);
/// At least the reorder window's worth at 300 000 records/s; a power of two, so the queue's
/// allocation is exactly this (a batch is taken only when it fits).
const MAX_PENDING: usize = 32_768;

/// One traced namespace while the session runs.
struct Site {
    label: String,
    role: Role,
    ns: Netns,
    inode: u64,
    netlink: Netlink,
    state: KernelState,
    probes: Probes,
    /// Follow the role's interfaces as they come and go (no --iface given).
    follow: bool,
    attached: BTreeSet<String>,
    /// When the neighbours and FDB were last dumped.
    neighbours_read: std::time::Instant,
    /// The change watcher's connection (its messages feed the session's stream).
    watch_task: Option<ConnTask>,
}

/// Neighbours and the FDB are kept current from notifications; a MAC they still do not
/// know (its notification still on the way, or lost to a full socket buffer) gets a dump at
/// most this often, not one per packet.
const NEIGHBOUR_REDUMP: Duration = Duration::from_millis(100);

impl Site {
    fn view(&self, index: usize) -> SiteView<'_> {
        SiteView {
            index,
            label: &self.label,
            role: self.role,
            state: &self.state,
        }
    }

    /// Re-reads the namespace's state, keeping what netlink does not carry.
    async fn refresh(&mut self) -> Result<()> {
        let fresh = self.netlink.snapshot().await?;
        self.state = KernelState {
            hash_policy: self.state.hash_policy,
            ..fresh
        };
        Ok(())
    }

    /// Detaches from inside the namespace and removes a clsact qdisc that was ours.
    async fn close(mut self, node: &mut NodeProbes) {
        let owned_clsact = std::mem::take(&mut self.probes.owned_clsact);
        if let Err(e) = self.probes.detach(&self.ns, node) {
            log::warn!("detaching from {}: {e:#}", self.label);
        }
        for iface in owned_clsact {
            if let Some(link) = self.state.link_by_name(&iface) {
                if let Err(e) = self.netlink.remove_clsact_if_empty(link.index).await {
                    log::warn!("could not remove the clsact qdisc of {iface}: {e:#}");
                }
            }
        }
        node.unwatch_netns(self.inode);
    }
}

/// The interfaces a site's role traces: a proxy's bridges and their ports; every
/// interface but loopback of a frontend or a target.
fn role_interfaces(role: Role, state: &KernelState) -> Vec<String> {
    match role {
        Role::Proxy => state
            .bridges_and_ports()
            .iter()
            .map(|l| l.name.clone())
            .collect(),
        _ => state
            .links
            .values()
            .filter(|l| l.name != "lo")
            .map(|l| l.name.clone())
            .collect(),
    }
}

/// The interfaces to attach to: the ones asked for (for a proxy each must be a bridge or a
/// bridge port), or the role's.
fn pick_interfaces(
    state: &KernelState,
    role: Role,
    asked: &[String],
    ns: &str,
) -> Result<Vec<String>> {
    if asked.is_empty() {
        let found = role_interfaces(role, state);
        if found.is_empty() && role == Role::Proxy {
            bail!("netns {ns} has no bridge, so it does not look like a Meridio proxy; pass --iface to name the interfaces to trace");
        }
        if found.is_empty() {
            bail!("netns {ns} has no interface to trace");
        }
        return Ok(found);
    }
    for name in asked {
        let Some(link) = state.link_by_name(name) else {
            bail!("interface {name} not found in netns {ns}");
        };
        if role == Role::Proxy && !link.is_bridge && !state.is_bridge_port(link.index) {
            bail!("interface {name} in netns {ns} is neither a bridge nor a bridge port; the tracer follows the proxy's bridge and its ports");
        }
    }
    Ok(asked.to_vec())
}

/// Interfaces that route (not bridge ports): their ingress hooks prime the fib matching.
fn l3_ifindexes(state: &KernelState, ifaces: &[String]) -> Vec<u32> {
    ifaces
        .iter()
        .filter_map(|name| state.link_by_name(name))
        .filter(|l| !state.is_bridge_port(l.index))
        .map(|l| l.index)
        .collect()
}

/// What the node object is asked for (loaded before any site, its hooks attached after
/// the sites that are there at the start).
fn node_request(args: &Args) -> NodeRequest<'_> {
    NodeRequest {
        vips: &args.vips,
        client_port: args.port,
        budget: args.records,
        fib_hook: args.fib_hook,
        hash_hook: args.hash_hook,
        hooks: &args.hooks,
        hop_entries: args.hop_entries,
    }
}

/// Hands the allocator's freed heap back to the system: start-up parses the kernel's BTF
/// (megabytes, freed since), and the long-running tracer should stay small on the node.
fn release_freed_heap() {
    // SAFETY: malloc_trim only releases free memory of the allocator. (glibc only; musl's
    // allocator, in the static dist binary, returns freed memory by itself.)
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0)
    };
}

/// The role of the `--netns` namespace: `--role`'s when given, else discovery's
/// classification of it (proxy, frontend, target), else a proxy, as before discovery could
/// tell (a namespace without a bridge then gets the clear "no bridge" sentence). With a
/// note for the ready record when discovery decided, when it could not (and a bridge made
/// the namespace traceable as a proxy all the same), or when it disagrees with `--role`.
fn netns_role(asked: Option<Role>, found: Role, label: &str) -> (Role, Option<String>) {
    match asked {
        None if found == Role::Other => (
            Role::Proxy,
            Some(format!(
                "discovery does not classify netns {label} as a proxy, frontend or target; traced as a proxy (--role says otherwise)"
            )),
        ),
        None => (found, Some(format!("role {}, from discovery", found.as_str()))),
        // Nothing Meridio-like to discovery: the operator's word stands unremarked (a
        // frontend before its rules exist, a test's bare namespace).
        Some(r) if found == r || found == Role::Other => (r, None),
        Some(r) => (
            r,
            Some(format!(
                "warning: --role {r} given, but discovery classifies netns {label} as a {found}; traced as a {r}, as --role says",
                r = r.as_str(),
                found = found.as_str()
            )),
        ),
    }
}

/// Decides the role of a `--netns` site (see [`netns_role`]); returns the note about it.
async fn resolve_role(spec: &mut SiteSpec, asked: Option<Role>) -> Option<String> {
    let found = match discover::classify_netns(&spec.netns).await {
        Ok(class) => class.role,
        Err(e) => {
            log::debug!("could not classify {}: {e:#}", spec.label);
            Role::Other
        }
    };
    let (role, note) = netns_role(asked, found, &spec.label);
    spec.role = role;
    note
}

/// A namespace looked at and found traceable, not attached yet: bad input (an unknown
/// interface, a namespace without a bridge) is refused before anything is loaded.
struct InspectedSite {
    spec: SiteSpec,
    netlink: Netlink,
    state: KernelState,
    interfaces: Vec<String>,
    /// For the ready record: how the role was chosen.
    notes: Vec<String>,
}

async fn inspect_site(t: SiteSpec) -> Result<InspectedSite> {
    let netlink = Netlink::connect(&t.netns)?;
    let mut state = netlink.snapshot().await?;
    state.hash_policy = read_hash_policy(&t.netns);
    let interfaces = pick_interfaces(&state, t.role, &t.ifaces, &t.label)?;
    Ok(InspectedSite {
        spec: t,
        netlink,
        state,
        interfaces,
        notes: Vec::new(),
    })
}

/// Makes one inspected namespace site `index` (tagged `index + 1` by the programs), its
/// TC programs loaded but not yet attached (`attach_sites`).
fn open_site(args: &Args, i: InspectedSite, index: usize, node: &mut NodeProbes) -> Result<Site> {
    let InspectedSite {
        spec: t,
        netlink,
        state,
        interfaces,
        notes,
    } = i;
    let site = u16::try_from(index + 1)
        .map_err(|_| anyhow::anyhow!("too many namespaces traced in one run"))?;
    let mut probes = Probes::load(
        &Request {
            netns: &t.netns,
            role: t.role.as_str(),
            site,
            mode: args.attach,
            sharing: args.tc_programs,
            vips: &args.vips,
            client_port: args.port,
            interfaces: &interfaces,
            l3_ifindexes: &l3_ifindexes(&state, &interfaces),
            budget: args.records,
            snap_len: if args.pcap.is_some() {
                args.snap_len
            } else {
                0
            },
        },
        node,
    )?;
    let (_, inode) = t.netns.id()?;
    if args.vips_discovered {
        probes.ready.vips_from = "discovery";
    }
    probes.ready.notes.extend(notes);
    Ok(Site {
        label: t.label,
        role: t.role,
        inode,
        ns: t.netns,
        netlink,
        state,
        probes,
        follow: t.ifaces.is_empty(),
        attached: interfaces.into_iter().collect(),
        neighbours_read: std::time::Instant::now(),
        watch_task: None,
    })
}

/// Attaches the TC programs of every site, a few sites side by side. The kernel lets only
/// one TCX attachment at a time through (each waits for an RCU grace period under the RTNL
/// lock), so more threads buy nothing there; a few overlap the rest (entering the
/// namespace, netlink requests) with those waits. The first error is returned; the sites
/// that did attach stay attached, for their `close`.
fn attach_sites(sites: &mut [Site]) -> Result<()> {
    const WORKERS: usize = 4;
    let workers = WORKERS.min(sites.len());
    let queue = std::sync::Mutex::new(sites.iter_mut());
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let next = queue
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .next();
                        let Some(site) = next else { return Ok(()) };
                        let interfaces: Vec<String> = site.attached.iter().cloned().collect();
                        site.probes.attach(&site.ns, &interfaces)?;
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|t| {
            t.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("an attach thread panicked")))
        })
    })
}

/// Reads the ring buffer every program writes to into the session's channel until told
/// to stop, then drains what is left.
fn spawn_reader(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Batch>,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    // SAFETY: the RingBuf owns its map fd and keeps it open for as long as the AsyncFd holds it.
    let mut ring = unsafe { AsyncFd::register(ring)? };
    Ok(tokio::spawn(async move {
        // The programs wake the reader only once a good amount is waiting (a wakeup per
        // record costs the kernel a self-interrupt); below that, this poll collects.
        let mut poll = tokio::time::interval(READER_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let batch = tokio::select! {
                guard = ring.readable_mut() => {
                    let Ok(mut guard) = guard else { break };
                    let (batch, more) = drain(guard.get_inner_mut(), BATCH_RECORDS);
                    // With records left in the ring, stay ready: the next turn reads on.
                    if !more {
                        guard.clear_ready();
                    }
                    batch
                }
                _ = poll.tick() => drain(ring.get_mut(), BATCH_RECORDS).0,
                _ = stop.changed() => {
                    // What is left, in batches of the usual size: the session works them
                    // off as they come, so the last drain needs no more memory than a
                    // flood. A full ring holds fewer records than this (the smallest takes
                    // 64 bytes and a header): all that was there at the stop is read, and
                    // a flood that goes on cannot keep the reader.
                    let mut left = RING_BYTES as usize / 64;
                    while left > 0 {
                        let (batch, more) = drain(ring.get_mut(), BATCH_RECORDS.min(left));
                        left -= batch.len();
                        if tx.send(batch).await.is_err() || !more {
                            break;
                        }
                    }
                    break;
                }
            };
            // A full queue holds this reader back, the ring fills, and the kernel counts
            // what it cannot write: loss is reported, memory stays bounded.
            if !batch.is_empty() && tx.send(batch).await.is_err() {
                break;
            }
        }
    }))
}

/// Reads up to `max` records, each with the index of its site; says whether more are
/// waiting.
fn drain(rb: &mut RingBuf<MapData>, max: usize) -> (Batch, bool) {
    let mut batch = Vec::new();
    while let Some(item) = rb.next() {
        // An untagged record (site 0) or one that does not decode: usize::MAX, no site.
        batch.push(match decode(&item) {
            Ok((site, ev)) => (usize::from(site).wrapping_sub(1), Ok(ev)),
            Err(e) => (usize::MAX, Err(e)),
        });
        if batch.len() == max {
            return (batch, true);
        }
    }
    (batch, false)
}

struct Session<'a> {
    args: &'a Args,
    /// The node-wide hooks; its reader runs as long as the session.
    node: NodeProbes,
    node_reader: Option<tokio::task::JoinHandle<()>>,
    sites: Vec<Option<Site>>,
    flows: FlowTable,
    out: Box<dyn Render>,
    /// `--pcap`: every hop `out` prints, as a packet.
    pcap: Option<Pcap>,
    /// Each site's netlink notifications: a neighbour/FDB update to apply, or `None` for
    /// a change that needs a re-read.
    watchers: SelectAll<futures::stream::BoxStream<'static, (usize, Option<NeighbourUpdate>)>>,
    tx: mpsc::Sender<Batch>,
    stop: watch::Receiver<bool>,
    /// Records the programs could not write into the ring, reported so far.
    lost_reported: u64,
    /// Counter entries the kernel evicted (map full), as last read.
    hops_evicted: u64,
    /// (ts, site, event) waiting for the reorder window.
    pending: Reorder,
    /// Kernel time of the newest event processed: flows expire against it while events
    /// wait, so a stalled reader never ends a flow whose packets are still queued.
    watermark: u64,
}

impl Session<'_> {
    /// Starts streaming a site that is attached: its ready record and its watcher (its
    /// records come through the one ring every site shares).
    fn start_site(&mut self, mut site: Site, watcher: Watcher) -> Result<()> {
        let index = self.sites.len();
        // What the node object did beyond attaching is told once, with the first site.
        let notes = std::mem::take(&mut self.node.notes);
        site.probes.ready.notes.extend(notes);
        site.probes.ready.add_node_hooks(&self.node.ready);
        self.out.ready(&site.probes.ready);
        self.out.flush();
        self.watchers.push(
            watcher
                .messages
                .map(move |(msg, _)| (index, NeighbourUpdate::from_message(&msg)))
                .boxed(),
        );
        site.watch_task = Some(watcher.task);
        self.sites.push(Some(site));
        Ok(())
    }

    /// Queues a batch; its events leave in kernel time order once past the reorder window.
    fn queue(&mut self, batch: Batch) {
        for (site, ev) in batch {
            self.pending.push(site, ev);
        }
    }

    /// Processes queued events older than `cutoff_ns` (all with `u64::MAX`), oldest first.
    async fn flush(&mut self, cutoff_ns: u64) -> Result<()> {
        while let Some(w) = self.pending.pop_until(cutoff_ns) {
            self.watermark = self.watermark.max(w.ts);
            self.process(w.site, w.ev).await?;
        }
        Ok(())
    }

    async fn process(&mut self, index: usize, ev: Result<Event, DecodeError>) -> Result<()> {
        if let Err(e) = &ev {
            log::warn!("skipping a malformed record: {e}");
            return Ok(());
        }
        let Some(site) = self.sites.get_mut(index).and_then(Option::as_mut) else {
            return Ok(()); // the site went away meanwhile
        };
        match ev {
            Ok(Event::Packet(p)) => {
                if site.state.link(p.ifindex).is_none() {
                    // An interface appeared since the last snapshot. A namespace on its
                    // way out may not answer; rediscovery drops it.
                    if let Err(e) = site.refresh().await {
                        log::debug!("re-reading {}: {e:#}", site.label);
                    }
                }
                if p.dir == Dir::Egress
                    && !site.state.is_bridge_port(p.ifindex)
                    && site.neighbours_read.elapsed() > NEIGHBOUR_REDUMP
                {
                    let unknown_ip = site
                        .state
                        .neighbour_ip(p.ifindex, &p.eth_dst, p.dst.is_ipv6())
                        .is_none();
                    let unknown_port = site.state.fdb_port(&p.eth_dst).is_none();
                    if unknown_ip || unknown_port {
                        // The routed hop names a MAC the caches have not seen yet.
                        match site.netlink.neighbours().await {
                            Ok(n) => (site.state.neighbours, site.state.fdb) = n,
                            Err(e) => log::debug!("re-reading {}: {e:#}", site.label),
                        }
                        site.neighbours_read = std::time::Instant::now();
                    }
                }
                if let Some(hop) = self.flows.on_packet(p, &site.view(index)) {
                    self.out.hop(&hop);
                    if let Some(pcap) = &mut self.pcap {
                        pcap.hop(&hop);
                    }
                }
            }
            Ok(Event::Fib(f)) => {
                if let Some(route) = self.flows.on_fib(f, &site.view(index)) {
                    self.out.route(&route);
                }
            }
            Ok(Event::Hash(h)) => self.flows.on_hash(h),
            Ok(Event::Drop(d)) => {
                let reason = self
                    .node
                    .drop_reasons
                    .get(&d.reason)
                    .cloned()
                    .unwrap_or_else(|| format!("reason {}", d.reason));
                let location = symbols::symbolize(d.location);
                if let Some(hop) = self.flows.on_drop(d, reason, location, &site.view(index)) {
                    self.out.dropped(&hop);
                }
            }
            Err(_) => {} // logged above
        }
        Ok(())
    }

    /// A neighbour or FDB notification: applied to the site's state as it is, and the
    /// changes of VIP next-hops' neighbours reported.
    fn on_neighbour(&mut self, index: usize, update: &NeighbourUpdate) {
        let Some(site) = self.sites.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        if let Some(change) = changes::apply_neighbour(&mut site.state, update, &self.args.vips) {
            self.out.change(monotonic_ns(), &site.label, &change);
        }
    }

    /// After a netlink notification in a site: re-read it, print what changed for the
    /// VIPs, and attach to interfaces of its role that appeared (drop those that went).
    async fn on_netlink_change(&mut self, index: usize) -> Result<()> {
        let vips = self.args.vips.clone();
        let Some(site) = self.sites.get_mut(index).and_then(Option::as_mut) else {
            return Ok(());
        };
        let old = site.state.clone();
        if let Err(e) = site.refresh().await {
            // The namespace is going away; rediscovery drops it.
            log::debug!("re-reading {}: {e:#}", site.label);
            return Ok(());
        }
        let ts_ns = monotonic_ns();
        for change in changes::diff(&old, &site.state, &vips) {
            self.out.change(ts_ns, &site.label, &change);
        }
        if !site.follow {
            return Ok(());
        }
        let now: BTreeSet<String> = role_interfaces(site.role, &site.state)
            .into_iter()
            .collect();
        for gone in site.attached.difference(&now).cloned().collect::<Vec<_>>() {
            site.attached.remove(&gone);
            site.probes.detach_iface(&site.ns, &gone);
            let c = Change::Attached {
                added: false,
                ifname: gone,
            };
            self.out.change(ts_ns, &site.label, &c);
        }
        for new in now.difference(&site.attached).cloned().collect::<Vec<_>>() {
            let l3 = l3_ifindexes(&site.state, std::slice::from_ref(&new));
            match site
                .probes
                .attach_iface(&site.ns, &new, &l3, &mut self.node)
            {
                Ok(()) => {
                    site.attached.insert(new.clone());
                    let c = Change::Attached {
                        added: true,
                        ifname: new,
                    };
                    self.out.change(ts_ns, &site.label, &c);
                }
                Err(e) => log::warn!("could not attach to {new} in {}: {e:#}", site.label),
            }
        }
        Ok(())
    }

    /// Whole-path mode: add the namespaces that appeared, drop the ones that went. Pods
    /// come and go at any moment, so nothing here ends the session: a namespace that cannot
    /// be attached now is tried again at the next round.
    async fn rediscover(&mut self, roles: &[Role], discovery: &discover::Discovery) {
        // None found is not an error here: everything may be gone for a moment.
        let found = discover::to_trace(discovery, roles, &self.args.vips).unwrap_or_default();
        let inodes: Vec<u64> = found.iter().map(|n| n.inode).collect();
        let ts_ns = monotonic_ns();
        for slot in self.sites.iter_mut() {
            if slot.as_ref().is_some_and(|s| !inodes.contains(&s.inode)) {
                let site = slot.take().expect("checked above");
                let c = Change::Netns {
                    added: false,
                    role: site.role.as_str(),
                    name: site.label.clone(),
                };
                self.out.change(ts_ns, &site.label, &c);
                site.close(&mut self.node).await;
            }
        }
        let known: Vec<u64> = self.sites.iter().flatten().map(|s| s.inode).collect();
        for n in found.into_iter().filter(|n| !known.contains(&n.inode)) {
            let Ok(netns) = Netns::open_path(&n.path, &n.name) else {
                continue; // gone again
            };
            let spec = SiteSpec {
                netns,
                role: n.class.role,
                label: n.name.clone(),
                ifaces: Vec::new(),
            };
            if let Err(e) = self.add_site(spec, ts_ns).await {
                log::warn!("could not attach to {}: {e:#}", n.name);
            }
        }
    }

    /// Attaches to a namespace that appeared and starts streaming it.
    async fn add_site(&mut self, spec: SiteSpec, ts_ns: u64) -> Result<()> {
        let (role, name) = (spec.role, spec.label.clone());
        let index = self.sites.len();
        let inspected = inspect_site(spec).await?;
        let mut site = open_site(self.args, inspected, index, &mut self.node)?;
        if let Err(e) = attach_sites(std::slice::from_mut(&mut site)) {
            site.close(&mut self.node).await;
            return Err(e);
        }
        let watcher = Watcher::start(&site.ns)?;
        let c = Change::Netns {
            added: true,
            role: role.as_str(),
            name: name.clone(),
        };
        self.out.change(ts_ns, &name, &c);
        self.start_site(site, watcher)
    }

    /// Reads every site's kernel counters into the flow table.
    fn absorb_counts(&mut self) {
        let counts = match self.node.hop_counts() {
            Ok(c) => c,
            Err(e) => {
                log::warn!("could not read the per-hop counters: {e:#}");
                return;
            }
        };
        self.hops_evicted = counts.evicted;
        let mut by_site: BTreeMap<u16, Vec<_>> = BTreeMap::new();
        for hop in counts.hops {
            by_site.entry(hop.0.site).or_default().push(hop);
        }
        for (number, hops) in by_site {
            // Site numbers count from 1 (0 is the node object's).
            let index = usize::from(number).wrapping_sub(1);
            if let Some(Some(site)) = self.sites.get(index) {
                self.flows.absorb(&site.view(index), &hops);
            }
        }
    }

    /// Deletes the counter entries of flows that were summarised.
    fn forget_ended(&mut self) {
        let keys: Vec<_> = self
            .flows
            .take_ended_hops()
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        if keys.is_empty() {
            return;
        }
        if let Err(e) = self.node.forget_hops(&keys) {
            log::warn!("could not forget per-hop counters: {e:#}");
        }
    }

    /// Reports the records lost since the last report (one counter for every program).
    fn report_loss(&mut self) -> Result<()> {
        let total = self.node.lost()?;
        if total > self.lost_reported {
            self.out.lost(total - self.lost_reported, total);
            self.lost_reported = total;
        }
        Ok(())
    }
}

/// Each site's state, by site index (gone sites read as empty).
fn states(sites: &[Option<Site>]) -> Vec<&KernelState> {
    static EMPTY: std::sync::OnceLock<KernelState> = std::sync::OnceLock::new();
    sites
        .iter()
        .map(|s| {
            s.as_ref()
                .map_or_else(|| EMPTY.get_or_init(KernelState::default), |s| &s.state)
        })
        .collect()
}

fn labels(sites: &[Option<Site>]) -> Vec<String> {
    sites
        .iter()
        .map(|s| s.as_ref().map_or_else(String::new, |s| s.label.clone()))
        .collect()
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
    let (roles, fixed) = match sites {
        Sites::Fixed(t) => (None, t),
        Sites::Discovered(roles) => {
            let found = discover::to_trace(&discover::discover().await, &roles, &args.vips)?;
            let mut t = Vec::new();
            for n in found {
                t.push(SiteSpec {
                    netns: Netns::open_path(&n.path, &n.name)?,
                    role: n.class.role,
                    label: n.name,
                    ifaces: args.ifaces.clone(),
                });
            }
            (Some(roles), t)
        }
    };

    // Look at every namespace, then attach everywhere, before printing anything: all or
    // nothing.
    let started = std::time::Instant::now();
    let mut inspected = Vec::new();
    // Fixed sites are the one --netns namespace, its --role (at most one) the operator's.
    let asked = args.roles.first().map(|r| Role::from(*r));
    for mut t in fixed {
        let note = match roles {
            None => resolve_role(&mut t, asked).await,
            Some(_) => None,
        };
        let mut site = match inspect_site(t).await {
            Ok(site) => site,
            // Following --role failed: the disagreement is the likely why.
            Err(e) => match note {
                Some(note) if asked.is_some() => bail!("{e:#} ({note})"),
                _ => return Err(e),
            },
        };
        site.notes.extend(note);
        inspected.push(site);
    }
    log::debug!("start-up: namespaces inspected at {:?}", started.elapsed());
    // What discovery read is freed: handed back before the kernel BTF parses below, so
    // that it does not add to their peak (30.6 -> 26.6 MB for a whole path of 4).
    release_freed_heap();
    let mut node = NodeProbes::load(&node_request(&args))?;
    log::debug!("start-up: node maps made at {:?}", started.elapsed());
    // The node-wide hooks before the sites: the fexit hooks need aya's parse of the kernel
    // BTF (20 MB of heap), handed back here; loaded side by side with the sites, the
    // two added up to a peak RSS of 31-39 MB instead of 26.
    node.attach_hooks(&node_request(&args));
    log::debug!(
        "start-up: node-wide hooks attached at {:?}",
        started.elapsed()
    );
    release_freed_heap();
    let mut opened = Vec::new();
    let mut failed = None;
    for i in inspected {
        match open_site(&args, i, opened.len(), &mut node) {
            Ok(site) => opened.push(site),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    if failed.is_none() {
        log::debug!("start-up: programs loaded at {:?}", started.elapsed());
        failed = attach_sites(&mut opened).err();
    }
    if let Some(e) = failed {
        for site in opened {
            site.close(&mut node).await;
        }
        return Err(e);
    }
    log::debug!(
        "start-up: {} site(s) attached at {:?}",
        opened.len(),
        started.elapsed()
    );
    let multi = opened.len() > 1 || roles.is_some();
    let node_name = args
        .node
        .clone()
        .unwrap_or_else(crate::output::stamp::hostname);
    let stamp = crate::output::stamp::Stamp::measure(node_name);
    let pcap = match args
        .pcap
        .as_deref()
        .map(|p| Pcap::create(p, args.snap_len, stamp.clone()))
    {
        Some(Err(e)) => {
            for site in opened {
                site.close(&mut node).await;
            }
            return Err(e);
        }
        p => p.transpose()?,
    };
    let (tx, mut rx) = mpsc::channel(QUEUE_BATCHES);
    let (stop_tx, stop) = watch::channel(false);
    let node_ring = node.take_events()?;
    let mut s = Session {
        args: &args,
        node,
        node_reader: None,
        sites: Vec::new(),
        flows: FlowTable::new(args.vips.iter().copied()),
        out: renderer(args.json, multi, stamp),
        pcap,
        watchers: SelectAll::new(),
        tx,
        stop,
        lost_reported: 0,
        hops_evicted: 0,
        pending: Reorder::default(),
        watermark: 0,
    };
    s.node_reader = Some(spawn_reader(node_ring, s.tx.clone(), s.stop.clone())?);
    for site in opened {
        let watcher = Watcher::start(&site.ns)?;
        s.start_site(site, watcher)?;
    }
    release_freed_heap();

    let result = stream(&mut s, &mut signals, &mut rx, roles.as_deref()).await;

    // Stop the readers and take what they drain (they may wait on a full queue), then
    // account for every flow and detach everything.
    let _ = stop_tx.send(true);
    let running =
        |r: &Option<tokio::task::JoinHandle<()>>| r.as_ref().is_some_and(|r| !r.is_finished());
    while running(&s.node_reader) {
        tokio::select! {
            Some(batch) = rx.recv() => {
                s.queue(batch);
                // The last drain can hold a full ring: work it off as it comes, within
                // the same memory bound as while streaming.
                if s.pending.len() + BATCH_RECORDS > MAX_PENDING {
                    s.flush(u64::MAX).await?;
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
    while let Ok(batch) = rx.try_recv() {
        s.queue(batch);
    }
    s.flush(u64::MAX).await?;
    s.absorb_counts();
    s.report_loss()?;
    for site in s.sites.iter_mut().flatten() {
        // Summaries judge against the state as it is now; a failed re-read keeps the last.
        if let Err(e) = site.refresh().await {
            log::warn!("could not re-read {} for the summary: {e:#}", site.label);
        }
    }
    let evicted = s.hops_evicted;
    if evicted > 0 {
        s.out.evicted(evicted);
    }
    let summaries = s.flows.summaries(&states(&s.sites));
    let labels = labels(&s.sites);
    for summary in &summaries {
        s.out
            .summary(summary, proxy_label(&labels, summary.proxy_site));
    }
    let mut distribution = s.flows.distribution(&summaries);
    add_lb_tables(&mut distribution, &lb_tables(&s.sites));
    if distribution.iter().any(|d| d.flows > 1) {
        for d in distribution {
            s.out.distribution(&d);
        }
    }
    s.out.flush();
    if let Some(pcap) = &mut s.pcap {
        pcap.flush();
    }
    for site in std::mem::take(&mut s.sites).into_iter().flatten() {
        site.close(&mut s.node).await;
    }
    result
}

/// The load-balancer tables of the traced frontends (nfqlb's, read through /proc).
fn lb_tables(sites: &[Option<Site>]) -> Vec<(String, crate::discover::nfqlb::MaglevTable)> {
    sites
        .iter()
        .flatten()
        .filter(|site| site.role == Role::Frontend)
        .flat_map(|site| {
            crate::discover::nfqlb::tables_in(site.inode)
                .into_iter()
                .map(|t| (site.label.clone(), t))
        })
        .collect()
}

fn proxy_label(labels: &[String], site: Option<usize>) -> &str {
    site.and_then(|i| labels.get(i)).map_or("", String::as_str)
}

async fn stream(
    s: &mut Session<'_>,
    signals: &mut Signals,
    rx: &mut mpsc::Receiver<Batch>,
    roles: Option<&[Role]>,
) -> Result<()> {
    let deadline = tokio::time::sleep(s.args.duration.unwrap_or(Duration::MAX / 4));
    tokio::pin!(deadline);
    let mut loss_timer = tokio::time::interval(LOSS_POLL);
    let mut reorder_timer = tokio::time::interval(Duration::from_millis(10));
    // Discovery (a /proc walk, crictl, a netlink dump per namespace) runs on a task of its
    // own, so the loop that reads the rings never waits for it; each round's result comes
    // in over a channel.
    let (found_tx, mut found_rx) = mpsc::channel(1);
    let discovery = roles.map(|_| {
        tokio::spawn(async move {
            let mut rounds = discover::Rounds::default();
            loop {
                tokio::time::sleep(REDISCOVER).await;
                if found_tx.send(rounds.next().await).await.is_err() {
                    break;
                }
            }
        })
    });
    let idle_ns = s.args.flow_timeout.as_nanos() as u64;
    loop {
        tokio::select! {
            Some(batch) = rx.recv(), if s.pending.len() + BATCH_RECORDS <= MAX_PENDING => s.queue(batch),
            _ = reorder_timer.tick() => s.flush(monotonic_ns().saturating_sub(reorder::WINDOW_NS)).await?,
            Some((i, update)) = s.watchers.next() => {
                let mut dirty = Vec::new();
                match update {
                    Some(u) => s.on_neighbour(i, &u),
                    None => {
                        tokio::time::sleep(CHANGE_SETTLE).await;
                        dirty.push(i);
                    }
                }
                while let Some(Some((j, update))) = s.watchers.next().now_or_never() {
                    match update {
                        Some(u) => s.on_neighbour(j, &u),
                        None => dirty.push(j),
                    }
                }
                dirty.sort_unstable();
                dirty.dedup();
                for j in dirty {
                    s.on_netlink_change(j).await?;
                }
            }
            Some(found) = found_rx.recv(), if roles.is_some() => {
                s.rediscover(roles.unwrap_or_default(), &found).await;
            }
            _ = loss_timer.tick() => {
                s.report_loss()?;
                // Nothing waiting: the clock is the limit; else the events processed so far.
                let now = if s.pending.is_empty() && rx.is_empty() {
                    monotonic_ns().saturating_sub(reorder::WINDOW_NS)
                } else {
                    s.watermark
                };
                s.absorb_counts();
                let ended = s.flows.expire(now, idle_ns, &states(&s.sites));
                s.forget_ended();
                let labels = labels(&s.sites);
                for e in ended {
                    s.out.summary(&e, proxy_label(&labels, e.proxy_site));
                }
            }
            _ = signals.int.recv() => break,
            _ = signals.term.recv() => break,
            _ = &mut deadline => break,
        }
        s.out.flush();
        if let Some(pcap) = &mut s.pcap {
            pcap.flush();
        }
    }
    if let Some(task) = discovery {
        task.abort();
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `--netns` without `--role` takes discovery's role and says so; with `--role` the
    /// operator's role is followed, and a disagreeing discovery gets one warning line.
    #[test]
    fn the_netns_role_is_discoverys_unless_role_says_otherwise() {
        for found in Role::MERIDIO {
            let (role, note) = netns_role(None, found, "n-x");
            assert_eq!(role, found);
            assert_eq!(
                note.as_deref(),
                Some(format!("role {}, from discovery", found.as_str()).as_str())
            );
        }
        // Discovery cannot tell: a proxy, as before, noted (without a bridge the "no
        // bridge" sentence comes instead, when its interfaces are picked).
        let (role, note) = netns_role(None, Role::Other, "n-x");
        assert_eq!(role, Role::Proxy);
        assert_eq!(
            note.as_deref(),
            Some("discovery does not classify netns n-x as a proxy, frontend or target; traced as a proxy (--role says otherwise)")
        );
        for asked in Role::MERIDIO {
            assert_eq!(netns_role(Some(asked), asked, "n-x"), (asked, None));
            assert_eq!(netns_role(Some(asked), Role::Other, "n-x"), (asked, None));
        }
        let (role, note) = netns_role(Some(Role::Proxy), Role::Frontend, "n-lbfe-a");
        assert_eq!(role, Role::Proxy);
        assert_eq!(
            note.as_deref(),
            Some("warning: --role proxy given, but discovery classifies netns n-lbfe-a as a frontend; traced as a proxy, as --role says")
        );
    }

    /// A frontend's and a target's every interface but loopback; a proxy needs a bridge.
    #[test]
    fn a_role_from_discovery_picks_that_roles_interfaces() {
        use crate::netns::kernel_state::Link;
        let mut state = KernelState::default();
        for (index, name) in [(1, "lo"), (2, "ext0"), (3, "conduit0")] {
            state.links.insert(
                index,
                Link {
                    index,
                    name: name.into(),
                    mac: None,
                    master: None,
                    is_bridge: false,
                },
            );
        }
        let mut picked = pick_interfaces(&state, Role::Frontend, &[], "n-lbfe-a").unwrap();
        picked.sort();
        assert_eq!(picked, ["conduit0", "ext0"]);
        let e = pick_interfaces(&state, Role::Proxy, &[], "n-lbfe-a").unwrap_err();
        assert!(e.to_string().contains("has no bridge"), "{e}");
    }
}
