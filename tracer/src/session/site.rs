//! A traced namespace while the session runs ([`Site`]), the interfaces its role traces,
//! and [`Attached`]: the node object with every site attached so far, the one place the
//! sites are closed, whichever way the session ends.
use std::collections::BTreeSet;

use anyhow::{bail, Result};

use crate::{
    bpf::{NodeProbes, Probes, TracedIface},
    correlate::flows::SiteView,
    discover::Role,
    netns::kernel_state::{ConnTask, KernelState, Netlink},
    netns::Netns,
};

/// One traced namespace while the session runs.
pub(super) struct Site {
    pub(super) label: String,
    pub(super) role: Role,
    pub(super) ns: Netns,
    pub(super) inode: u64,
    pub(super) netlink: Netlink,
    pub(super) state: KernelState,
    pub(super) probes: Probes,
    /// Follow the role's interfaces as they come and go (no --iface given).
    pub(super) follow: bool,
    pub(super) attached: BTreeSet<String>,
    /// When the neighbours and FDB were last dumped.
    pub(super) neighbours_read: std::time::Instant,
    /// The change watcher's connection (its messages feed the session's stream).
    pub(super) watch_task: Option<ConnTask>,
}

impl Site {
    pub(super) fn view(&self, index: usize) -> SiteView<'_> {
        SiteView {
            index,
            label: &self.label,
            role: self.role,
            state: &self.state,
        }
    }

    /// Re-reads the namespace's state, keeping what netlink does not carry.
    pub(super) async fn refresh(&mut self) -> Result<()> {
        let fresh = self.netlink.snapshot().await?;
        self.state = KernelState {
            hash_policy: self.state.hash_policy,
            ..fresh
        };
        Ok(())
    }

    /// Detaches from inside the namespace and removes a clsact qdisc that was ours.
    pub(super) async fn close(mut self, node: &mut NodeProbes) {
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

/// The node object and the sites attached so far, by site index (`None`: a site that went
/// away). Every way out of a session closes the sites through it: [`Attached::close`] on
/// the way out of `run` (its end, an error, Ctrl-C or SIGTERM), and its `Drop` for a panic
/// or a dropped future, so no namespace keeps a program of a tracer that is gone.
pub(super) struct Attached {
    pub(super) node: NodeProbes,
    pub(super) sites: Vec<Option<Site>>,
}

impl Attached {
    pub(super) fn new(node: NodeProbes) -> Attached {
        Attached {
            node,
            sites: Vec::new(),
        }
    }

    /// Closes site `index` (a namespace that went away); its slot stays, empty, so the
    /// sites after it keep their index.
    pub(super) async fn close_site(&mut self, index: usize) {
        if let Some(site) = self.sites.get_mut(index).and_then(Option::take) {
            site.close(&mut self.node).await;
        }
    }

    /// Closes the last site, one that never started, and frees its slot for the next.
    pub(super) async fn close_last(&mut self) {
        if let Some(site) = self.sites.pop().flatten() {
            site.close(&mut self.node).await;
        }
    }

    /// Closes every site still open, in site order.
    pub(super) async fn close(&mut self) {
        for site in std::mem::take(&mut self.sites).into_iter().flatten() {
            site.close(&mut self.node).await;
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if self.sites.iter().all(Option::is_none) {
            return;
        }
        // Closing is async (netlink), and this thread may be the session's runtime, which
        // cannot be blocked on from inside: a thread of its own closes them, on a runtime
        // and netlink sockets of its own (the session's connections are not polled now).
        let sites = std::mem::take(&mut self.sites);
        let node = &mut self.node;
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        log::warn!("could not detach the sites: {e}");
                        return;
                    }
                };
                rt.block_on(async {
                    for mut site in sites.into_iter().flatten() {
                        match Netlink::connect(&site.ns) {
                            Ok(netlink) => site.netlink = netlink,
                            Err(e) => log::debug!("reconnecting to {}: {e:#}", site.label),
                        }
                        site.close(node).await;
                    }
                });
            });
        });
    }
}

/// The interfaces a site's role traces: a proxy's bridges and their ports; every
/// interface but loopback of a frontend or a target.
pub(super) fn role_interfaces(role: Role, state: &KernelState) -> Vec<String> {
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
pub(super) fn pick_interfaces(
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

/// The interfaces' indexes, and which route (not bridge ports): the ingress hooks of those
/// prime the fib matching. Names the namespace no longer has are left out.
pub(super) fn traced_ifaces(state: &KernelState, ifaces: &[String]) -> Vec<(String, TracedIface)> {
    ifaces
        .iter()
        .filter_map(|name| {
            let l = state.link_by_name(name)?;
            let index = TracedIface {
                ifindex: l.index,
                routes: !state.is_bridge_port(l.index),
            };
            Some((name.clone(), index))
        })
        .collect()
}

/// Each site's state, by site index (gone sites read as empty).
pub(super) fn states(sites: &[Option<Site>]) -> Vec<&KernelState> {
    static EMPTY: std::sync::OnceLock<KernelState> = std::sync::OnceLock::new();
    sites
        .iter()
        .map(|s| {
            s.as_ref()
                .map_or_else(|| EMPTY.get_or_init(KernelState::default), |s| &s.state)
        })
        .collect()
}

pub(super) fn labels(sites: &[Option<Site>]) -> Vec<String> {
    sites
        .iter()
        .map(|s| s.as_ref().map_or_else(String::new, |s| s.label.clone()))
        .collect()
}

pub(super) fn proxy_label(labels: &[String], site: Option<usize>) -> &str {
    site.and_then(|i| labels.get(i)).map_or("", String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

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
