//! eBPF side of the Meridio path tracer.
//!
//! - `meridio_tc_in` / `meridio_tc_out`: one TC classifier per direction, attached to every traced
//!   interface. They parse Ethernet (one 802.1Q tag), IPv4/IPv6 and TCP/UDP/ICMP, keep only
//!   packets of the VIP set (and of the client port, when one is given) and write one
//!   `PacketRecord` per kept packet. They never touch the packet and always return
//!   `TC_ACT_UNSPEC` (TCX_NEXT) so whatever else is attached still decides.
//! - `meridio_fib4` / `meridio_fib6`: tracepoints on the routing table lookups. The kernel does
//!   not fill ports into the lookup key of forwarded packets, nor tell which netns looks up,
//!   so a lookup is only reported when it follows, on the same CPU, a traced ingress packet
//!   with the same addresses on the lookup's input interface (see `LAST_INGRESS`).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::TC_ACT_UNSPEC,
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{classifier, fexit, kretprobe, map, tracepoint},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{FExitContext, RetProbeContext, TcContext, TracePointContext},
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};
use tracer_common::{
    v4_mapped, Config, DropOffsets, DropRecord, FibOffsets, FibRecord, HashRecord, PacketRecord,
    AF_INET, AF_INET6, COUNTERS_LEN, COUNTER_LOST, COUNTER_MATCHED, DIR_EGRESS, DIR_INGRESS,
    FIELD_ABSENT, HASH_HOOK_FEXIT, HASH_HOOK_KRETPROBE, KIND_DROP, KIND_FIB, KIND_HASH,
    KIND_PACKET, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, RING_BYTES,
};

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// VIPs (IPv4 stored IPv4-mapped) -> 1.
#[map]
static VIPS: HashMap<[u8; 16], u8> = HashMap::with_max_entries(256, 0);

#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Index 0: IPv4 tracepoint offsets, index 1: IPv6.
#[map]
static FIB_OFFSETS: Array<FibOffsets> = Array::with_max_entries(2, 0);

/// Records lost (ring buffer full) and records matched, per CPU.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

/// Ifindexes of the traced L3 interfaces (bridge0): packets entering there go up to IP
/// routing. Bridge ports are L2 and are not listed.
#[map]
static L3_IFACES: HashMap<u32, u8> = HashMap::with_max_entries(64, 0);

/// The last traced packet that entered a traced L3 interface on this CPU. A forwarded
/// packet's route lookup runs synchronously after that TC ingress hook, in the same softirq
/// on the same CPU, so the fib tracepoint can match its lookup to it and borrow the ports
/// the lookup key lacks. It is cleared by the first successful lookup and by any TC egress
/// hook (the packet has been routed by then), so lookups made later in other namespaces
/// for the same flow never match it.
#[map]
static LAST_INGRESS: PerCpuArray<LastIngress> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
#[derive(Clone, Copy)]
struct LastIngress {
    ts_ns: u64,
    src: [u8; 16],
    dst: [u8; 16],
    ifindex: u32,
    mark: u32,
    sport: u16,
    dport: u16,
    proto: u8,
    family: u8,
    /// Set once the packet's route lookup matched: later lookups are other packets', but
    /// the multipath hash computed next (fexit/kretprobe) is still this packet's.
    routed: u8,
    _pad: [u8; 1],
}

/// A lookup further from its ingress hook than this is not the same packet's. The slot is
/// cleared by the packet's first successful lookup and by any TC egress hook anyway; the
/// age only retires a slot whose packet died unseen. Generous: in an emulated (TCG)
/// machine the first packet of a flow took 5 ms from bridge0 ingress to its lookup.
const LAST_INGRESS_MAX_AGE_NS: u64 = 20_000_000;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const VLAN_HDR_LEN: usize = 4;

