//! The TC programs on the traced namespaces' interfaces.
//!
//! Where the kernel lets a TC program read the namespace of the device it runs on (through
//! `bpf_probe_read_kernel`, offsets from the kernel's BTF), one object's programs serve
//! every site and are verified once, whatever the number of namespaces: a verification is
//! most of what loading for a namespace costs (35-70 ms a program here). Elsewhere each site
//! loads an object of its own, with its site number as a constant. Either way the maps are
//! the node object's (see `share`), so userspace reads the counts in one place.
//!
//! Each site holds handles of its own on the programs (duplicated program fds), so sites
//! attach side by side: a TCX attachment waits for an RCU grace period in the kernel
//! (15-30 ms here), and attaching one namespace after the other added those waits up.
use std::net::IpAddr;

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    programs::{
        tc::{NlOptions, SchedClassifierLinkId, TcAttachOptions},
        LinkOrder, SchedClassifier, TcAttachType,
    },
    util::KernelVersion,
    Ebpf,
};

use tracer_common::programs;

use super::{
    node::{NodeProbes, TcObjects, TracedIface},
    object::{program, refused, Globals},
    offsets::netns_offsets,
    options::{AttachMode, RecordBudget, TcPrograms},
    ready::Ready,
    share,
};
use crate::netns::Netns;

/// The TC side of one site: its handles on the programs and what they attached.
pub struct Probes {
    /// The ingress and egress programs, as in `TC_PROGRAMS`.
    programs: Vec<SchedClassifier>,
    site: u16,
    pub ready: Ready,
    /// Interfaces whose `clsact` qdisc this run (or a killed earlier one) created: removed
    /// at exit when no one else's filter is on it.
    pub owned_clsact: Vec<String>,
    /// TC programs go on as netlink clsact filters (else TCX links).
    netlink: bool,
    /// Each interface's TC attachments (program index, link), to let go of one interface.
    tc_links: TcLinks,
    /// The site's interfaces, as told to the programs (`NodeProbes::claim_ifaces`).
    ifaces: Vec<(String, TracedIface)>,
}

pub struct Request<'a> {
    pub netns: &'a Netns,
    pub role: &'static str,
    /// The site number the programs tag this namespace's records and counts with (from 1).
    pub site: u16,
    pub mode: AttachMode,
    pub sharing: TcPrograms,
    pub vips: &'a [IpAddr],
    pub client_port: Option<u16>,
    pub interfaces: &'a [String],
    /// The traced interfaces' indexes, and which route (not bridge ports: bridge0).
    pub ifaces: &'a [(String, TracedIface)],
    /// Packet records per hop: every packet, none (counts only) or the first N.
    pub budget: RecordBudget,
    /// Frame bytes copied into each packet record (`--pcap`), 0 for none.
    pub snap_len: u32,
}

impl Request<'_> {
    /// The globals of an object of TC programs for `site` (0: every site).
    fn globals(&self, site: u16) -> Globals {
        let mut g = Globals::new(self.vips, self.client_port.unwrap_or(0), self.budget, site);
        g.snap_len = self.snap_len;
        g
    }
}

fn tcx_available() -> bool {
    matches!(KernelVersion::current(), Ok(v) if v >= KernelVersion::new(6, 6, 0))
}

/// Removes TC filters of ours an earlier, killed run left on `iface` (netlink mode only
/// leaves any); returns how many. Runs inside the namespace.
fn remove_leftovers(iface: &str) -> usize {
    TC_PROGRAMS
        .into_iter()
        .filter(|(name, t)| aya::programs::tc::qdisc_detach_program(iface, *t, name).is_ok())
        .count()
}

/// Loads the object every site shares, or says why it cannot be had: the kernel's BTF
/// lacks the offsets, or the verifier refuses a TC program that reads kernel memory.
fn load_shared(req: &Request, node: &NodeProbes) -> Result<TcObjects> {
    let offsets = match netns_offsets() {
        Ok(o) => o,
        Err(why) => {
            return Ok(TcObjects::PerSite(format!(
                "no offsets from the kernel BTF ({why})"
            )))
        }
    };
    let mut globals = req.globals(0);
    globals.netns_offsets = offsets;
    let mut ebpf = node.load_sharing(|share| globals.load(|loader| share(loader)))?;
    Ok(match load_programs(&mut ebpf) {
        Ok(()) => TcObjects::Shared(ebpf),
        Err(e) => TcObjects::PerSite(format!("{e:#}")),
    })
}

/// Handles of their own on `ebpf`'s loaded TC programs, in `TC_PROGRAMS` order.
fn handles(ebpf: &mut Ebpf, node: &NodeProbes) -> Result<Vec<SchedClassifier>> {
    TC_PROGRAMS
        .iter()
        .map(|(name, _)| share::duplicate(program(ebpf, name)?, node.bpffs(), name))
        .collect()
}

