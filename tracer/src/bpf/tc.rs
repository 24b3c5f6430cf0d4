//! A site object: the TC programs on one traced namespace's interfaces, with that
//! namespace's ring buffer and per-hop counters.
use anyhow::{Context, Result};
use aya::{
    maps::{HashMap as BpfHashMap, PerCpuArray},
    programs::{
        tc::{NlOptions, SchedClassifierLinkId, TcAttachOptions},
        LinkOrder, SchedClassifier, TcAttachType,
    },
    util::KernelVersion,
    Ebpf,
};
use std::net::IpAddr;
use tracer_common::{HopCount, HopKey, COUNTER_HOP_NEW, COUNTER_LOST};

use super::{program, refused, AttachMode, Globals, NodeProbes, Ready, RecordBudget};
use crate::netns::Netns;

pub struct Probes {
    ebpf: Ebpf,
    pub ready: Ready,
    /// Interfaces whose `clsact` qdisc this run (or a killed earlier one) created: removed
    /// at exit when no one else's filter is on it.
    pub owned_clsact: Vec<String>,
    /// TC programs go on as netlink clsact filters (else TCX links).
    netlink: bool,
    /// Each interface's TC attachments (program name, link), to let go of one interface.
    tc_links: Vec<(String, &'static str, SchedClassifierLinkId)>,
}

pub struct Request<'a> {
    pub netns: &'a Netns,
    pub role: &'static str,
    /// The site number the node-wide hooks tag this namespace's reports with (from 1).
    pub site: u16,
    pub mode: AttachMode,
    pub vips: &'a [IpAddr],
    pub client_port: Option<u16>,
    pub interfaces: &'a [String],
    /// Ifindexes of the traced interfaces that route (not bridge ports): bridge0.
    pub l3_ifindexes: &'a [u32],
    /// Packet records per hop: every packet, none (counts only) or the first N.
    pub budget: RecordBudget,
    /// Entries of the in-kernel per-hop counter map.
    pub hop_entries: u32,
    /// Frame bytes copied into each packet record (`--pcap`), 0 for none.
    pub snap_len: u32,
}

/// The in-kernel counters of one site, as read at one moment.
#[derive(Debug, Default, Clone)]
pub struct HopCounts {
    pub hops: Vec<(HopKey, HopCount)>,
    /// Hop entries the programs created since the start.
    pub created: u64,
}

fn tcx_available() -> bool {
    matches!(KernelVersion::current(), Ok(v) if v >= KernelVersion::new(6, 6, 0))
}

/// Removes TC filters of ours an earlier, killed run left on `iface` (netlink mode only
/// leaves any); returns how many. Runs inside the namespace.
fn remove_leftovers(iface: &str) -> usize {
    [
        (TcAttachType::Ingress, "meridio_tc_in"),
        (TcAttachType::Egress, "meridio_tc_out"),
    ]
    .into_iter()
    .filter(|(t, name)| aya::programs::tc::qdisc_detach_program(iface, *t, name).is_ok())
    .count()
}

