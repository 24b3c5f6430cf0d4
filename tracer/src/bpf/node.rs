//! The node object: the hooks every namespace on the node shares (route lookups,
//! multipath hash, `kfree_skb`), attached once per node, and the maps every object shares
//! (see [`share`]): the per-hop counts, the counters and the traced namespaces are read
//! here, for every site at once. What the hooks report is tagged with the site whose
//! packet it concerns: the TC programs put the packet's site in `LAST_INGRESS`, and the
//! drop program finds it by netns inode in `NETNS_INUMS`.
use std::{collections::HashMap, net::IpAddr, path::Path, path::PathBuf};

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{FExit, KProbe, RawTracePoint, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use tracer_common::{
    DropOffsets, FibOffsets, FibRawOffsets, HopCount, HopKey, IfaceKey, COUNTER_HOP_NEW,
    COUNTER_LOST, FIELD_ABSENT,
};

use super::{
    not_asked, program, refused, share, tc::TcObjects, FibHook, Globals, HashHook, HookFamily,
    Ready, RecordBudget, NO_DROP_REASON,
};
use crate::{bpf::btf_layout::Layout, bpf::tracefs, netns::Netns};

pub struct NodeRequest<'a> {
    pub vips: &'a [IpAddr],
    pub client_port: Option<u16>,
    pub budget: RecordBudget,
    pub fib_hook: FibHook,
    /// Which hooks may read the kernel's multipath hash.
    pub hash_hook: HashHook,
    /// Hook families to load (`--hooks`).
    pub hooks: &'a [HookFamily],
    /// Entries of the in-kernel per-hop counter map, shared by every site.
    pub hop_entries: u32,
}

/// The in-kernel per-hop counters of every site, as read at one moment.
#[derive(Debug, Default, Clone)]
pub struct HopCounts {
    pub hops: Vec<(HopKey, HopCount)>,
    /// Entries the LRU map evicted because it was full: created, less those deleted and
    /// those still there.
    pub evicted: u64,
}

pub struct NodeProbes {
    ebpf: Ebpf,
    /// The node-wide hooks attached, refused and unavailable; added to every site's.
    pub ready: Ready,
    /// What the loader did beyond attaching (told once, with the first site).
    pub notes: Vec<String>,
    /// `enum skb_drop_reason` names of this kernel.
    pub drop_reasons: HashMap<u32, String>,
    bpffs: PathBuf,
    /// Handles on the maps every object shares, in `share::SHARED_MAPS` order.
    shared: Vec<MapData>,
    /// The TC programs: one object for every site, or one per site.
    pub(super) tc: TcObjects,
    /// Counter-map entries this run deleted (flows that ended).
    hops_forgotten: u64,
}

impl NodeProbes {
    /// Loads the node object's maps; its hooks are attached by `attach_hooks`.
    pub fn load(req: &NodeRequest) -> Result<NodeProbes> {
        let mut notes = Vec::new();
        let bpffs = share::bpffs(&mut notes)?;
        let stale = share::remove_stale(&bpffs);
        if stale > 0 {
            notes.push(format!(
                "removed {stale} pinned map(s) an earlier, killed run left in {}",
                bpffs.display()
            ));
        }
        let globals = Globals::new(req.vips, req.client_port.unwrap_or(0), req.budget, 0);
        let ebpf = globals.load(|loader| {
            loader.map_max_entries("HOPS", req.hop_entries);
        })?;
        let shared = share::SHARED_MAPS
            .iter()
            .map(|name| {
                ebpf.map(name)
                    .with_context(|| format!("map {name} missing"))
                    .and_then(share::handle)
            })
            .collect::<Result<_>>()?;
        Ok(NodeProbes {
            shared,
            ebpf,
            ready: Ready::default(),
            notes,
            drop_reasons: HashMap::new(),
            bpffs,
            tc: TcObjects::NotLoaded,
            hops_forgotten: 0,
        })
    }

