//! The eBPF object: loading a copy of it with its read-only globals set, and finding its
//! programs by name.
use std::{collections::HashSet, net::IpAddr, sync::Mutex};

use anyhow::{anyhow, Context, Result};
use aya::{maps::HashMap as BpfHashMap, util::KernelVersion, Ebpf, EbpfLoader};
use tracer_common::INLINE_VIPS;

use super::options::RecordBudget;
use crate::events::vip_key;

static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("TRACER_EBPF_OBJECT"));

/// The read-only globals of the eBPF object (see its `CLIENT_PORT`, `RECORD_BUDGET`,
/// `VIP*` and `SITE` statics): constants for the verifier, no map lookup per packet.
pub(super) struct Globals {
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
    pub(super) netns_offsets: [u16; 3],
    /// Frame bytes the TC programs copy per record (`--pcap`), 0 for none.
    pub(super) snap_len: u32,
    /// 1: the kernel has the coarse clock (see the object's `COARSE_CLOCK`).
    coarse_clock: u8,
}

impl Globals {
    pub(super) fn new(
        vips: &[IpAddr],
        client_port: u16,
        budget: RecordBudget,
        site: u16,
    ) -> Globals {
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
            coarse_clock: u8::from(coarse_clock()),
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
    pub(super) fn load(self, configure: impl FnOnce(&mut EbpfLoader<'static>)) -> Result<Ebpf> {
        let g: &'static Globals = Box::leak(Box::new(self));
        let mut slot = LOADER
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let loader = slot.get_or_insert_with(|| {
            let mut loader = EbpfLoader::new();
            // No kernel BTF for the loader: the programs read kernel structs at offsets the
            // node object works out once (see `offsets::kernel_offsets`), never through CO-RE
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
            .override_global("SNAP_LEN", &g.snap_len, true)
            .override_global("COARSE_CLOCK", &g.coarse_clock, true);
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

/// Whether the kernel has `bpf_ktime_get_coarse_ns` (5.11). Unknown: no (the precise clock
/// always loads).
fn coarse_clock() -> bool {
    matches!(KernelVersion::current(), Ok(v) if v >= KernelVersion::new(5, 11, 0))
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
pub(super) fn refused(what: &str, name: &str, e: &aya::programs::ProgramError) -> anyhow::Error {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use tracer_common::programs;

    use super::OBJECT;

    /// The loader names programs by `tracer_common::programs`; the eBPF side names them by
    /// function: the built object must hold exactly those.
    #[test]
    fn the_object_holds_exactly_the_named_programs() {
        let object = aya_obj::Object::parse(OBJECT).expect("the built eBPF object parses");
        let found: BTreeSet<&str> = object.programs.keys().map(String::as_str).collect();
        let named: BTreeSet<&str> = programs::ALL.into_iter().collect();
        assert_eq!(found, named);
    }
}
