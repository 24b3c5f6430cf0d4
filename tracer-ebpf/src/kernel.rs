//! Reading what the kernel holds: its memory at offsets userspace found in BTF, the
//! records of perf tracepoints, and which traced namespace a device is in.
use aya_ebpf::{helpers::bpf_probe_read_kernel, programs::TracePointContext};

use crate::maps::NETNS_INUMS;

/// Reads a `T` at `base + off` in kernel memory.
#[inline(always)]
pub fn kread<T>(base: u64, off: u16) -> Result<T, ()> {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one only fails the read.
    unsafe { bpf_probe_read_kernel((base + u64::from(off)) as *const T).map_err(|_| ()) }
}

/// Reads a `T` at `offset` in a perf tracepoint's record.
#[inline(always)]
pub fn read<T>(ctx: &TracePointContext, offset: u16) -> Result<T, ()> {
    // SAFETY: offsets come from the tracepoint's own format file; the helper checks the read.
    unsafe { ctx.read_at::<T>(offset as usize).map_err(|_| ()) }
}

/// The site of the traced namespace the `net_device` at `dev` is in, if it is one:
/// `net_device.nd_net.net` then `net.ns.inum`, looked up in `NETNS_INUMS`.
#[inline(always)]
pub fn dev_site(dev: u64, dev_nd_net: u16, net_ns_inum: u16) -> Option<u16> {
    let net: u64 = kread(dev, dev_nd_net).ok()?;
    let inum: u32 = kread(net, net_ns_inum).ok()?;
    // SAFETY: a plain read of a map value.
    unsafe { NETNS_INUMS.get(inum) }.copied()
}
