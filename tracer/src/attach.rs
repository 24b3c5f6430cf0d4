//! Loading the eBPF object, filling its maps and attaching its programs.
//!
//! All or nothing for the TC side: if any interface cannot be attached, everything already
//! attached is detached before the error is returned. The fib tracepoints are best effort:
//! without them the tracer still names the next-hop from the wire, and says what it lacks.
//! TCX links (kernel >= 6.6) are file descriptors owned by [`Probes`]: they disappear with
//! the process, also when it is killed, so nothing of ours can be left on an interface.
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    path::Path,
};

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        tc::{NlOptions, SchedClassifierLinkId, TcAttachOptions},
        FExit, KProbe, LinkOrder, RawTracePoint, SchedClassifier, TcAttachType, TracePoint,
    },
    util::KernelVersion,
    Btf, Ebpf, EbpfLoader,
};
use tracer_common::{
    DropOffsets, FibOffsets, FibRawOffsets, HopCount, HopKey, BUDGET_ALL, COUNTER_HOP_NEW,
    COUNTER_LOST, FIELD_ABSENT, INLINE_VIPS,
};

use crate::{btf_layout::Layout, cli::HookFamily, events::vip_key, netns::Netns, tracefs};

static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("TRACER_EBPF_OBJECT"));

/// What the loader attached and could not attach, for the ready line/record.
#[derive(Debug, Clone, Default)]
pub struct Ready {
    pub netns: String,
    /// What the namespace is on the path: proxy, frontend or target.
    pub role: &'static str,
    pub vips: Vec<IpAddr>,
    /// Where the VIPs came from: "--vip", or "discovery" when none was given.
    pub vips_from: &'static str,
    pub client_port: Option<u16>,
    pub interfaces: Vec<String>,
    /// Hooks attached, e.g. "tc:bridge0/ingress (tcx)", "tracepoint:fib/fib_table_lookup".
    pub hooks: Vec<String>,
    /// Hooks tried and refused by the kernel, with the reason.
    pub refused: Vec<(String, String)>,
    /// Hooks this kernel cannot offer, not tried, with the reason.
    pub unavailable: Vec<(String, String)>,
    /// What the loader did beyond attaching, e.g. removing an earlier run's leftovers.
    pub notes: Vec<String>,
}

pub struct Probes {
    ebpf: Ebpf,
    pub ready: Ready,
    /// `enum skb_drop_reason` names of this kernel.
    pub drop_reasons: HashMap<u32, String>,
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
    pub mode: AttachMode,
    pub vips: &'a [IpAddr],
    pub client_port: Option<u16>,
    pub interfaces: &'a [String],
    /// Ifindexes of the traced interfaces that route (not bridge ports): bridge0.
    pub l3_ifindexes: &'a [u32],
    /// Which hooks may read the kernel's multipath hash.
    pub hash_hook: HashHook,
    /// Packet records per hop: every packet, none (counts only) or the first N.
    pub budget: RecordBudget,
    /// Entries of the in-kernel per-hop counter map.
    pub hop_entries: u32,
    pub fib_hook: FibHook,
    /// Hook families to load (`--hooks`); TC is always loaded.
    pub hooks: &'a [HookFamily],
}

/// Lists hooks `--hooks` left out as unavailable.
fn not_asked(ready: &mut Ready, hooks: &[&str]) {
    for hook in hooks {
        let why = "not asked for (--hooks)".to_string();
        ready.unavailable.push((hook.to_string(), why));
    }
}

/// How many packet records the TC programs write per hop (one flow direction on one
/// interface, and on the routed hop one next-hop). Every packet is counted in the kernel
/// whatever the budget; the first packet of each hop and TCP SYN/FIN/RST are always
/// recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordBudget {
    All,
    First(u32),
}

impl RecordBudget {
    fn global(self) -> u32 {
        match self {
            RecordBudget::All => BUDGET_ALL,
            RecordBudget::First(n) => n.min(BUDGET_ALL - 1),
        }
    }
}