impl Probes {
    /// Loads a site object sharing `LAST_INGRESS` with `node`, and attaches its TC programs
    /// to the interfaces asked for.
    pub fn load(req: &Request, node: &NodeProbes) -> Result<Probes> {
        let mut globals =
            Globals::new(req.vips, req.client_port.unwrap_or(0), req.budget, req.site);
        globals.snap_len = req.snap_len;
        let mut ebpf = node.load_sharing(|share| {
            globals.load(|loader| {
                loader.map_max_entries("HOPS", req.hop_entries);
                share(loader);
            })
        })?;
        let mut ready = Ready {
            netns: req.netns.label.clone(),
            role: req.role,
            vips: req.vips.to_vec(),
            vips_from: "--vip",
            client_port: req.client_port,
            interfaces: req.interfaces.to_vec(),
            ..Default::default()
        };
        let mut l3: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(ebpf.map_mut("L3_IFACES").context("map L3_IFACES missing")?)?;
        for ifindex in req.l3_ifindexes {
            l3.insert(ifindex, 1, 0)?;
        }

        let netlink = match req.mode {
            AttachMode::Auto => !tcx_available(),
            AttachMode::Tcx if !tcx_available() => {
                anyhow::bail!("--attach tcx needs a kernel >= 6.6; use --attach netlink")
            }
            AttachMode::Tcx => false,
            AttachMode::Netlink => true,
        };
        let (owned_clsact, tc_links) = match attach_tc(&mut ebpf, req, netlink, &mut ready) {
            Ok(attached) => attached,
            Err(e) => {
                // What did attach goes with the object, from inside the namespace (where
                // netlink filters must be removed).
                let _ = req.netns.run(move || drop(ebpf));
                return Err(e);
            }
        };
        Ok(Probes {
            ebpf,
            ready,
            owned_clsact,
            netlink,
            tc_links,
        })
    }

    /// Attaches both TC programs to an interface that appeared while tracing.
    pub fn attach_iface(&mut self, ns: &Netns, iface: &str, l3_ifindexes: &[u32]) -> Result<()> {
        let mut l3: BpfHashMap<_, u32, u8> = BpfHashMap::try_from(
            self.ebpf
                .map_mut("L3_IFACES")
                .context("map L3_IFACES missing")?,
        )?;
        for ifindex in l3_ifindexes {
            l3.insert(ifindex, 1, 0)?;
        }
        if self.netlink {
            ns.run(|| aya::programs::tc::qdisc_add_clsact(iface).is_ok())?;
        }
        for (name, attach_type) in TC_PROGRAMS {
            let prog: &mut SchedClassifier = program(&mut self.ebpf, name)?;
            let netlink = self.netlink;
            let link = ns.run(|| attach_one_tc(prog, &ns.label, iface, attach_type, netlink))??;
            self.tc_links.push((iface.to_string(), name, link));
        }
        Ok(())
    }

    /// Lets go of an interface that went away: its links are closed (the kernel already
    /// took the device's attachments down with it; errors saying so are expected).
    pub fn detach_iface(&mut self, ns: &Netns, iface: &str) {
        let (gone, keep): (TcLinks, TcLinks) = std::mem::take(&mut self.tc_links)
            .into_iter()
            .partition(|(i, _, _)| i == iface);
        self.tc_links = keep;
        for (_, name, link) in gone {
            let Ok(prog) = program::<SchedClassifier>(&mut self.ebpf, name) else {
                continue;
            };
            if let Ok(Err(e)) = ns.run(|| prog.detach(link)) {
                log::debug!("detaching {name} from {iface}: {e}");
            }
        }
    }

    /// Records the programs could not write because the ring buffer was full.
    pub fn lost(&self) -> Result<u64> {
        self.counter(COUNTER_LOST)
    }

    fn counter(&self, index: u32) -> Result<u64> {
        let counters: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("COUNTERS").context("map COUNTERS missing")?)?;
        Ok(counters.get(&index, 0)?.iter().sum())
    }

    /// Every hop the kernel counts now, with the creation and budget counters.
    pub fn hop_counts(&self) -> Result<HopCounts> {
        let map: BpfHashMap<_, HopKey, HopCount> =
            BpfHashMap::try_from(self.ebpf.map("HOPS").context("map HOPS missing")?)?;
        let hops = map.iter().filter_map(Result::ok).collect();
        Ok(HopCounts {
            hops,
            created: self.counter(COUNTER_HOP_NEW)?,
        })
    }

    /// Forgets the counts of hops whose flows were summarised, so the map holds live flows
    /// only. Returns how many entries were still there to delete.
    pub fn forget_hops(&mut self, keys: &[HopKey]) -> Result<u64> {
        let mut map: BpfHashMap<_, HopKey, HopCount> =
            BpfHashMap::try_from(self.ebpf.map_mut("HOPS").context("map HOPS missing")?)?;
        Ok(keys.iter().filter(|k| map.remove(k).is_ok()).count() as u64)
    }

    /// Detaches everything from inside the traced namespace (netlink-attached filters must
    /// be removed from there) by dropping the programs on a thread in it.
    pub fn detach(self, ns: &Netns) -> Result<()> {
        let ebpf = self.ebpf;
        ns.run(move || drop(ebpf))
    }
}

