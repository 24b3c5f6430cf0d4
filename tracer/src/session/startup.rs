//! Start-up: which namespaces to trace and in which role, each looked at before anything
//! is loaded (bad input is refused first), then the node object, then every site's
//! programs loaded and attached. All or nothing: a site that fails leaves none attached
//! (the [`Attached`] guard closes those that were).
use std::time::Instant;

use anyhow::{bail, Result};

use crate::{
    bpf::{NodeProbes, NodeRequest, Probes, Request},
    cli::Args,
    discover::{self, Role},
    netns::kernel_state::{read_hash_policy, KernelState, Netlink},
    netns::Netns,
};

use super::{
    site::{pick_interfaces, traced_ifaces, Attached, Site},
    SiteSpec, Sites,
};

/// The namespaces asked for, with the roles to rediscover when the sites are discovered
/// (`None`: fixed by `--netns`).
pub(super) async fn site_specs(
    args: &Args,
    sites: Sites,
) -> Result<(Option<Vec<Role>>, Vec<SiteSpec>)> {
    Ok(match sites {
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
    })
}

/// Looks at every namespace asked for; the role of a `--netns` one is decided here.
pub(super) async fn inspect_all(
    args: &Args,
    fixed: Vec<SiteSpec>,
    discovered: bool,
) -> Result<Vec<InspectedSite>> {
    let mut inspected = Vec::new();
    // Fixed sites are the one --netns namespace, its --role (at most one) the operator's.
    let asked = args.roles.first().map(|r| Role::from(*r));
    for mut t in fixed {
        let note = match discovered {
            false => resolve_role(&mut t, asked).await,
            true => None,
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
    Ok(inspected)
}

/// Loads the node object and attaches its node-wide hooks, before any site.
pub(super) fn load_node(args: &Args, started: Instant) -> Result<Attached> {
    // What discovery read is freed: handed back before the kernel BTF parses below, so
    // that it does not add to their peak (30.6 -> 26.6 MB for a whole path of 4).
    release_freed_heap();
    let mut node = NodeProbes::load(&node_request(args))?;
    log::debug!("start-up: node maps made at {:?}", started.elapsed());
    // The node-wide hooks before the sites: the fexit hooks need aya's parse of the kernel
    // BTF (20 MB of heap), handed back here; loaded side by side with the sites, the
    // two added up to a peak RSS of 31-39 MB instead of 26.
    node.attach_hooks(&node_request(args));
    log::debug!(
        "start-up: node-wide hooks attached at {:?}",
        started.elapsed()
    );
    release_freed_heap();
    Ok(Attached::new(node))
}

/// Loads every inspected site's programs into `attached`, then attaches them all.
pub(super) fn open_and_attach(
    args: &Args,
    inspected: Vec<InspectedSite>,
    attached: &mut Attached,
    started: Instant,
) -> Result<()> {
    for i in inspected {
        let site = open_site(args, i, attached.sites.len(), &mut attached.node)?;
        attached.sites.push(Some(site));
    }
    log::debug!("start-up: programs loaded at {:?}", started.elapsed());
    attach_sites(&mut attached.sites)?;
    log::debug!(
        "start-up: {} site(s) attached at {:?}",
        attached.sites.len(),
        started.elapsed()
    );
    Ok(())
}

/// What the node object is asked for (loaded before any site, its hooks attached after
/// the sites that are there at the start).
fn node_request(args: &Args) -> NodeRequest<'_> {
    NodeRequest {
        vips: &args.vips,
        client_port: args.port,
        budget: args.record_budget(),
        fib_hook: args.fib_hook,
        hash_hook: args.hash_hook,
        hooks: &args.hooks,
        hop_entries: args.hop_entries,
    }
}

/// Hands the allocator's freed heap back to the system: start-up parses the kernel's BTF
/// (megabytes, freed since), and the long-running tracer should stay small on the node.
pub(super) fn release_freed_heap() {
    // SAFETY: malloc_trim only releases free memory of the allocator. (glibc only; musl's
    // allocator, in the static dist binary, returns freed memory by itself.) A libc call,
    // not a system call: nothing safer wraps it.
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
pub(super) struct InspectedSite {
    spec: SiteSpec,
    netlink: Netlink,
    state: KernelState,
    interfaces: Vec<String>,
    /// For the ready record: how the role was chosen.
    notes: Vec<String>,
}

pub(super) async fn inspect_site(t: SiteSpec) -> Result<InspectedSite> {
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
pub(super) fn open_site(
    args: &Args,
    i: InspectedSite,
    index: usize,
    node: &mut NodeProbes,
) -> Result<Site> {
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
            ifaces: &traced_ifaces(&state, &interfaces),
            budget: args.record_budget(),
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
pub(super) fn attach_sites(sites: &mut [Option<Site>]) -> Result<()> {
    const WORKERS: usize = 4;
    let workers = WORKERS.min(sites.len());
    let queue = std::sync::Mutex::new(sites.iter_mut().flatten());
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
}