/// The in-kernel counters of one site, as read at one moment.
#[derive(Debug, Default, Clone)]
pub struct HopCounts {
    pub hops: Vec<(HopKey, HopCount)>,
    /// Hop entries the programs created since the start.
    pub created: u64,
}

/// Which hook reads the kernel's multipath hash: the best the kernel allows (fexit, else
/// kretprobe), one of them only (to test each where the kernel has both), or none.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HashHook {
    #[default]
    Auto,
    Fexit,
    Kretprobe,
    None,
}

/// The drop reason name given when the kernel has no drop reasons.
pub const NO_DROP_REASON: &str = "unknown (this kernel has no drop reasons)";

/// How TC programs are attached: TCX links (kernel >= 6.6; file descriptors that vanish
/// with the process) or netlink `clsact` filters (any kernel; they outlive a killed
/// process, so each start removes the ones an earlier run left).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// TCX where the kernel has it, netlink otherwise.
    Auto,
    Tcx,
    Netlink,
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
    pub fn load(req: &Request) -> Result<Probes> {
        let vips: Vec<IpAddr> = {
            let mut seen = HashSet::new();
            req.vips
                .iter()
                .copied()
                .filter(|v| seen.insert(*v))
                .collect()
        };
        let globals = Globals::new(&vips, req.client_port.unwrap_or(0), req.budget);
        let mut loader = EbpfLoader::new();
        loader.map_max_entries("HOPS", req.hop_entries);
        globals.apply(&mut loader);
        let mut ebpf = loader.load(OBJECT).map_err(|e| {
                anyhow!("the kernel refused the tracer's eBPF maps ({e}); a kernel >= 5.8 with BPF ring buffers is needed")
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

        if globals.vips_in_map != 0 {
            let mut map: BpfHashMap<_, [u8; 16], u8> =
                BpfHashMap::try_from(ebpf.map_mut("VIPS").context("map VIPS missing")?)?;
            for vip in &vips {
                map.insert(vip_key(*vip), 1, 0)?;
            }
        }
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
        let (owned_clsact, tc_links) = attach_tc(&mut ebpf, req, netlink, &mut ready)?;
        let asked = |f: HookFamily| req.hooks.contains(&f);
        if asked(HookFamily::Fib) {
            attach_fib(&mut ebpf, &mut ready, req.fib_hook);
        } else {
            not_asked(
                &mut ready,
                &[
                    "raw_tracepoint:fib_table_lookup",
                    "raw_tracepoint:fib6_table_lookup",
                ],
            );
        }
        if asked(HookFamily::Hash) {
            attach_hash_hooks(&mut ebpf, req.hash_hook, &mut ready);
        } else {
            not_asked(
                &mut ready,
                &[
                    "fexit:fib_multipath_hash",
                    "kretprobe:fib_multipath_hash",
                    "fexit:rt6_multipath_hash",
                    "kretprobe:rt6_multipath_hash",
                ],
            );
        }
        let drop = asked(HookFamily::Drop).then(|| attach_drop(&mut ebpf, req.netns));
        let drop_reasons = match drop {
            None => {
                not_asked(&mut ready, &["tracepoint:skb/kfree_skb"]);
                Default::default()
            }
            Some(Ok(Some(reasons))) => {
                ready.hooks.push("tracepoint:skb/kfree_skb".into());
                reasons
            }
            Some(Ok(None)) => {
                ready
                    .hooks
                    .push("tracepoint:skb/kfree_skb (without drop reasons)".into());
                ready.unavailable.push((
                    "drop reasons".into(),
                    "this kernel's skb:kfree_skb has no `reason` field (added in 5.17): \
                     drops are reported with where, not why"
                        .into(),
                ));
                HashMap::from([(0, NO_DROP_REASON.to_string())])
            }
            Some(Err(e)) => {
                ready
                    .refused
                    .push(("tracepoint:skb/kfree_skb".into(), format!("{e:#}")));
                Default::default()
            }
        };
        Ok(Probes {
            ebpf,
            ready,
            drop_reasons,
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
            let prog: &mut SchedClassifier = self
                .ebpf
                .program_mut(name)
                .with_context(|| format!("program {name} missing"))?
                .try_into()?;
            let link = attach_one_tc(prog, ns, iface, attach_type, self.netlink)?;
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
            let Some(Ok(prog)) = self
                .ebpf
                .program_mut(name)
                .map(<&mut SchedClassifier>::try_from)
            else {
                continue;
            };
            if let Ok(Err(e)) = ns.run(|| prog.detach(link)) {
                log::debug!("detaching {name} from {iface}: {e}");
            }
        }
    }

    /// The ring buffer the programs write to; call once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        let map = self.ebpf.take_map("EVENTS").context("map EVENTS missing")?;
        Ok(RingBuf::try_from(map)?)
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

/// The read-only globals of the eBPF object (see its `CLIENT_PORT`, `RECORD_BUDGET` and
/// `VIP*` statics): constants for the verifier, no map lookup per packet.
struct Globals {
    client_port: u16,
    budget: u32,
    vip4: [u32; INLINE_VIPS],
    vip4_count: u32,
    vip6: [[u64; 2]; INLINE_VIPS],
    vip6_count: u32,
    vips_in_map: u8,
}

impl Globals {
    fn new(vips: &[IpAddr], client_port: u16, budget: RecordBudget) -> Globals {
        let v4: Vec<u32> = vips
            .iter()
            .filter_map(|v| match v {
                IpAddr::V4(a) => Some(u32::from_ne_bytes(a.octets())),
                IpAddr::V6(_) => None,
            })
            .collect();
        let v6: Vec<[u64; 2]> = vips
            .iter()
            .filter_map(|v| match v {
                IpAddr::V6(a) => {
                    let o = a.octets();
                    let half = |i: usize| u64::from_ne_bytes(o[i..i + 8].try_into().unwrap());
                    Some([half(0), half(8)])
                }
                IpAddr::V4(_) => None,
            })
            .collect();
        let mut g = Globals {
            client_port,
            budget: budget.global(),
            vip4: [0; INLINE_VIPS],
            vip4_count: v4.len().min(INLINE_VIPS) as u32,
            vip6: [[0; 2]; INLINE_VIPS],
            vip6_count: v6.len().min(INLINE_VIPS) as u32,
            vips_in_map: u8::from(v4.len() > INLINE_VIPS || v6.len() > INLINE_VIPS),
        };
        for (slot, v) in g.vip4.iter_mut().zip(&v4) {
            *slot = *v;
        }
        for (slot, v) in g.vip6.iter_mut().zip(&v6) {
            *slot = *v;
        }
        g
    }

    fn apply<'a>(&'a self, loader: &mut EbpfLoader<'a>) {
        loader
            .override_global("CLIENT_PORT", &self.client_port, true)
            .override_global("RECORD_BUDGET", &self.budget, true)
            .override_global("VIP4", &self.vip4, true)
            .override_global("VIP4_COUNT", &self.vip4_count, true)
            .override_global("VIP6", &self.vip6, true)
            .override_global("VIP6_COUNT", &self.vip6_count, true)
            .override_global("VIPS_IN_MAP", &self.vips_in_map, true);
    }
}

const TC_PROGRAMS: [(&str, TcAttachType); 2] = [
    ("meridio_tc_in", TcAttachType::Ingress),
    ("meridio_tc_out", TcAttachType::Egress),
];

/// Attaches both TC programs to every interface; returns the interfaces whose clsact
/// qdisc is ours to remove at exit, and the links.
fn attach_tc(
    ebpf: &mut Ebpf,
    req: &Request,
    netlink: bool,
    ready: &mut Ready,
) -> Result<(Vec<String>, TcLinks)> {
    let mode = if netlink { "netlink clsact" } else { "tcx" };
    let mut owned_clsact = Vec::new();
    for iface in req.interfaces {
        let (removed, created) = req.netns.run(|| {
            let removed = remove_leftovers(iface);
            // EEXIST (someone's clsact already there) is fine: we add filters to it.
            let created = netlink && aya::programs::tc::qdisc_add_clsact(iface).is_ok();
            (removed, created)
        })?;
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
    let mut links = Vec::new();
    for (name, attach_type) in TC_PROGRAMS {
        let prog: &mut SchedClassifier = ebpf
            .program_mut(name)
            .with_context(|| format!("program {name} missing"))?
            .try_into()?;
        prog.load()
            .map_err(|e| refused("the TC program", name, &e))?;
        for iface in req.interfaces {
            let link = attach_one_tc(prog, req.netns, iface, attach_type, netlink)?;
            links.push((iface.clone(), name, link));
            ready
                .hooks
                .push(format!("tc:{iface}/{} ({mode})", dir_name(attach_type)));
        }
    }
    Ok((owned_clsact, links))
}

fn attach_one_tc(
    prog: &mut SchedClassifier,
    ns: &Netns,
    iface: &str,
    attach_type: TcAttachType,
    netlink: bool,
) -> Result<SchedClassifierLinkId> {
    let options = if netlink {
        TcAttachOptions::Netlink(NlOptions::default())
    } else {
        TcAttachOptions::TcxOrder(LinkOrder::default())
    };
    ns.run(|| prog.attach_with_options(iface, attach_type, options))?
        .with_context(|| {
            format!(
                "cannot attach the TC {} program to {iface} in netns {}",
                dir_name(attach_type),
                ns.label
            )
        })
}

/// One sentence for a program the kernel would not load; the verifier log, which can run to
/// thousands of lines, goes to the debug log (`RUST_LOG=debug`) instead.
fn refused(what: &str, name: &str, e: &aya::programs::ProgramError) -> anyhow::Error {
    let text = e.to_string();
    log::debug!("{name}: {text}");
    let first = text.lines().next().unwrap_or_default();
    let first = first.split(". Verifier output").next().unwrap_or(first);
    anyhow!("the kernel refused to load {what} {name}: {first}")
}

fn dir_name(t: TcAttachType) -> &'static str {
    match t {
        TcAttachType::Ingress => "ingress",
        _ => "egress",
    }
}

/// How the route lookups are hooked (`--fib-hook`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FibHook {
    /// Raw tracepoints where the kernel allows them, else the perf tracepoints.
    Auto,
    /// Only raw tracepoints (the lookup's arguments, read with offsets from BTF).
    Raw,
    /// Only the perf tracepoints (records the kernel formats, offsets from tracefs).
    Tracepoint,
}

/// The fib hooks: raw tracepoints first (the kernel formats nothing for lookups the
/// programs reject), the perf tracepoints as the fallback. Failures are recorded in
/// `ready.refused`, not fatal: the next-hop still comes from the wire.
fn attach_fib(ebpf: &mut Ebpf, ready: &mut Ready, how: FibHook) {
    const HOOKS: [(u32, &str, &str, &str, &str); 2] = [
        (
            0,
            "meridio_fib4_raw",
            "meridio_fib4",
            "fib",
            "fib_table_lookup",
        ),
        (
            1,
            "meridio_fib6_raw",
            "meridio_fib6",
            "fib6",
            "fib6_table_lookup",
        ),
    ];
    let mut perf_needed = Vec::new();
    for (index, raw_prog, perf_prog, category, event) in HOOKS {
        if how == FibHook::Tracepoint {
            perf_needed.push((index, perf_prog, category, event));
            continue;
        }
        let hook = format!("raw_tracepoint:{event}");
        match attach_raw_fib(ebpf, raw_prog, event) {
            Ok(()) => ready.hooks.push(hook),
            Err(e) => {
                ready.refused.push((hook, format!("{e:#}")));
                if how == FibHook::Auto {
                    perf_needed.push((index, perf_prog, category, event));
                }
            }
        }
    }
    if perf_needed.is_empty() {
        return;
    }
    let tracefs = match tracefs::ensure_mounted() {
        Ok(p) => p,
        Err(e) => {
            for (_, _, category, event) in perf_needed {
                ready
                    .refused
                    .push((format!("tracepoint:{category}/{event}"), e.to_string()));
            }
            return;
        }
    };
    for (index, prog_name, category, event) in perf_needed {
        let hook = format!("tracepoint:{category}/{event}");
        match attach_one_fib(ebpf, &tracefs, index, prog_name, category, event) {
            Ok(()) => ready.hooks.push(hook),
            Err(e) => ready.refused.push((hook, format!("{e:#}"))),
        }
    }
}

fn attach_raw_fib(ebpf: &mut Ebpf, prog_name: &str, event: &str) -> Result<()> {
    let offsets = kernel_offsets()
        .fib_raw
        .clone()
        .map_err(|e| anyhow!("{e}"))?;
    let mut map: Array<_, FibRawOffsets> = Array::try_from(
        ebpf.map_mut("FIB_RAW_OFFSETS")
            .context("map FIB_RAW_OFFSETS missing")?,
    )?;
    map.set(0, offsets, 0)?;
    let prog: &mut RawTracePoint = ebpf
        .program_mut(prog_name)
        .with_context(|| format!("program {prog_name} missing"))?
        .try_into()?;
    prog.load()
        .map_err(|e| refused("the raw tracepoint program", prog_name, &e))?;
    prog.attach(event).context("attach failed")?;
    Ok(())
}

fn attach_one_fib(
    ebpf: &mut Ebpf,
    tracefs: &Path,
    index: u32,
    prog_name: &str,
    category: &str,
    event: &str,
) -> Result<()> {
    let format_path = tracefs
        .join("events")
        .join(category)
        .join(event)
        .join("format");
    let text = std::fs::read_to_string(&format_path)
        .with_context(|| format!("cannot read {}", format_path.display()))?;
    let offsets: FibOffsets = tracefs::fib_offsets(&text, index == 1)?;
    let mut map: Array<_, FibOffsets> = Array::try_from(
        ebpf.map_mut("FIB_OFFSETS")
            .context("map FIB_OFFSETS missing")?,
    )?;
    map.set(index, offsets, 0)?;
    let prog: &mut TracePoint = ebpf
        .program_mut(prog_name)
        .with_context(|| format!("program {prog_name} missing"))?
        .try_into()?;
    prog.load()
        .map_err(|e| refused("the tracepoint program", prog_name, &e))?;
    prog.attach(category, event).context("attach failed")?;
    Ok(())
}

/// Kernel struct member offsets the programs read, from the kernel's BTF: worked out once
/// per process (every traced namespace shares the kernel); the parsed BTF itself is dropped
/// straight away, it is large.
struct KernelOffsets {
    /// `sk_buff`, `net_device` and `net`, for the drop program.
    drop: Result<DropOffsets, String>,
    /// `flowi4`, `flowi6`, `fib_nh_common`, `fib6_result`..., for the raw fib programs.
    fib_raw: Result<FibRawOffsets, String>,
}

fn kernel_offsets() -> &'static KernelOffsets {
    static OFFSETS: std::sync::OnceLock<KernelOffsets> = std::sync::OnceLock::new();
    OFFSETS.get_or_init(|| match Layout::from_sys_fs() {
        Ok(layout) => KernelOffsets {
            drop: drop_offsets(&layout).map_err(|e| format!("{e:#}")),
            fib_raw: fib_raw_offsets(&layout).map_err(|e| format!("{e:#}")),
        },
        Err(e) => KernelOffsets {
            drop: Err(format!("{e:#}")),
            fib_raw: Err(format!("{e:#}")),
        },
    })
}

