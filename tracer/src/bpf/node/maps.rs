//! The node object's maps every object shares, read and written here for every site at
//! once: the traced namespaces, the ring buffer, the counters, the
//! per-hop counts and the per-VIP totals.
use anyhow::{Context, Result};
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use tracer_common::{
    HopCount, HopKey, TotalCount, TotalKey, COUNTER_HOP_NEW, COUNTER_LOST, COUNTER_NOT_FOR_HOST,
    COUNTER_RST_CONSUMED, COUNTER_TOTALS_FULL,
};

use super::NodeProbes;
use crate::netns::Netns;

/// The in-kernel per-hop counters of every site, as read at one moment.
#[derive(Debug, Default, Clone)]
pub struct HopCounts {
    pub hops: Vec<(HopKey, HopCount)>,
    /// Entries the LRU map evicted because it was full: created, less those deleted and
    /// those still there.
    pub evicted: u64,
}

impl NodeProbes {
    /// Lets the programs know `ns` as `site`: the drop program reports its drops, and TC
    /// programs every site shares tell its packets by it.
    pub fn watch_netns(&mut self, ns: &Netns, site: u16) -> Result<()> {
        let inum = inum(ns)?;
        self.inums()?.insert(inum, site, 0)?;
        Ok(())
    }

    /// Stops reporting drops in the namespace with this inode (its site went away).
    pub fn unwatch_netns(&mut self, inode: u64) {
        if let (Ok(inum), Ok(mut map)) = (u32::try_from(inode), self.inums()) {
            let _ = map.remove(&inum);
        }
    }

    fn inums(&mut self) -> Result<BpfHashMap<&mut MapData, u32, u16>> {
        Ok(BpfHashMap::try_from(
            self.ebpf
                .map_mut("NETNS_INUMS")
                .context("map NETNS_INUMS missing")?,
        )?)
    }

    /// The ring buffer every program of every site writes to; call once, after the sites
    /// that are there at the start have loaded (it stays shared with those that come later:
    /// the kernel map lives as long as any object holds it).
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        let map = self.ebpf.take_map("EVENTS").context("map EVENTS missing")?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Records the programs could not write because the ring buffer was full.
    pub fn lost(&self) -> Result<u64> {
        self.counter(COUNTER_LOST)
    }

    /// TCP RSTs the traced namespaces' stacks consumed (freed with no drop reason): not
    /// reported as drops.
    pub fn rsts_consumed(&self) -> Result<u64> {
        self.counter(COUNTER_RST_CONSUMED)
    }

    /// Packets of the traced flows a stack discarded as another host's (see
    /// `COUNTER_NOT_FOR_HOST`): not reported as drops.
    pub fn not_for_host(&self) -> Result<u64> {
        self.counter(COUNTER_NOT_FOR_HOST)
    }

    /// Packets the per-VIP totals had no room for (the map is full; it never evicts).
    pub fn totals_full(&self) -> Result<u64> {
        self.counter(COUNTER_TOTALS_FULL)
    }

    /// The per-VIP totals by topology of every site (`TotalKey::site`).
    pub fn totals(&self) -> Result<Vec<(TotalKey, TotalCount)>> {
        let map: BpfHashMap<_, TotalKey, TotalCount> =
            BpfHashMap::try_from(self.ebpf.map("TOTALS").context("map TOTALS missing")?)?;
        Ok(map.iter().filter_map(Result::ok).collect())
    }

    fn counter(&self, index: u32) -> Result<u64> {
        let counters: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("COUNTERS").context("map COUNTERS missing")?)?;
        Ok(counters.get(&index, 0)?.iter().sum())
    }

    /// Every hop the kernel counts now, of every site (`HopKey::site`).
    pub fn hop_counts(&self) -> Result<HopCounts> {
        let map: BpfHashMap<_, HopKey, HopCount> =
            BpfHashMap::try_from(self.ebpf.map("HOPS").context("map HOPS missing")?)?;
        // Entries created before the walk, so those created during it make the estimate
        // low for a moment, never high (read after, they looked evicted).
        let created = self.counter(COUNTER_HOP_NEW)?;
        let hops: Vec<_> = map.iter().filter_map(Result::ok).collect();
        let evicted = created
            .saturating_sub(self.hops_forgotten)
            .saturating_sub(hops.len() as u64);
        Ok(HopCounts { hops, evicted })
    }

    /// Forgets the counts of hops whose flows were summarised (or whose site went away),
    /// so the map holds live flows only.
    pub fn forget_hops(&mut self, keys: &[HopKey]) -> Result<()> {
        let mut map: BpfHashMap<_, HopKey, HopCount> =
            BpfHashMap::try_from(self.ebpf.map_mut("HOPS").context("map HOPS missing")?)?;
        self.hops_forgotten += keys.iter().filter(|k| map.remove(k).is_ok()).count() as u64;
        Ok(())
    }
}

/// The netns inode as the kernel's `ns.inum`.
fn inum(ns: &Netns) -> Result<u32> {
    let (_, inode) = ns.id()?;
    u32::try_from(inode).context("netns inode does not fit ns.inum")
}