type TcLinks = Vec<(String, &'static str, SchedClassifierLinkId)>;

const TC_PROGRAMS: [(&str, TcAttachType); 2] = [
    ("meridio_tc_in", TcAttachType::Ingress),
    ("meridio_tc_out", TcAttachType::Egress),
];

/// Attaches both TC programs to every interface; returns the interfaces whose clsact
/// qdisc is ours to remove at exit, and the links. Everything that happens inside the
/// namespace happens on one thread that entered it once: entering it per attachment cost
/// more than the attachments.
fn attach_tc(
    ebpf: &mut Ebpf,
    req: &Request,
    netlink: bool,
    ready: &mut Ready,
) -> Result<(Vec<String>, TcLinks)> {
    let prepared: Vec<(usize, bool)> = req.netns.run(|| {
        req.interfaces
            .iter()
            .map(|iface| {
                let removed = remove_leftovers(iface);
                // EEXIST (someone's clsact already there) is fine: we add filters to it.
                let created = netlink && aya::programs::tc::qdisc_add_clsact(iface).is_ok();
                (removed, created)
            })
            .collect()
    })?;
    // The ingress and egress programs are loaded and attached side by side, one thread
    // each: verification is most of a site's start-up and runs on the loading thread's
    // CPU, and each TCX attachment waits for an RCU grace period in the kernel
    // (milliseconds on a busy node), so the waits overlap too.
    let mut programs: Vec<(&str, &mut aya::programs::Program)> = ebpf
        .programs_mut()
        .filter(|(name, _)| TC_PROGRAMS.iter().any(|(n, _)| n == name))
        .collect();
    let attached: Vec<Result<TcLinks>> = std::thread::scope(|scope| {
        let threads: Vec<_> = programs
            .iter_mut()
            .map(|(name, prog)| {
                let (name, attach_type) = *TC_PROGRAMS
                    .iter()
                    .find(|(n, _)| n == name)
                    .expect("filtered above");
                scope.spawn(move || -> Result<TcLinks> {
                    let prog = load_tc(name, prog)?;
                    req.netns.run(|| {
                        req.interfaces
                            .iter()
                            .map(|iface| {
                                let link = attach_one_tc(
                                    prog,
                                    &req.netns.label,
                                    iface,
                                    attach_type,
                                    netlink,
                                )?;
                                Ok((iface.clone(), name, link))
                            })
                            .collect()
                    })?
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("an attach thread panicked")))
            })
            .collect()
    });
    let mut links = Vec::new();
    for a in attached {
        links.extend(a?);
    }
    let mut owned_clsact = Vec::new();
    for (iface, (removed, created)) in req.interfaces.iter().zip(prepared) {
        if removed > 0 {
            ready.notes.push(format!(
                "removed {removed} tc filter(s) an earlier, killed run left on {iface}"
            ));
        }
        // A clsact found holding our leftovers was that run's: ours to clean up now.
        if created || removed > 0 {
            owned_clsact.push(iface.clone());
        }
    }
    let mode = if netlink { "netlink clsact" } else { "tcx" };
    for (iface, name, _) in &links {
        let attach_type = TC_PROGRAMS.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
        if let Some(t) = attach_type {
            ready
                .hooks
                .push(format!("tc:{iface}/{} ({mode})", dir_name(t)));
        }
    }
    Ok((owned_clsact, links))
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