fn drop_offsets(layout: &Layout) -> Result<DropOffsets> {
    Ok(DropOffsets {
        skb_head: layout.offset("sk_buff", "head")?,
        skb_network_header: layout.offset("sk_buff", "network_header")?,
        skb_transport_header: layout.offset("sk_buff", "transport_header")?,
        skb_dev: layout.offset("sk_buff", "dev")?,
        skb_mark: layout.offset("sk_buff", "mark")?,
        dev_ifindex: layout.offset("net_device", "ifindex")?,
        dev_nd_net: layout.offset("net_device", "nd_net")?
            + layout.offset("possible_net_t", "net")?,
        net_ns_inum: layout.offset("net", "ns")? + layout.offset("ns_common", "inum")?,
        ..Default::default()
    })
}

fn fib_raw_offsets(layout: &Layout) -> Result<FibRawOffsets> {
    let common4 = layout.offset("flowi4", "__fl_common")?;
    let common6 = layout.offset("flowi6", "__fl_common")?;
    let iif = layout.offset("flowi_common", "flowic_iif")?;
    let oif = layout.offset("flowi_common", "flowic_oif")?;
    Ok(FibRawOffsets {
        fl4_iif: common4 + iif,
        fl4_oif: common4 + oif,
        fl4_saddr: layout.offset("flowi4", "saddr")?,
        fl4_daddr: layout.offset("flowi4", "daddr")?,
        fl6_iif: common6 + iif,
        fl6_oif: common6 + oif,
        fl6_saddr: layout.offset("flowi6", "saddr")?,
        fl6_daddr: layout.offset("flowi6", "daddr")?,
        nhc_dev: layout.offset("fib_nh_common", "nhc_dev")?,
        nhc_gw_family: layout.offset("fib_nh_common", "nhc_gw_family")?,
        nhc_gw: layout.offset("fib_nh_common", "nhc_gw")?,
        dev_name: layout.offset("net_device", "name")?,
        res_nh: layout.offset("fib6_result", "nh")?,
        res_type: layout.offset("fib6_result", "fib6_type")?,
        f6nh_common: layout.offset("fib6_nh", "nh_common")?,
        tb6_id: layout.offset("fib6_table", "tb6_id")?,
        valid: 1,
        _pad: 0,
    })
}

