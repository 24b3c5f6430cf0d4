//! The event loop: records from the ring wait out the reorder window and go to the flow
//! table in kernel time order; netlink notifications, rediscovery rounds, loss and
//! expiry timers, and the stop (duration, Ctrl-C, SIGTERM) are served in between.
use std::{collections::BTreeMap, time::Duration};

use anyhow::Result;
use futures::{stream::SelectAll, FutureExt, StreamExt};
use tokio::sync::{mpsc, watch};

use crate::{
    bpf::RecordBudget,
    cli::Args,
    correlate::flows::{FlowTable, Loss},
    discover::{self, Role},
    events::{DecodeError, Dir, Event},
    metrics::Metrics,
    netns::kernel_state::{NeighbourUpdate, Watcher},
    output::symbols,
    output::{pcapng::Pcap, Render},
};

use super::{
    monotonic_ns,
    readers::{Batch, BATCH_RECORDS, MAX_PENDING},
    reorder::{self, Reorder},
    site::{labels, proxy_label, states, Attached},
    Signals,
};

const LOSS_POLL: Duration = Duration::from_millis(500);
/// How often the whole-path mode looks for pods that came or went.
const REDISCOVER: Duration = Duration::from_secs(1);
/// Netlink notifications come in bursts (a route replace is several messages): wait this
/// long after the first before re-reading, well inside the one second an operator waits.
const CHANGE_SETTLE: Duration = Duration::from_millis(50);
/// Neighbours and the FDB are kept current from notifications; a MAC they still do not
/// know (its notification still on the way, or lost to a full socket buffer) gets a dump at
/// most this often, not one per packet.
const NEIGHBOUR_REDUMP: Duration = Duration::from_millis(100);

pub(super) struct Session<'a> {
    pub(super) args: &'a Args,
    /// The node-wide hooks and the sites; the node's reader runs as long as the session.
    pub(super) attached: &'a mut Attached,
    pub(super) node_reader: Option<tokio::task::JoinHandle<()>>,
    pub(super) flows: FlowTable,
    pub(super) out: Box<dyn Render>,
    /// `--pcap`: every hop `out` prints, as a packet.
    pub(super) pcap: Option<Pcap>,
    /// Each site's netlink notifications: a neighbour/FDB update to apply, or `None` for
    /// a change that needs a re-read.
    pub(super) watchers:
        SelectAll<futures::stream::BoxStream<'static, (usize, Option<NeighbourUpdate>)>>,
    pub(super) tx: mpsc::Sender<Batch>,
    pub(super) stop: watch::Receiver<bool>,
    /// Records the programs could not write into the ring, reported so far.
    pub(super) lost_reported: u64,
    /// Counter entries the kernel evicted (map full), as last read.
    pub(super) hops_evicted: u64,
    /// (ts, site, event) waiting for the reorder window.
    pub(super) pending: Reorder,
    /// Kernel time of the newest event processed: flows expire against it while events
    /// wait, so a stalled reader never ends a flow whose packets are still queued.
    pub(super) watermark: u64,
    /// `--metrics`: the series the HTTP thread serves.
    pub(super) metrics: Option<Metrics>,
}