impl Probes {
    /// Gets the site its handles on the TC programs: the shared object's (loaded by the
    /// first site, where the kernel allows it), else those of an object of its own. Makes
    /// the site known to the programs; attaching is `attach`'s.
    pub fn load(req: &Request, node: &mut NodeProbes) -> Result<Probes> {
        if matches!(node.tc, TcObjects::NotLoaded) {
            node.tc = match req.sharing {
                TcPrograms::Auto => load_shared(req, node)?,
                TcPrograms::PerNamespace => {
                    TcObjects::PerSite("not tried (--tc-programs per-namespace)".into())
                }
            };
            if let TcObjects::PerSite(why) = &node.tc {
                node.ready.unavailable.push((
                    "tc programs shared by every namespace".into(),
                    format!("{why}; loaded once per namespace instead"),
                ));
            }
        }
        let programs = match std::mem::replace(&mut node.tc, TcObjects::NotLoaded) {
            TcObjects::Shared(mut ebpf) => {
                let handles = handles(&mut ebpf, node);
                node.tc = TcObjects::Shared(ebpf);
                handles?
            }
            per_site => {
                node.tc = per_site;
                let globals = req.globals(req.site);
                let mut ebpf = node.load_sharing(|share| globals.load(|loader| share(loader)))?;
                load_programs(&mut ebpf)?;
                // The programs keep the maps they use; the object itself can go.
                handles(&mut ebpf, node)?
            }
        };
        let netlink = match req.mode {
            AttachMode::Auto => !tcx_available(),
            AttachMode::Tcx if !tcx_available() => {
                bail!("--attach tcx needs a kernel >= 6.6; use --attach netlink")
            }
            AttachMode::Tcx => false,
            AttachMode::Netlink => true,
        };
        // Before anything is attached: the shared programs find the site by interface, or
        // by namespace.
        node.watch_netns(req.netns, req.site)?;
        let ifaces: Vec<TracedIface> = req.ifaces.iter().map(|(_, i)| *i).collect();
        node.claim_ifaces(req.site, &ifaces)?;
        Ok(Probes {
            programs,
            site: req.site,
            ready: Ready {
                netns: req.netns.label.clone(),
                role: req.role,
                vips: req.vips.to_vec(),
                vips_from: "--vip",
                client_port: req.client_port,
                interfaces: req.interfaces.to_vec(),
                ..Default::default()
            },
            owned_clsact: Vec::new(),
            netlink,
            tc_links: Vec::new(),
            ifaces: req.ifaces.to_vec(),
        })
    }

