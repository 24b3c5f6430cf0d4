//! The traced interfaces of every site, as the TC programs find them: `L3_IFACES` (by site
//! and ifindex: the ones that route), and `DEVICES`, where the programs every site shares
//! keep the site of each device they have seen. Userspace empties `DEVICES` whenever a
//! site's interfaces change: a device the kernel has since freed may have left its address
//! to a new one in another namespace.
use anyhow::{Context, Result};
use aya::maps::{HashMap as BpfHashMap, MapData};
use tracer_common::{DeviceSite, IfaceKey};

use super::NodeProbes;

/// One traced interface of a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TracedIface {
    pub ifindex: u32,
    /// It routes (bridge0, not a bridge port): its ingress hook primes the route lookup.
    pub routes: bool,
}

impl NodeProbes {
    /// Tells the TC programs of `site`'s interfaces, before they are attached.
    pub fn claim_ifaces(&mut self, site: u16, ifaces: &[TracedIface]) -> Result<()> {
        let mut l3 = self.l3_ifaces()?;
        for iface in ifaces.iter().filter(|i| i.routes) {
            l3.insert(l3_key(site, iface.ifindex), 1, 0)?;
        }
        self.forget_devices()
    }

    /// Forgets `site`'s interfaces of these indexes (detached, or gone).
    pub fn release_ifaces(&mut self, site: u16, ifindexes: &[u32]) {
        if let Ok(mut l3) = self.l3_ifaces() {
            for &ifindex in ifindexes {
                let _ = l3.remove(&l3_key(site, ifindex));
            }
        }
        if let Err(e) = self.forget_devices() {
            log::debug!("emptying DEVICES: {e:#}");
        }
    }

    /// Empties `DEVICES`: the programs learn the devices again, one namespace read each.
    fn forget_devices(&mut self) -> Result<()> {
        let mut map: BpfHashMap<&mut MapData, u64, DeviceSite> = BpfHashMap::try_from(
            self.ebpf
                .map_mut("DEVICES")
                .context("map DEVICES missing")?,
        )?;
        let devices: Vec<u64> = map.keys().filter_map(Result::ok).collect();
        for dev in devices {
            let _ = map.remove(&dev);
        }
        Ok(())
    }

    fn l3_ifaces(&mut self) -> Result<BpfHashMap<&mut MapData, IfaceKey, u8>> {
        Ok(BpfHashMap::try_from(
            self.ebpf
                .map_mut("L3_IFACES")
                .context("map L3_IFACES missing")?,
        )?)
    }
}

fn l3_key(site: u16, ifindex: u32) -> IfaceKey {
    IfaceKey {
        ifindex,
        site,
        _pad: 0,
    }
}
