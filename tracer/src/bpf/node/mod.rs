//! The node object: the hooks every namespace on the node shares (route lookups,
//! multipath hash, `kfree_skb`), attached once per node, and the maps every object shares
//! (see [`share`]): the per-hop counts, the counters and the traced namespaces are read
//! here, for every site at once. What the hooks report is tagged with the site whose
//! packet it concerns: the TC programs put the packet's site in `LAST_INGRESS`, and the
//! drop program finds it by netns inode in `NETNS_INUMS`.
use std::{collections::HashMap, net::IpAddr, path::Path};

use anyhow::{Context, Result};
use aya::{maps::MapData, Btf, Ebpf, EbpfLoader};

use super::{
    drop, fib, hash,
    object::Globals,
    offsets::kernel_offsets,
    options::{FibHook, HashHook, HookFamily, RecordBudget},
    ready::{not_asked, Ready},
    share,
};

mod ifaces;
mod maps;

pub use ifaces::TracedIface;

/// Where the TC programs are loaded. The node object keeps it for every site: the first
/// site to load decides.
pub enum TcObjects {
    /// No site is traced yet: the first one to load decides.
    NotLoaded,
    /// One object for every site.
    Shared(Ebpf),
    /// One object per site, and why not one for all.
    PerSite(String),
}

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

pub struct NodeProbes {
    ebpf: Ebpf,
    /// The node-wide hooks attached, refused and unavailable; added to every site's.
    pub ready: Ready,
    /// What the loader did beyond attaching (told once, with the first site).
    pub notes: Vec<String>,
    /// `enum skb_drop_reason` names of this kernel.
    pub drop_reasons: HashMap<u32, String>,
    /// The run's own pin directory in bpffs (removed when this is dropped).
    bpffs: share::PinDir,
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
            fib::attach(ebpf, ready, req.fib_hook);
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
            hash::attach(ebpf, req.hash_hook, btf, ready);
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
        self.drop_reasons = if asked(HookFamily::Drop) {
            drop::attach(ebpf, ready)
        } else {
            not_asked(ready, &["tracepoint:skb/kfree_skb"]);
            Default::default()
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
}
