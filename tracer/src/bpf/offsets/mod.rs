//! Kernel struct member offsets the programs read, from the running kernel's BTF
//! ([`btf_layout`]), and how they are handed to the programs (an offsets map).
use anyhow::{Context, Result};
use aya::{maps::Array, Ebpf};
use tracer_common::{DropOffsets, FibRawOffsets};

use btf_layout::Layout;

pub mod btf_layout;

/// `sk_buff.dev`, `net_device.nd_net.net` and `net.ns.inum`: what a TC program shared by
/// every site reads to find a packet's namespace.
pub(in crate::bpf) fn netns_offsets() -> Result<[u16; 3], String> {
    let d = kernel_offsets().drop.clone()?;
    Ok([d.skb_dev, d.dev_nd_net, d.net_ns_inum])
}

/// Kernel struct member offsets the programs read, from the kernel's BTF: worked out once
/// per process (every traced namespace shares the kernel); the parsed BTF itself is dropped
/// straight away, it is large.
pub(in crate::bpf) struct KernelOffsets {
    /// `sk_buff`, `net_device` and `net`, for the drop program.
    pub(in crate::bpf) drop: Result<DropOffsets, String>,
    /// `flowi4`, `flowi6`, `fib_nh_common`, `fib6_result`..., for the raw fib programs.
    pub(in crate::bpf) fib_raw: Result<FibRawOffsets, String>,
}

pub(in crate::bpf) fn kernel_offsets() -> &'static KernelOffsets {
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

/// `outer + inner`: a member's offset through the struct that holds it (checked: a
/// corrupt BTF must not wrap to an offset the programs would then read).
fn nested(outer: u16, inner: u16) -> Result<u16> {
    outer
        .checked_add(inner)
        .context("a kernel struct member is more than 64 KiB into its struct")
}

/// `net_device.nd_net.net`: where a device's namespace is.
fn dev_nd_net(layout: &Layout) -> Result<u16> {
    nested(
        layout.offset("net_device", "nd_net")?,
        layout.offset("possible_net_t", "net")?,
    )
}

/// `net.ns.inum`: the namespace's inode number.
fn net_ns_inum(layout: &Layout) -> Result<u16> {
    nested(
        layout.offset("net", "ns")?,
        layout.offset("ns_common", "inum")?,
    )
}

pub(crate) fn drop_offsets(layout: &Layout) -> Result<DropOffsets> {
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

pub(crate) fn fib_raw_offsets(layout: &Layout) -> Result<FibRawOffsets> {
    let common4 = layout.offset("flowi4", "__fl_common")?;
    let common6 = layout.offset("flowi6", "__fl_common")?;
    let iif = layout.offset("flowi_common", "flowic_iif")?;
    let oif = layout.offset("flowi_common", "flowic_oif")?;
    let mark = layout.offset("flowi_common", "flowic_mark")?;
    Ok(FibRawOffsets {
        fl4_iif: nested(common4, iif)?,
        fl4_oif: nested(common4, oif)?,
        fl4_saddr: layout.offset("flowi4", "saddr")?,
        fl4_daddr: layout.offset("flowi4", "daddr")?,
        fl6_iif: nested(common6, iif)?,
        fl6_oif: nested(common6, oif)?,
        fl6_saddr: layout.offset("flowi6", "saddr")?,
        fl6_daddr: layout.offset("flowi6", "daddr")?,
        fl4_mark: nested(common4, mark)?,
        fl6_mark: nested(common6, mark)?,
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

/// Writes the kernel offsets a program reads into its offsets map, at `index`.
pub(in crate::bpf) fn set_offsets<T: aya::Pod>(
    ebpf: &mut Ebpf,
    map: &str,
    index: u32,
    offsets: T,
) -> Result<()> {
    let mut array: Array<_, T> = Array::try_from(
        ebpf.map_mut(map)
            .with_context(|| format!("map {map} missing"))?,
    )?;
    array.set(index, offsets, 0)?;
    Ok(())
}