/// `skb:kfree_skb`, filtered in the kernel to traced flows in the traced namespace. Needs
/// the tracepoint's format (field offsets, reason names) and the kernel's BTF (where
/// `sk_buff`, `net_device` and `net` keep the members the program reads). Returns the
/// reason names, or `None` on a kernel whose tracepoint has no `reason` (before 5.17).
fn attach_drop(ebpf: &mut Ebpf, ns: &Netns) -> Result<Option<HashMap<u32, String>>> {
    let tracefs = tracefs::ensure_mounted()?;
    let format_path = tracefs.join("events/skb/kfree_skb/format");
    let text = std::fs::read_to_string(&format_path)
        .with_context(|| format!("cannot read {}", format_path.display()))?;
    let fields = tracefs::parse_format(&text);
    let has_reason = fields.contains_key("reason");
    let offsets = DropOffsets {
        tp_skbaddr: tracefs::field(&fields, "skbaddr", 8)?,
        tp_location: tracefs::field(&fields, "location", 8)?,
        tp_protocol: tracefs::field(&fields, "protocol", 2)?,
        tp_reason: if has_reason {
            tracefs::field(&fields, "reason", 4)?
        } else {
            FIELD_ABSENT
        },
        valid: 1,
        ..kernel_offsets().drop.clone().map_err(|e| anyhow!("{e}"))?
    };
    let (_, inode) = ns.id()?;
    let inum = u32::try_from(inode).context("netns inode does not fit ns.inum")?;
    let mut inums: BpfHashMap<_, u32, u8> = BpfHashMap::try_from(
        ebpf.map_mut("NETNS_INUMS")
            .context("map NETNS_INUMS missing")?,
    )?;
    inums.insert(inum, 1, 0)?;
    let mut map: Array<_, DropOffsets> = Array::try_from(
        ebpf.map_mut("DROP_OFFSETS")
            .context("map DROP_OFFSETS missing")?,
    )?;
    map.set(0, offsets, 0)?;
    let prog: &mut TracePoint = ebpf
        .program_mut("meridio_drop")
        .context("program meridio_drop missing")?
        .try_into()?;
    prog.load()
        .map_err(|e| refused("the tracepoint program", "meridio_drop", &e))?;
    prog.attach("skb", "kfree_skb").context("attach failed")?;
    Ok(has_reason.then(|| tracefs::drop_reasons(&text)))
}