    /// Attaches both programs to every interface of the site, all or nothing: on failure
    /// what did attach is detached again. Needs nothing but the site, so sites attach side
    /// by side.
    pub fn attach(&mut self, ns: &Netns, interfaces: &[String]) -> Result<()> {
        let netlink = self.netlink;
        let prepared: Vec<(usize, bool)> = ns.run(|| {
            interfaces
                .iter()
                .map(|iface| {
                    let removed = remove_leftovers(iface);
                    // EEXIST (someone's clsact already there) is fine: we add filters to it.
                    let created = netlink && aya::programs::tc::qdisc_add_clsact(iface).is_ok();
                    (removed, created)
                })
                .collect()
        })?;
        // One thread per program, each entering the namespace once (entering it per
        // attachment cost more than the attachments), so the RCU waits of the ingress and
        // egress attachments overlap.
        let attached: Vec<(TcLinks, Option<anyhow::Error>)> = std::thread::scope(|scope| {
            let threads: Vec<_> = self
                .programs
                .iter_mut()
                .zip(TC_PROGRAMS)
                .enumerate()
                .map(|(index, (prog, (_, attach_type)))| {
                    scope.spawn(move || {
                        let mut links = Vec::new();
                        let entered = ns.run(|| {
                            for iface in interfaces {
                                let link =
                                    attach_one_tc(prog, &ns.label, iface, attach_type, netlink)?;
                                links.push((iface.clone(), index, link));
                            }
                            Ok::<_, anyhow::Error>(())
                        });
                        let error = match entered {
                            Ok(Ok(())) => None,
                            Ok(Err(e)) | Err(e) => Some(e),
                        };
                        (links, error)
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| {
                    t.join().unwrap_or_else(|_| {
                        (Vec::new(), Some(anyhow!("an attach thread panicked")))
                    })
                })
                .collect()
        });
        let mut error = None;
        for (links, e) in attached {
            self.tc_links.extend(links);
            error = error.or(e);
        }
        if let Some(e) = error {
            let links = std::mem::take(&mut self.tc_links);
            self.detach_links(ns, links);
            return Err(e);
        }
        for (iface, (removed, created)) in interfaces.iter().zip(prepared) {
            if removed > 0 {
                self.ready.notes.push(format!(
                    "removed {removed} tc filter(s) an earlier, killed run left on {iface}"
                ));
            }
            // A clsact found holding our leftovers was that run's: ours to clean up now.
            if created || removed > 0 {
                self.owned_clsact.push(iface.clone());
            }
        }
        let mode = if netlink { "netlink clsact" } else { "tcx" };
        for (iface, index, _) in &self.tc_links {
            let (_, t) = TC_PROGRAMS[*index];
            self.ready
                .hooks
                .push(format!("tc:{iface}/{} ({mode})", dir_name(t)));
        }
        Ok(())
    }

    /// Attaches both TC programs to an interface that appeared while tracing.
    pub fn attach_iface(
        &mut self,
        ns: &Netns,
        iface: &str,
        index: TracedIface,
        node: &mut NodeProbes,
    ) -> Result<()> {
        node.claim_ifaces(self.site, &[index])?;
        self.ifaces.push((iface.to_string(), index));
        let netlink = self.netlink;
        if netlink {
            ns.run(|| aya::programs::tc::qdisc_add_clsact(iface).is_ok())?;
        }
        for (index, (prog, (_, attach_type))) in
            self.programs.iter_mut().zip(TC_PROGRAMS).enumerate()
        {
            let link = ns.run(|| attach_one_tc(prog, &ns.label, iface, attach_type, netlink))??;
            self.tc_links.push((iface.to_string(), index, link));
        }
        Ok(())
    }

    /// Lets go of an interface that went away: its links are closed (the kernel already
    /// took the device's attachments down with it; errors saying so are expected).
    pub fn detach_iface(&mut self, ns: &Netns, iface: &str, node: &mut NodeProbes) {
        let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ifaces)
            .into_iter()
            .partition(|(i, _)| i == iface);
        self.ifaces = keep;
        let gone: Vec<u32> = gone.iter().map(|(_, i)| i.ifindex).collect();
        node.release_ifaces(self.site, &gone);
        let (gone, keep): (TcLinks, TcLinks) = std::mem::take(&mut self.tc_links)
            .into_iter()
            .partition(|(i, _, _)| i == iface);
        self.tc_links = keep;
        self.detach_links(ns, gone);
    }

    /// Closes `links` from inside the namespace (netlink filters must be removed from
    /// there); failures (the device is gone) are logged.
    fn detach_links(&mut self, ns: &Netns, links: TcLinks) {
        let programs = &mut self.programs;
        let _ = ns.run(|| {
            for (iface, index, link) in links {
                if let Err(e) = programs[index].detach(link) {
                    log::debug!("detaching {} from {iface}: {e}", TC_PROGRAMS[index].0);
                }
            }
        });
    }

    /// Detaches everything from inside the traced namespace by dropping the site's
    /// handles there (their links go with them), and forgets its interfaces.
    pub fn detach(self, ns: &Netns, node: &mut NodeProbes) -> Result<()> {
        let ifindexes: Vec<u32> = self.ifaces.iter().map(|(_, i)| i.ifindex).collect();
        node.release_ifaces(self.site, &ifindexes);
        let programs = self.programs;
        ns.run(move || drop(programs))
    }
}

/// (interface, index in `TC_PROGRAMS`, link).
type TcLinks = Vec<(String, usize, SchedClassifierLinkId)>;

const TC_PROGRAMS: [(&str, TcAttachType); 2] = [
    (programs::TC_IN, TcAttachType::Ingress),
    (programs::TC_OUT, TcAttachType::Egress),
];

/// Loads (verifies) both TC programs of an object side by side, one thread each:
/// verification runs on the loading thread's CPU.
fn load_programs(ebpf: &mut Ebpf) -> Result<()> {
    let mut programs: Vec<(&str, &mut aya::programs::Program)> = ebpf
        .programs_mut()
        .filter(|(name, _)| TC_PROGRAMS.iter().any(|(n, _)| n == name))
        .collect();
    std::thread::scope(|scope| {
        let threads: Vec<_> = programs
            .iter_mut()
            .map(|(name, prog)| scope.spawn(move || load_tc(name, prog).map(|_| ())))
            .collect();
        threads.into_iter().try_for_each(|t| {
            t.join()
                .unwrap_or_else(|_| Err(anyhow!("a loading thread panicked")))
        })
    })
}

/// Attaches one program to one interface; runs inside the interface's namespace.
fn attach_one_tc(
    prog: &mut SchedClassifier,
    netns: &str,
    iface: &str,
    attach_type: TcAttachType,
    netlink: bool,
) -> Result<SchedClassifierLinkId> {
    let options = if netlink {
        TcAttachOptions::Netlink(NlOptions::default())
    } else {
        TcAttachOptions::TcxOrder(LinkOrder::default())
    };
    prog.attach_with_options(iface, attach_type, options)
        .with_context(|| {
            format!(
                "cannot attach the TC {} program to {iface} in netns {netns}",
                dir_name(attach_type),
            )
        })
}

fn dir_name(t: TcAttachType) -> &'static str {
    match t {
        TcAttachType::Ingress => "ingress",
        _ => "egress",
    }
}

/// Loads (verifies) one TC program of a site object.
fn load_tc<'a>(
    name: &str,
    prog: &'a mut aya::programs::Program,
) -> Result<&'a mut SchedClassifier> {
    let prog: &mut SchedClassifier = prog.try_into()?;
    let started = std::time::Instant::now();
    prog.load()
        .map_err(|e| refused("the TC program", name, &e))?;
    // What the verifier cost: most of a site's start-up.
    let verified = prog
        .info()
        .ok()
        .and_then(|i| i.verified_instruction_count());
    log::debug!(
        "{name}: loaded in {:?}, {verified:?} instructions verified",
        started.elapsed()
    );
    Ok(prog)
}
