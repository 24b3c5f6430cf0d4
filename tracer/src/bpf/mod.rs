//! Loading the eBPF object and attaching its programs, and what that needs to know of the
//! running kernel: struct member offsets ([`btf_layout`]) and tracepoint record layouts
//! ([`tracefs`]).
//!
//! The same object is loaded more than once, each copy with a job of its own:
//!
//! - one **node object** ([`node::NodeProbes`]) holds the node-wide hooks: the route
//!   lookups, the multipath hash and `kfree_skb`. Those fire for every namespace on the
//!   node, so they are attached once per node, whatever the number of traced namespaces,
//!   and tag what they report with the site (traced namespace) it belongs to;
//! - the **TC programs** ([`tc`]) on the traced namespaces' interfaces: one object for
//!   every site where the kernel lets them find a packet's namespace, else one object per
//!   site. They share the node object's maps (see [`share`]): `LAST_INGRESS` (how a route
//!   lookup finds the traced packet it routes), the one ring buffer `EVENTS`, and the
//!   per-hop counts, which userspace reads from the node object for every site at once.
//!
//! All or nothing for the TC side: if any interface cannot be attached, everything already
//! attached is detached before the error is returned. The node-wide hooks are best effort:
//! without them the tracer still names the next-hop from the wire, and says what it lacks.
//! TCX links (kernel >= 6.6) are file descriptors owned by the objects: they disappear with
//! the process, also when it is killed, so nothing of ours can be left on an interface.
use std::{collections::HashSet, net::IpAddr, sync::Mutex};

use anyhow::{anyhow, Context, Result};
use aya::{maps::HashMap as BpfHashMap, Ebpf, EbpfLoader};
use tracer_common::{BUDGET_ALL, INLINE_VIPS};

use crate::events::vip_key;

pub mod btf_layout;
mod node;
mod share;
mod tc;
pub mod tracefs;

pub use node::{NodeProbes, NodeRequest};
pub use tc::{Probes, Request};

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

impl Ready {
    /// Adds what the node object attached: the node-wide hooks serve every site.
    pub fn add_node_hooks(&mut self, node: &Ready) {
        self.hooks.extend(node.hooks.iter().cloned());
        self.refused.extend(node.refused.iter().cloned());
        self.unavailable.extend(node.unavailable.iter().cloned());
        self.notes.extend(node.notes.iter().cloned());
    }
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

/// The tracer's hook families, as `--hooks` names them.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookFamily {
    Tc,
    Fib,
    Drop,
    Hash,
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

/// How often the TC programs are loaded (`--tc-programs`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcPrograms {
    /// Once for every site where the kernel allows it, else once per site.
    Auto,
    /// Once per site.
    PerNamespace,
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

/// The read-only globals of the eBPF object (see its `CLIENT_PORT`, `RECORD_BUDGET`,
/// `VIP*` and `SITE` statics): constants for the verifier, no map lookup per packet.
struct Globals {
    /// The VIPs, each once.
    vips: Vec<IpAddr>,
    client_port: u16,
    budget: u32,
    vip4: [u32; INLINE_VIPS],
    vip4_count: u32,
    vip6: [[u64; 2]; INLINE_VIPS],
    vip6_count: u32,
    vips_in_map: u8,
    /// The site number of an object of one site's TC programs; 0 for the node object and
    /// for the TC programs every site shares.
    site: u16,
    /// Where a device's namespace is (see the object's `NETNS_OFFSETS`), for the shared TC
    /// programs.
    netns_offsets: [u16; 3],
    /// Frame bytes the TC programs copy per record (`--pcap`), 0 for none.
    snap_len: u32,
}

impl Globals {
    fn new(vips: &[IpAddr], client_port: u16, budget: RecordBudget, site: u16) -> Globals {
        let mut seen = HashSet::new();
        let vips: Vec<IpAddr> = vips.iter().copied().filter(|v| seen.insert(*v)).collect();
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
            site,
            netns_offsets: [0; 3],
            snap_len: 0,
            vips,
        };
        for (slot, v) in g.vip4.iter_mut().zip(&v4) {
            *slot = *v;
        }
        for (slot, v) in g.vip6.iter_mut().zip(&v6) {
            *slot = *v;
        }
        g
    }

    /// Loads one copy of the object with these globals (programs are loaded later, each
    /// when it is attached), and fills the VIP map when the VIPs do not fit inline.
    /// `configure` sets what differs between the node object and a site object.
    ///
    /// The globals are leaked (some hundred bytes per load, a few loads per run):
    /// the process's one loader (`LOADER`) keeps references to them until the next load
    /// overrides them.
    fn load(self, configure: impl FnOnce(&mut EbpfLoader<'static>)) -> Result<Ebpf> {
        let g: &'static Globals = Box::leak(Box::new(self));
        let mut slot = LOADER
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let loader = slot.get_or_insert_with(|| {
            let mut loader = EbpfLoader::new();
            // No kernel BTF for the loader: the programs read kernel structs at offsets the
            // node object works out once (see `node::kernel_offsets`), never through CO-RE
            // relocations. Dropped here, right after the one parse `new()` makes.
            loader.btf(None);
            loader
        });
        loader
            .override_global("CLIENT_PORT", &g.client_port, true)
            .override_global("RECORD_BUDGET", &g.budget, true)
            .override_global("VIP4", &g.vip4, true)
            .override_global("VIP4_COUNT", &g.vip4_count, true)
            .override_global("VIP6", &g.vip6, true)
            .override_global("VIP6_COUNT", &g.vip6_count, true)
            .override_global("VIPS_IN_MAP", &g.vips_in_map, true)
            .override_global("SITE", &g.site, true)
            .override_global("NETNS_OFFSETS", &g.netns_offsets, true)
            .override_global("SNAP_LEN", &g.snap_len, true);
        configure(loader);
        let mut ebpf = loader.load(OBJECT).map_err(|e| {
            anyhow!("the kernel refused the tracer's eBPF maps ({e}); a kernel >= 5.8 with BPF ring buffers is needed")
        })?;
        drop(slot);
        if g.vips_in_map != 0 {
            let mut map: BpfHashMap<_, [u8; 16], u8> =
                BpfHashMap::try_from(ebpf.map_mut("VIPS").context("map VIPS missing")?)?;
            for vip in &g.vips {
                map.insert(vip_key(*vip), 1, 0)?;
            }
        }
        Ok(ebpf)
    }
}

/// The process's one aya loader, made on first use. `EbpfLoader::new()` parses the kernel
/// BTF each time it is called (35 ms and 20 MB at the peak here), and the tracer
/// loads the object once for the node and once for the TC programs (or once per traced
/// namespace). What a load sets on the loader (globals, `HOPS` size, pin paths of the
/// shared maps) stays set for the next one: every load of TC programs sets the same names,
/// and the node object, which must pin nothing, is loaded before any of them
/// (`NodeProbes::load`).
static LOADER: Mutex<Option<EbpfLoader<'static>>> = Mutex::new(None);

/// One sentence for a program the kernel would not load; the verifier log, which can run to
/// thousands of lines, goes to the debug log (`RUST_LOG=debug`) instead.
fn refused(what: &str, name: &str, e: &aya::programs::ProgramError) -> anyhow::Error {
    let text = e.to_string();
    log::debug!("{name}: {text}");
    let first = text.lines().next().unwrap_or_default();
    let first = first.split(". Verifier output").next().unwrap_or(first);
    anyhow!("the kernel refused to load {what} {name}: {first}")
}

/// The program `name` of the object, as its type.
pub(super) fn program<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing"))?;
    Ok(prog.try_into()?)
}