impl Session<'_> {
    /// Starts streaming site `index`, attached: its ready record and its watcher (its
    /// records come through the one ring every site shares).
    pub(super) fn start_site(&mut self, index: usize, watcher: Watcher) {
        let Some(site) = self.attached.sites.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        // What the node object did beyond attaching is told once, with the first site.
        let notes = std::mem::take(&mut self.attached.node.notes);
        site.probes.ready.notes.extend(notes);
        site.probes.ready.add_node_hooks(&self.attached.node.ready);
        site.probes.ready.records = budget_words(self.args.record_budget(), self.args.records);
        if let Some(m) = &self.metrics {
            let r = &site.probes.ready;
            m.hooks(&site.label, &r.hooks, &r.refused);
        }
        self.out.ready(&site.probes.ready);
        self.out.flush();
        self.watchers.push(
            watcher
                .messages
                .map(move |(msg, _)| (index, NeighbourUpdate::from_message(&msg)))
                .boxed(),
        );
        site.watch_task = Some(watcher.task);
    }

    /// Queues a batch; its events leave in kernel time order once past the reorder window.
    pub(super) fn queue(&mut self, batch: Batch) {
        for (site, ev) in batch {
            self.pending.push(site, ev);
        }
    }

    /// Processes queued events older than `cutoff_ns` (all with `u64::MAX`), oldest first.
    pub(super) async fn flush(&mut self, cutoff_ns: u64) -> Result<()> {
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
        let Some(site) = self.attached.sites.get_mut(index).and_then(Option::as_mut) else {
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
                    .attached
                    .node
                    .drop_reasons
                    .get(&d.reason)
                    .cloned()
                    .unwrap_or_else(|| format!("reason {}", d.reason));
                let location = symbols::symbolize(d.location);
                if let Some(hop) = self.flows.on_drop(d, reason, location, &site.view(index)) {
                    if let Some(m) = &self.metrics {
                        m.dropped(hop.flow.vip, &hop.netns, &hop.ifname, &hop.reason);
                    }
                    self.out.dropped(&hop);
                }
            }
            Err(_) => {} // logged above
        }
        Ok(())
    }

    /// Reads every site's kernel counters into the flow table.
    pub(super) fn absorb_counts(&mut self) {
        let counts = match self.attached.node.hop_counts() {
            Ok(c) => c,
            Err(e) => {
                log::warn!("could not read the per-hop counters: {e:#}");
                return;
            }
        };
        // Each read is a lower bound (entries created during the walk): keep the highest.
        self.hops_evicted = self.hops_evicted.max(counts.evicted);
        self.flows.note_loss(Loss {
            records_lost: self.lost_reported,
            counters_evicted: self.hops_evicted,
        });
        let mut by_site: BTreeMap<u16, Vec<_>> = BTreeMap::new();
        for hop in counts.hops {
            by_site.entry(hop.0.site).or_default().push(hop);
        }
        for (number, hops) in by_site {
            // Site numbers count from 1 (0 is the node object's).
            let index = usize::from(number).wrapping_sub(1);
            if let Some(Some(site)) = self.attached.sites.get(index) {
                self.flows.absorb(&site.view(index), &hops);
            }
        }
        self.flows.counts_read();
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
        if let Err(e) = self.attached.node.forget_hops(&keys) {
            log::warn!("could not forget per-hop counters: {e:#}");
        }
    }

    /// Reports the records lost since the last report (one counter for every program).
    pub(super) fn report_loss(&mut self) -> Result<()> {
        let total = self.attached.node.lost()?;
        if total > self.lost_reported {
            self.out.lost(total - self.lost_reported, total);
            self.lost_reported = total;
            self.flows.note_loss(Loss {
                records_lost: total,
                counters_evicted: self.hops_evicted,
            });
        }
        Ok(())
    }
}

pub(super) async fn stream(
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
                let ended = s.flows.expire(now, idle_ns, &states(&s.attached.sites));
                s.forget_ended();
                let labels = labels(&s.attached.sites);
                for e in ended {
                    s.count_changes(&e);
                    s.out.summary(&e, proxy_label(&labels, e.proxy_site));
                }
                s.publish();
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

/// The record budget in force as the ready record names it: a reader of a log knows what
/// was sampled (`asked`: `--records`, absent when the default applied).
pub(super) fn budget_words(budget: RecordBudget, asked: Option<RecordBudget>) -> String {
    match (budget, asked) {
        (RecordBudget::All, None) => "all (--port)".into(),
        (RecordBudget::All, Some(_)) => "all".into(),
        (RecordBudget::First(0), _) => "none".into(),
        (RecordBudget::First(n), _) => format!("first {n} per hop"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Args, RECORDS_DEFAULT};
    use clap::Parser;

    fn words(args: &[&str]) -> String {
        let a =
            Args::try_parse_from(std::iter::once("tracer").chain(args.iter().copied())).unwrap();
        budget_words(a.record_budget(), a.records)
    }

    #[test]
    fn the_help_names_the_sessions_bounds() {
        use super::super::{readers, reorder};
        let help = crate::cli::help_text();
        for bound in [
            format!(
                "{} ms, {} records",
                reorder::WINDOW_NS / 1_000_000,
                readers::MAX_PENDING
            ),
            format!(
                "{} batches of {} records",
                readers::QUEUE_BATCHES,
                readers::BATCH_RECORDS
            ),
        ] {
            assert!(help.contains(&bound), "{bound:?} not in --help:\n{help}");
        }
    }

    #[test]
    fn the_ready_record_names_the_budget_in_force() {
        assert_eq!(words(&[]), format!("first {RECORDS_DEFAULT} per hop"));
        assert_eq!(words(&["--port", "4000"]), "all (--port)");
        assert_eq!(words(&["--records", "all"]), "all");
        assert_eq!(words(&["--records", "none"]), "none");
        assert_eq!(
            words(&["--port", "4000", "--records", "3"]),
            "first 3 per hop"
        );
    }
}