#[classifier]
pub fn meridio_tc_in(ctx: TcContext) -> i32 {
    observe(&ctx, DIR_INGRESS);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn meridio_tc_out(ctx: TcContext) -> i32 {
    observe(&ctx, DIR_EGRESS);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn bump(counter: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(counter) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn is_vip(addr: &[u8; 16]) -> bool {
    // SAFETY: the value is only tested for presence.
    unsafe { VIPS.get(addr).is_some() }
}

#[inline(always)]
fn client_port() -> u16 {
    CONFIG.get(0).map(|c| c.client_port).unwrap_or(0)
}

/// Keeps a packet of a VIP flow; with a client port, only that client's flow.
#[inline(always)]
fn wanted(src: &[u8; 16], dst: &[u8; 16], sport: u16, dport: u16) -> bool {
    let port = client_port();
    if is_vip(dst) {
        port == 0 || sport == port
    } else if is_vip(src) {
        port == 0 || dport == port
    } else {
        false
    }
}

#[inline(always)]
fn observe(ctx: &TcContext, dir: u8) {
    let _ = try_observe(ctx, dir);
}

fn try_observe(ctx: &TcContext, dir: u8) -> Result<(), ()> {
    let eth: EthHdr = ctx.load(0).map_err(|_| ())?;
    let mut ether_type = u16::from_be(eth.ether_type);
    let mut l3 = EthHdr::LEN;
    // SAFETY: ctx.skb.skb is the valid __sk_buff the program was called with.
    let skb = unsafe { &*ctx.skb.skb };
    let mut vlan = if skb.vlan_present != 0 {
        skb.vlan_tci as u16
    } else {
        0
    };
    if ether_type == ETH_P_8021Q {
        let tci: u16 = ctx.load(l3).map_err(|_| ())?;
        let inner: u16 = ctx.load(l3 + 2).map_err(|_| ())?;
        vlan = u16::from_be(tci);
        ether_type = u16::from_be(inner);
        l3 += VLAN_HDR_LEN;
    }

    let (family, src, dst, proto, ip_len, l4) = match ether_type {
        ETH_P_IP => {
            let ip: Ipv4Hdr = ctx.load(l3).map_err(|_| ())?;
            let ihl = ((ip.vihl & 0x0f) as usize) * 4;
            (
                AF_INET,
                v4_mapped(ip.src_addr),
                v4_mapped(ip.dst_addr),
                ip.proto,
                u16::from_be_bytes(ip.tot_len),
                l3 + ihl,
            )
        }
        ETH_P_IPV6 => {
            let ip: Ipv6Hdr = ctx.load(l3).map_err(|_| ())?;
            (
                AF_INET6,
                ip.src_addr,
                ip.dst_addr,
                ip.next_hdr,
                u16::from_be_bytes(ip.payload_len).wrapping_add(Ipv6Hdr::LEN as u16),
                l3 + Ipv6Hdr::LEN,
            )
        }
        _ => return Ok(()),
    };

    let (sport, dport, tcp_flags) = match proto {
        PROTO_TCP => {
            let ports: [u8; 4] = ctx.load(l4).map_err(|_| ())?;
            let flags: u8 = ctx.load(l4 + 13).map_err(|_| ())?;
            (
                u16::from_be_bytes([ports[0], ports[1]]),
                u16::from_be_bytes([ports[2], ports[3]]),
                flags,
            )
        }
        PROTO_UDP => {
            let ports: [u8; 4] = ctx.load(l4).map_err(|_| ())?;
            (
                u16::from_be_bytes([ports[0], ports[1]]),
                u16::from_be_bytes([ports[2], ports[3]]),
                0,
            )
        }
        PROTO_ICMP | PROTO_ICMPV6 => (0, 0, 0),
        _ => return Ok(()),
    };

    if !wanted(&src, &dst, sport, dport) {
        return Ok(());
    }
    bump(COUNTER_MATCHED);

    let ts_ns = unsafe { bpf_ktime_get_ns() };
    // Map keys must live on the BPF stack, not point into the context.
    let ifindex: u32 = skb.ifindex;
    // SAFETY: presence test only.
    let l3 = unsafe { L3_IFACES.get(&ifindex).is_some() };
    if dir == DIR_EGRESS {
        forget_last_ingress();
    } else if l3 {
        if let Some(last) = LAST_INGRESS.get_ptr_mut(0) {
            // SAFETY: per-CPU slot, only this CPU writes it.
            unsafe {
                *last = LastIngress {
                    ts_ns,
                    src,
                    dst,
                    ifindex,
                    mark: skb.mark,
                    sport,
                    dport,
                    proto,
                    family,
                    routed: 0,
                    _pad: [0; 1],
                };
            }
        }
    }

    let record = PacketRecord {
        kind: KIND_PACKET,
        ifindex: skb.ifindex,
        ts_ns,
        src,
        dst,
        eth_src: eth.src_addr,
        eth_dst: eth.dst_addr,
        sport,
        dport,
        ip_len,
        vlan,
        mark: skb.mark,
        hash: skb.hash,
        dir,
        family,
        proto,
        tcp_flags,
    };
    if EVENTS.output::<PacketRecord>(&record, 0).is_err() {
        bump(COUNTER_LOST);
    }
    Ok(())
}

#[inline(always)]
fn forget_last_ingress() {
    if let Some(last) = LAST_INGRESS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe { (*last).ts_ns = 0 };
    }
}

#[tracepoint]
pub fn meridio_fib4(ctx: TracePointContext) -> u32 {
    let _ = try_fib(&ctx, 0, AF_INET);
    0
}

#[tracepoint]
pub fn meridio_fib6(ctx: TracePointContext) -> u32 {
    let _ = try_fib(&ctx, 1, AF_INET6);
    0
}

#[inline(always)]
fn read<T>(ctx: &TracePointContext, offset: u16) -> Result<T, ()> {
    // SAFETY: offsets come from the tracepoint's own format file; the helper checks the read.
    unsafe { ctx.read_at::<T>(offset as usize).map_err(|_| ()) }
}

fn try_fib(ctx: &TracePointContext, index: u32, family: u8) -> Result<(), ()> {
    let off = *FIB_OFFSETS.get(index).ok_or(())?;
    if off.valid == 0 {
        return Ok(());
    }
    let (src, dst) = if family == AF_INET {
        (
            v4_mapped(read::<[u8; 4]>(ctx, off.src)?),
            v4_mapped(read::<[u8; 4]>(ctx, off.dst)?),
        )
    } else {
        (
            read::<[u8; 16]>(ctx, off.src)?,
            read::<[u8; 16]>(ctx, off.dst)?,
        )
    };
    if !is_vip(&src) && !is_vip(&dst) {
        return Ok(());
    }
    let iif: i32 = read(ctx, off.iif)?;

    // Only lookups made for a packet we just saw come in (see LAST_INGRESS).
    let last = LAST_INGRESS.get(0).ok_or(())?;
    let now = unsafe { bpf_ktime_get_ns() };
    if last.ts_ns == 0
        || now.wrapping_sub(last.ts_ns) > LAST_INGRESS_MAX_AGE_NS
        || last.routed != 0
        || last.ifindex as i32 != iif
        || last.src != src
        || last.dst != dst
    {
        return Ok(());
    }

    // Filled in place: a FibRecord on the BPF stack would not fit beside the reads above.
    let Some(mut entry) = EVENTS.reserve::<FibRecord>(0) else {
        bump(COUNTER_LOST);
        return Ok(());
    };
    let r = entry.as_mut_ptr();
    let err: i32 = read(ctx, off.err).unwrap_or(0);
    // SAFETY: `r` points at a reserved, exclusively owned FibRecord-sized slot.
    unsafe {
        (*r).kind = KIND_FIB;
        (*r).table = read(ctx, off.tb_id).unwrap_or(0);
        (*r).ts_ns = now;
        (*r).err = err;
        (*r).oif = read(ctx, off.oif).unwrap_or(0);
        (*r).iif = iif;
        (*r).sport = last.sport;
        (*r).dport = last.dport;
        (*r).src = src;
        (*r).dst = dst;
        (*r).gw = if family == AF_INET {
            v4_mapped(read::<[u8; 4]>(ctx, off.gw).unwrap_or([0; 4]))
        } else {
            read::<[u8; 16]>(ctx, off.gw).unwrap_or([0; 16])
        };
        // Older kernels keep the name as a dynamic string: its offset is in the low 16 bits.
        let name = if off.name_loc != 0 {
            read::<u32>(ctx, off.name)
                .map(|loc| loc as u16)
                .unwrap_or(off.name)
        } else {
            off.name
        };
        (*r).dev = read(ctx, name).unwrap_or([0; 16]);
        (*r).mark = last.mark;
        (*r).family = family;
        (*r).proto = last.proto;
        (*r)._pad = [0; 2];
    }
    entry.submit(0);
    if err == 0 {
        // The packet's route is found; later lookups belong to other packets.
        if let Some(last) = LAST_INGRESS.get_ptr_mut(0) {
            // SAFETY: per-CPU slot, only this CPU writes it.
            unsafe { (*last).routed = 1 };
        }
    }
    Ok(())
}

/// The multipath hash of the packet being routed on this CPU, from the hash function's
/// return value. Loaded only where the kernel allows fexit (or kretprobes).
#[fexit(function = "fib_multipath_hash")]
pub fn meridio_mph4(ctx: FExitContext) -> i32 {
    if let Ok(hash) = ctx.ret::<u32>() {
        let _ = emit_hash(hash, AF_INET, HASH_HOOK_FEXIT);
    }
    0
}

#[fexit(function = "rt6_multipath_hash")]
pub fn meridio_mph6(ctx: FExitContext) -> i32 {
    if let Ok(hash) = ctx.ret::<u32>() {
        let _ = emit_hash(hash, AF_INET6, HASH_HOOK_FEXIT);
    }
    0
}

#[kretprobe]
pub fn meridio_mph4_kr(ctx: RetProbeContext) -> u32 {
    let _ = emit_hash(ctx.ret::<u32>(), AF_INET, HASH_HOOK_KRETPROBE);
    0
}

#[kretprobe]
pub fn meridio_mph6_kr(ctx: RetProbeContext) -> u32 {
    let _ = emit_hash(ctx.ret::<u32>(), AF_INET6, HASH_HOOK_KRETPROBE);
    0
}

fn emit_hash(hash: u32, family: u8, hook: u8) -> Result<(), ()> {
    let last = LAST_INGRESS.get(0).ok_or(())?;
    let now = unsafe { bpf_ktime_get_ns() };
    if last.ts_ns == 0
        || last.routed == 0
        || last.family != family
        || now.wrapping_sub(last.ts_ns) > LAST_INGRESS_MAX_AGE_NS
    {
        return Ok(());
    }
    let record = HashRecord {
        kind: KIND_HASH,
        hash,
        ts_ns: now,
        src: last.src,
        dst: last.dst,
        sport: last.sport,
        dport: last.dport,
        proto: last.proto,
        family,
        hook,
        _pad: 0,
    };
    if EVENTS.output::<HashRecord>(&record, 0).is_err() {
        bump(COUNTER_LOST);
    }
    Ok(())
}

/// Namespace inode numbers (`ns.inum`) of the traced namespaces: drops elsewhere are not
/// ours even when they carry a VIP.
#[map]
static NETNS_INUMS: HashMap<u32, u8> = HashMap::with_max_entries(64, 0);

#[map]
static DROP_OFFSETS: Array<DropOffsets> = Array::with_max_entries(1, 0);

/// Reads a `T` at `base + off` in kernel memory.
#[inline(always)]
fn kread<T>(base: u64, off: u16) -> Result<T, ()> {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one only fails the read.
    unsafe { bpf_probe_read_kernel((base + u64::from(off)) as *const T).map_err(|_| ()) }
}

/// `skb:kfree_skb`: a packet of a traced flow freed as a drop in a traced namespace.
#[tracepoint]
pub fn meridio_drop(ctx: TracePointContext) -> u32 {
    let _ = try_drop(&ctx);
    0
}

fn try_drop(ctx: &TracePointContext) -> Result<(), ()> {
    let off = *DROP_OFFSETS.get(0).ok_or(())?;
    if off.valid == 0 {
        return Ok(());
    }
    let protocol: u16 = read(ctx, off.tp_protocol)?;
    let family = match protocol {
        ETH_P_IP => AF_INET,
        ETH_P_IPV6 => AF_INET6,
        _ => return Ok(()),
    };
    let skb: u64 = read(ctx, off.tp_skbaddr)?;
    let dev: u64 = kread(skb, off.skb_dev)?;
    if dev == 0 {
        return Ok(());
    }
    let net: u64 = kread(dev, off.dev_nd_net)?;
    let inum: u32 = kread(net, off.net_ns_inum)?;
    // SAFETY: presence test only.
    if unsafe { NETNS_INUMS.get(&inum).is_none() } {
        return Ok(());
    }
    let head: u64 = kread(skb, off.skb_head)?;
    let nh: u16 = kread(skb, off.skb_network_header)?;
    let th: u16 = kread(skb, off.skb_transport_header)?;
    let l3 = head + u64::from(nh);
    let (src, dst, proto, l4) = if family == AF_INET {
        let ip: Ipv4Hdr = kread(l3, 0)?;
        let ihl = u64::from(ip.vihl & 0x0f) * 4;
        (
            v4_mapped(ip.src_addr),
            v4_mapped(ip.dst_addr),
            ip.proto,
            l3 + ihl,
        )
    } else {
        let ip: Ipv6Hdr = kread(l3, 0)?;
        (
            ip.src_addr,
            ip.dst_addr,
            ip.next_hdr,
            l3 + Ipv6Hdr::LEN as u64,
        )
    };
    // The transport header offset is set once the stack got that far; else derive it.
    let l4 = if th != 0xffff && th > nh {
        head + u64::from(th)
    } else {
        l4
    };
    let (sport, dport) = match proto {
        PROTO_TCP | PROTO_UDP => {
            let ports: [u8; 4] = kread(l4, 0)?;
            (
                u16::from_be_bytes([ports[0], ports[1]]),
                u16::from_be_bytes([ports[2], ports[3]]),
            )
        }
        PROTO_ICMP | PROTO_ICMPV6 => (0, 0),
        _ => return Ok(()),
    };
    // A packet dropped before its route lookup (e.g. not for this host) must not leave its
    // addresses pending for a later lookup in another namespace.
    if let Some(last) = LAST_INGRESS.get(0) {
        if last.ts_ns != 0 && last.src == src && last.dst == dst {
            forget_last_ingress();
        }
    }
    if !wanted(&src, &dst, sport, dport) {
        return Ok(());
    }
    let record = DropRecord {
        kind: KIND_DROP,
        ifindex: kread::<i32>(dev, off.dev_ifindex)? as u32,
        ts_ns: unsafe { bpf_ktime_get_ns() },
        location: read(ctx, off.tp_location)?,
        src,
        dst,
        reason: if off.tp_reason == FIELD_ABSENT {
            0
        } else {
            read(ctx, off.tp_reason)?
        },
        mark: kread(skb, off.skb_mark)?,
        sport,
        dport,
        family,
        proto,
        _pad: [0; 2],
    };
    if EVENTS.output::<DropRecord>(&record, 0).is_err() {
        bump(COUNTER_LOST);
    }
    Ok(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
