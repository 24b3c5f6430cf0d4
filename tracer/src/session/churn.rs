//! Churn while the session runs: neighbour and FDB updates, netlink changes (interfaces
//! of a followed role that come and go), and in whole-path mode namespaces that appear or
//! go away.
use std::collections::BTreeSet;

use anyhow::Result;

use crate::{
    discover::{self, Role},
    netns::changes::{self, Change},
    netns::kernel_state::{NeighbourUpdate, Watcher},
    netns::Netns,
};

use super::{
    event_loop::Session,
    monotonic_ns,
    site::{role_interfaces, traced_ifaces},
    startup::{attach_sites, inspect_site, open_site},
    SiteSpec,
};

impl Session<'_> {
    /// A neighbour or FDB notification: applied to the site's state as it is, and the
    /// changes of VIP next-hops' neighbours reported.
    pub(super) fn on_neighbour(&mut self, index: usize, update: &NeighbourUpdate) {
        let Some(site) = self.attached.sites.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        if let Some(change) = changes::apply_neighbour(&mut site.state, update, &self.args.vips) {
            self.out.change(monotonic_ns(), &site.label, &change);
        }
    }

    /// After a netlink notification in a site: re-read it, print what changed for the
    /// VIPs, and attach to interfaces of its role that appeared (drop those that went).
    pub(super) async fn on_netlink_change(&mut self, index: usize) -> Result<()> {
        let vips = self.args.vips.clone();
        let Some(site) = self.attached.sites.get_mut(index).and_then(Option::as_mut) else {
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
            site.probes
                .detach_iface(&site.ns, &gone, &mut self.attached.node);
            let c = Change::Attached {
                added: false,
                ifname: gone,
            };
            self.out.change(ts_ns, &site.label, &c);
        }
        for new in now.difference(&site.attached).cloned().collect::<Vec<_>>() {
            let Some((_, index)) = traced_ifaces(&site.state, std::slice::from_ref(&new)).pop()
            else {
                continue;
            };
            match site
                .probes
                .attach_iface(&site.ns, &new, index, &mut self.attached.node)
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
    pub(super) async fn rediscover(&mut self, roles: &[Role], discovery: &discover::Discovery) {
        // None found is not an error here: everything may be gone for a moment.
        let found = discover::to_trace(discovery, roles, &self.args.vips).unwrap_or_default();
        let inodes: Vec<u64> = found.iter().map(|n| n.inode).collect();
        let ts_ns = monotonic_ns();
        for index in 0..self.attached.sites.len() {
            let Some(site) = &self.attached.sites[index] else {
                continue;
            };
            if inodes.contains(&site.inode) {
                continue;
            }
            let c = Change::Netns {
                added: false,
                role: site.role.as_str(),
                name: site.label.clone(),
            };
            self.out.change(ts_ns, &site.label, &c);
            self.attached.close_site(index).await;
        }
        let known: Vec<u64> = self
            .attached
            .sites
            .iter()
            .flatten()
            .map(|s| s.inode)
            .collect();
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
        let index = self.attached.sites.len();
        let inspected = inspect_site(spec).await?;
        let site = open_site(self.args, inspected, index, &mut self.attached.node)?;
        self.attached.sites.push(Some(site));
        let started = attach_sites(&mut self.attached.sites[index..]);
        let watcher = started.and_then(|()| {
            let site = self.attached.sites[index].as_ref().expect("pushed above");
            Watcher::start(&site.ns)
        });
        let watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                // Not started: its slot goes with it, so the next site takes this index.
                self.attached.close_last().await;
                return Err(e);
            }
        };
        let c = Change::Netns {
            added: true,
            role: role.as_str(),
            name: name.clone(),
        };
        self.out.change(ts_ns, &name, &c);
        self.start_site(index, watcher);
        Ok(())
    }
}