    /// Attaches the node-wide hooks asked for; what the kernel refuses is listed in
    /// `ready`, not fatal.
    pub fn attach_hooks(&mut self, req: &NodeRequest) {
        let (ebpf, ready) = (&mut self.ebpf, &mut self.ready);
        let asked = |f: HookFamily| req.hooks.contains(&f);
        // aya's parse of the whole kernel BTF (25 ms and 20 MB here), needed only to try
        // fexit: on a thread of its own while the route lookup hooks attach, once our own
        // read of the BTF (`kernel_offsets`, for the fib and drop programs) is over and its
        // memory freed.
        if asked(HookFamily::Fib) || asked(HookFamily::Drop) {
            kernel_offsets();
        }
        let fexit_btf = (asked(HookFamily::Hash)
            && matches!(req.hash_hook, HashHook::Auto | HashHook::Fexit))
        .then(|| {
            std::thread::spawn(|| Btf::from_sys_fs().map_err(|e| format!("no kernel BTF ({e})")))
        });
        if asked(HookFamily::Fib) {
            attach_fib(ebpf, ready, req.fib_hook);
        } else {
            not_asked(
                ready,
                &[
                    "raw_tracepoint:fib_table_lookup",
                    "raw_tracepoint:fib6_table_lookup",
                ],
            );
        }
        if asked(HookFamily::Hash) {
            let btf = match fexit_btf.map(|t| t.join()) {
                Some(Ok(parsed)) => parsed,
                Some(Err(_)) => Err("the kernel BTF parse panicked".into()),
                None => Err("not parsed".into()),
            };
            attach_hash_hooks(ebpf, req.hash_hook, btf, ready);
        } else {
            not_asked(
                ready,
                &[
                    "fexit:fib_multipath_hash",
                    "kretprobe:fib_multipath_hash",
                    "fexit:rt6_multipath_hash",
                    "kretprobe:rt6_multipath_hash",
                ],
            );
        }
        let drop = asked(HookFamily::Drop).then(|| attach_drop(ebpf));
        self.drop_reasons = match drop {
            None => {
                not_asked(ready, &["tracepoint:skb/kfree_skb"]);
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
    }

    /// Loads an object of TC programs whose shared maps are this object's; `load` gets the
    /// step that makes a loader share them.
    pub fn load_sharing(
        &self,
        load: impl FnOnce(&mut dyn FnMut(&mut EbpfLoader)) -> Result<Ebpf>,
    ) -> Result<Ebpf> {
        share::load_sharing(&self.bpffs, &self.shared, load)
    }

    /// Where bpffs is (for the moment a map or program is pinned to be shared).
    pub(super) fn bpffs(&self) -> &Path {
        &self.bpffs
    }

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

    fn counter(&self, index: u32) -> Result<u64> {
        let counters: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("COUNTERS").context("map COUNTERS missing")?)?;
        Ok(counters.get(&index, 0)?.iter().sum())
    }

    /// Every hop the kernel counts now, of every site (`HopKey::site`).
    pub fn hop_counts(&self) -> Result<HopCounts> {
        let map: BpfHashMap<_, HopKey, HopCount> =
            BpfHashMap::try_from(self.ebpf.map("HOPS").context("map HOPS missing")?)?;
        let hops: Vec<_> = map.iter().filter_map(Result::ok).collect();
        let evicted = self
            .counter(COUNTER_HOP_NEW)?
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

    /// Tells the TC programs which interfaces of `site` route (bridge0), or no longer do.
    pub fn set_l3(&mut self, site: u16, ifindexes: &[u32], routed: bool) -> Result<()> {
        let mut map: BpfHashMap<_, IfaceKey, u8> = BpfHashMap::try_from(
            self.ebpf
                .map_mut("L3_IFACES")
                .context("map L3_IFACES missing")?,
        )?;
        for &ifindex in ifindexes {
            let key = IfaceKey {
                ifindex,
                site,
                _pad: 0,
            };
            if routed {
                map.insert(key, 1, 0)?;
            } else {
                let _ = map.remove(&key);
            }
        }
        Ok(())
    }
}

/// `sk_buff.dev`, `net_device.nd_net.net` and `net.ns.inum`: what a TC program shared by
/// every site reads to find a packet's namespace.
pub(super) fn netns_offsets() -> Result<[u16; 3], String> {
    let d = kernel_offsets().drop.clone()?;
    Ok([d.skb_dev, d.dev_nd_net, d.net_ns_inum])
}

/// The netns inode as the kernel's `ns.inum`.
fn inum(ns: &Netns) -> Result<u32> {
    let (_, inode) = ns.id()?;
    u32::try_from(inode).context("netns inode does not fit ns.inum")
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
    set_offsets(ebpf, "FIB_RAW_OFFSETS", 0, offsets)?;
    let prog: &mut RawTracePoint = program(ebpf, prog_name)?;
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
    set_offsets(ebpf, "FIB_OFFSETS", index, offsets)?;
    let prog: &mut TracePoint = program(ebpf, prog_name)?;
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

/// `net_device.nd_net.net`: where a device's namespace is.
fn dev_nd_net(layout: &Layout) -> Result<u16> {
    Ok(layout.offset("net_device", "nd_net")? + layout.offset("possible_net_t", "net")?)
}

/// `net.ns.inum`: the namespace's inode number.
fn net_ns_inum(layout: &Layout) -> Result<u16> {
    Ok(layout.offset("net", "ns")? + layout.offset("ns_common", "inum")?)
}

fn drop_offsets(layout: &Layout) -> Result<DropOffsets> {
    Ok(DropOffsets {
        skb_head: layout.offset("sk_buff", "head")?,
        skb_network_header: layout.offset("sk_buff", "network_header")?,
        skb_transport_header: layout.offset("sk_buff", "transport_header")?,
        skb_dev: layout.offset("sk_buff", "dev")?,
        skb_mark: layout.offset("sk_buff", "mark")?,
        dev_ifindex: layout.offset("net_device", "ifindex")?,
        dev_nd_net: dev_nd_net(layout)?,
        net_ns_inum: net_ns_inum(layout)?,
        ..Default::default()
    })
}

fn fib_raw_offsets(layout: &Layout) -> Result<FibRawOffsets> {
    let common4 = layout.offset("flowi4", "__fl_common")?;
    let common6 = layout.offset("flowi6", "__fl_common")?;
    let iif = layout.offset("flowi_common", "flowic_iif")?;
    let oif = layout.offset("flowi_common", "flowic_oif")?;
    let mark = layout.offset("flowi_common", "flowic_mark")?;
    Ok(FibRawOffsets {
        fl4_iif: common4 + iif,
        fl4_oif: common4 + oif,
        fl4_saddr: layout.offset("flowi4", "saddr")?,
        fl4_daddr: layout.offset("flowi4", "daddr")?,
        fl6_iif: common6 + iif,
        fl6_oif: common6 + oif,
        fl6_saddr: layout.offset("flowi6", "saddr")?,
        fl6_daddr: layout.offset("flowi6", "daddr")?,
        fl4_mark: common4 + mark,
        fl6_mark: common6 + mark,
        nhc_dev: layout.offset("fib_nh_common", "nhc_dev")?,
        nhc_gw_family: layout.offset("fib_nh_common", "nhc_gw_family")?,
        nhc_gw: layout.offset("fib_nh_common", "nhc_gw")?,
        dev_name: layout.offset("net_device", "name")?,
        res_nh: layout.offset("fib6_result", "nh")?,
        res_type: layout.offset("fib6_result", "fib6_type")?,
        f6nh_common: layout.offset("fib6_nh", "nh_common")?,
        tb6_id: layout.offset("fib6_table", "tb6_id")?,
        dev_nd_net: dev_nd_net(layout)?,
        net_ns_inum: net_ns_inum(layout)?,
        valid: 1,
        _pad: 0,
    })
}

/// `skb:kfree_skb`, filtered in the kernel to traced flows in the traced namespaces
/// (`NETNS_INUMS`, filled as sites come and go). Needs
/// the tracepoint's format (field offsets, reason names) and the kernel's BTF (where
/// `sk_buff`, `net_device` and `net` keep the members the program reads). Returns the
/// reason names, or `None` on a kernel whose tracepoint has no `reason` (before 5.17).
fn attach_drop(ebpf: &mut Ebpf) -> Result<Option<HashMap<u32, String>>> {
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
    set_offsets(ebpf, "DROP_OFFSETS", 0, offsets)?;
    let prog: &mut TracePoint = program(ebpf, "meridio_drop")?;
    prog.load()
        .map_err(|e| refused("the tracepoint program", "meridio_drop", &e))?;
    prog.attach("skb", "kfree_skb").context("attach failed")?;
    Ok(has_reason.then(|| tracefs::drop_reasons(&text)))
}

/// The kernel's multipath hash functions, in order of preference (fexit, then
/// kretprobe): where the kernel allows either, the tracer knows the hash the kernel used
/// instead of inferring it. Each failure is reported with the kernel's reason; without them
/// the next-hop still comes from the routed frame, and the prediction from the skb hash.
fn attach_hash_hooks(
    ebpf: &mut Ebpf,
    choice: HashHook,
    btf: Result<Btf, String>,
    ready: &mut Ready,
) {
    const HOOKS: [(&str, &str, &str); 2] = [
        ("meridio_mph4", "meridio_mph4_kr", "fib_multipath_hash"),
        ("meridio_mph6", "meridio_mph6_kr", "rt6_multipath_hash"),
    ];
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
            Err(why) => ready.refused.push((format!("fexit:{func}"), why)),
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
    let prog: &mut FExit = program(ebpf, name)?;
    prog.load(func, btf)
        .map_err(|e| refused("the fexit program", name, &e))?;
    prog.attach().context("attach failed")?;
    Ok(())
}

fn attach_kretprobe(ebpf: &mut Ebpf, name: &str, func: &str) -> Result<()> {
    let prog: &mut KProbe = program(ebpf, name)?;
    prog.load()
        .map_err(|e| refused("the kretprobe program", name, &e))?;
    prog.attach(func, 0).context("attach failed")?;
    Ok(())
}

/// Writes the kernel offsets a program reads into its offsets map, at `index`.
fn set_offsets<T: aya::Pod>(ebpf: &mut Ebpf, map: &str, index: u32, offsets: T) -> Result<()> {
    let mut array: Array<_, T> = Array::try_from(
        ebpf.map_mut(map)
            .with_context(|| format!("map {map} missing"))?,
    )?;
    array.set(index, offsets, 0)?;
    Ok(())
}
