//! The ring-buffer reader: one task reads the ring every program writes to into the
//! session's bounded channel, in batches, and drains what is left when told to stop.
use std::time::Duration;

use anyhow::Result;
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
};

use tracer_common::RING_BYTES;

use crate::events::{decode, DecodeError, Event};

/// Events read from one ring, each with the index of the site it belongs to.
pub(super) type Batch = Vec<(usize, Result<Event, DecodeError>)>;

/// Batches that may wait between the ring reader and the flow table, records a batch holds
/// at most, and events that may wait in the reorder window: together they bound what a
/// flood can pile up in memory (and what the tracer must work off after it). Beyond them the
/// reader waits, the ring fills, and the kernel counts what it could not write; the per-hop
/// counts stay exact in the kernel all the same.
pub(super) const QUEUE_BATCHES: usize = 4;
pub(super) const BATCH_RECORDS: usize = 4096;
/// How often a reader collects what the programs wrote without waking it.
const READER_POLL: Duration = Duration::from_millis(10);
/// At least the reorder window's worth at 300 000 records/s; a power of two, so the queue's
/// allocation is exactly this (a batch is taken only when it fits).
pub(super) const MAX_PENDING: usize = 32_768;

/// Reads the ring buffer every program writes to into the session's channel until told
/// to stop, then drains what is left.
pub(super) fn spawn_reader(
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