/// The kernel's multipath hash functions, in order of preference (fexit, then
/// kretprobe): where the kernel allows either, the tracer knows the hash the kernel used
/// instead of inferring it. Each failure is reported with the kernel's reason; without them
/// the next-hop still comes from the routed frame, and the prediction from the skb hash.
fn attach_hash_hooks(ebpf: &mut Ebpf, choice: HashHook, ready: &mut Ready) {
    const HOOKS: [(&str, &str, &str); 2] = [
        ("meridio_mph4", "meridio_mph4_kr", "fib_multipath_hash"),
        ("meridio_mph6", "meridio_mph6_kr", "rt6_multipath_hash"),
    ];
    // The kernel answers the same for every namespace: once fexit was refused, later sites
    // report that refusal without parsing the (large) kernel BTF again.
    static FEXIT_REFUSED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let btf = match FEXIT_REFUSED.get() {
        Some(why) => Err(why.clone()),
        None => Btf::from_sys_fs().map_err(|e| format!("no kernel BTF ({e})")),
    };
    let kprobes_built_in = [
        "/sys/kernel/tracing/kprobe_events",
        "/sys/kernel/debug/tracing/kprobe_events",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    for (fexit_name, kret_name, func) in HOOKS {
        if choice == HashHook::None {
            for kind in ["fexit", "kretprobe"] {
                ready.unavailable.push((
                    format!("{kind}:{func}"),
                    "not tried (--hash-hook none)".into(),
                ));
            }
            continue;
        }
        let fexit = match &btf {
            _ if choice == HashHook::Kretprobe => Err("not tried (--hash-hook kretprobe)".into()),
            Ok(btf) => attach_fexit(ebpf, fexit_name, func, btf).map_err(|e| format!("{e:#}")),
            Err(why) => Err(why.clone()),
        };
        match fexit {
            Ok(()) => {
                ready.hooks.push(format!("fexit:{func}"));
                continue;
            }
            Err(why) if choice == HashHook::Kretprobe => {
                ready.unavailable.push((format!("fexit:{func}"), why));
            }
            Err(why) => {
                let _ = FEXIT_REFUSED.get_or_init(|| format!("as for the first namespace: {why}"));
                ready.refused.push((format!("fexit:{func}"), why));
            }
        }
        if choice == HashHook::Fexit {
            ready.unavailable.push((
                format!("kretprobe:{func}"),
                "not tried (--hash-hook fexit)".into(),
            ));
            continue;
        }
        if !kprobes_built_in {
            ready.unavailable.push((
                format!("kretprobe:{func}"),
                "this kernel is built without kprobes (no kprobe_events in tracefs)".into(),
            ));
            continue;
        }
        match attach_kretprobe(ebpf, kret_name, func) {
            Ok(()) => ready.hooks.push(format!("kretprobe:{func}")),
            Err(e) => ready
                .refused
                .push((format!("kretprobe:{func}"), format!("{e:#}"))),
        }
    }
}

fn attach_fexit(ebpf: &mut Ebpf, name: &str, func: &str, btf: &Btf) -> Result<()> {
    let prog: &mut FExit = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing"))?
        .try_into()?;
    prog.load(func, btf)
        .map_err(|e| refused("the fexit program", name, &e))?;
    prog.attach().context("attach failed")?;
    Ok(())
}

fn attach_kretprobe(ebpf: &mut Ebpf, name: &str, func: &str) -> Result<()> {
    let prog: &mut KProbe = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing"))?
        .try_into()?;
    prog.load()
        .map_err(|e| refused("the kretprobe program", name, &e))?;
    prog.attach(func, 0).context("attach failed")?;
    Ok(())
}
