//! Shutdown: the readers stopped and what they drain worked off, then every flow
//! accounted for (summaries, distribution). The sites are closed after this by
//! [`super::site::Attached`].
use std::time::Duration;

use anyhow::Result;
use tokio::sync::{mpsc, watch};

use crate::{
    correlate::{flows::add_lb_tables, totals::exact_shares},
    discover::Role,
};

use super::{
    event_loop::Session,
    readers::{Batch, BATCH_RECORDS, MAX_PENDING},
    site::{labels, proxy_label, states, Site},
};

/// Stops the readers, takes what they drain, and prints the summaries.
pub(super) async fn finish(
    s: &mut Session<'_>,
    stop_tx: watch::Sender<bool>,
    mut rx: mpsc::Receiver<Batch>,
) -> Result<()> {
    // Stop the readers and take what they drain (they may wait on a full queue), then
    // account for every flow (the sites are detached after, by `Attached`).
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
    for site in s.attached.sites.iter_mut().flatten() {
        // Summaries judge against the state as it is now; a failed re-read keeps the last.
        if let Err(e) = site.refresh().await {
            log::warn!("could not re-read {} for the summary: {e:#}", site.label);
        }
    }
    let overflow = s.overflow();
    if overflow.any() {
        s.out.overflowed(&overflow);
    }
    // Flows the cap took out since the last expiry first, then the live ones.
    let early = s.flows.take_evicted(&states(&s.attached.sites));
    let summaries = s.flows.summaries(&states(&s.attached.sites));
    let labels = labels(&s.attached.sites);
    for summary in early.iter().chain(&summaries) {
        s.count_changes(summary);
        s.out
            .summary(summary, proxy_label(&labels, summary.proxy_site));
    }
    s.publish();
    let mut distribution = s.flows.distribution(&summaries);
    exact_shares(&mut distribution, &s.read_totals());
    add_lb_tables(&mut distribution, &lb_tables(&s.attached.sites));
    if distribution.iter().any(|d| d.flows > 1) {
        for d in distribution {
            s.out.distribution(&d);
        }
    }
    s.out.flush();
    if let Some(pcap) = &mut s.pcap {
        pcap.flush();
    }
    Ok(())
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
