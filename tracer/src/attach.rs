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
        FExit, KProbe, LinkOrder, SchedClassifier, TcAttachType, TracePoint,
    },
    util::KernelVersion,
    Btf, Ebpf,
};
use tracer_common::{Config, DropOffsets, FibOffsets, COUNTER_LOST, FIELD_ABSENT};

use crate::{btf_layout::Layout, events::vip_key, netns::Netns, tracefs};

static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("TRACER_EBPF_OBJECT"));

/// What the loader attached and could not attach, for the ready line/record.
#[derive(Debug, Clone, Default)]
pub struct Ready {
    pub netns: String,
    /// What the namespace is on the path: proxy, frontend or target.
    pub role: &'static str,
    pub vips: Vec<IpAddr>,
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
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| {
            anyhow!("the kernel refused the tracer's eBPF maps ({e}); a kernel >= 5.8 with BPF ring buffers is needed")
        })?;
        let mut ready = Ready {
            netns: req.netns.label.clone(),
            role: req.role,
            vips: req.vips.to_vec(),
            client_port: req.client_port,
            interfaces: req.interfaces.to_vec(),
            ..Default::default()
        };

        let mut vips: BpfHashMap<_, [u8; 16], u8> =
            BpfHashMap::try_from(ebpf.map_mut("VIPS").context("map VIPS missing")?)?;
        for vip in req.vips.iter().collect::<HashSet<_>>() {
            vips.insert(vip_key(*vip), 1, 0)?;
        }
        let mut l3: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(ebpf.map_mut("L3_IFACES").context("map L3_IFACES missing")?)?;
        for ifindex in req.l3_ifindexes {
            l3.insert(ifindex, 1, 0)?;
        }
        let mut config: Array<_, Config> =
            Array::try_from(ebpf.map_mut("CONFIG").context("map CONFIG missing")?)?;
        config.set(
            0,
            Config {
                client_port: req.client_port.unwrap_or(0),
                _pad: [0; 6],
            },
            0,
        )?;

        let netlink = match req.mode {
            AttachMode::Auto => !tcx_available(),
            AttachMode::Tcx if !tcx_available() => {
                anyhow::bail!("--attach tcx needs a kernel >= 6.6; use --attach netlink")
            }
            AttachMode::Tcx => false,
            AttachMode::Netlink => true,
        };
        let (owned_clsact, tc_links) = attach_tc(&mut ebpf, req, netlink, &mut ready)?;
        attach_fib(&mut ebpf, &mut ready);
        attach_hash_hooks(&mut ebpf, req.hash_hook, &mut ready);
        let drop_reasons = match attach_drop(&mut ebpf, req.netns) {
            Ok(Some(reasons)) => {
                ready.hooks.push("tracepoint:skb/kfree_skb".into());
                reasons
            }
            Ok(None) => {
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
            Err(e) => {
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
        let counters: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("COUNTERS").context("map COUNTERS missing")?)?;
        Ok(counters.get(&COUNTER_LOST, 0)?.iter().sum())
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

/// The fib tracepoints: offsets from tracefs, then load and attach. Failures are recorded
/// in `ready.refused`, not fatal.
fn attach_fib(ebpf: &mut Ebpf, ready: &mut Ready) {
    let tracefs = match tracefs::ensure_mounted() {
        Ok(p) => p,
        Err(e) => {
            for tp in ["fib/fib_table_lookup", "fib6/fib6_table_lookup"] {
                ready
                    .refused
                    .push((format!("tracepoint:{tp}"), e.to_string()));
            }
            return;
        }
    };
    for (index, prog_name, category, event) in [
        (0u32, "meridio_fib4", "fib", "fib_table_lookup"),
        (1u32, "meridio_fib6", "fib6", "fib6_table_lookup"),
    ] {
        let hook = format!("tracepoint:{category}/{event}");
        match attach_one_fib(ebpf, &tracefs, index, prog_name, category, event) {
            Ok(()) => ready.hooks.push(hook),
            Err(e) => ready.refused.push((hook, format!("{e:#}"))),
        }
    }
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

/// The `sk_buff`, `net_device` and `net` member offsets the drop program reads, from the
/// kernel's BTF. Worked out once per process (every traced namespace shares the kernel);
/// the parsed BTF itself is dropped straight away, it is large.
fn kernel_struct_offsets() -> Result<DropOffsets> {
    static OFFSETS: std::sync::OnceLock<Result<DropOffsets, String>> = std::sync::OnceLock::new();
    let compute = || -> Result<DropOffsets> {
        let layout = Layout::from_sys_fs()?;
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
    };
    OFFSETS
        .get_or_init(|| compute().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!("{e}"))
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
        ..kernel_struct_offsets()?
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
