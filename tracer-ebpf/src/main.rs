//! eBPF side of the Meridio path tracer.
//!
//! - `meridio_tc_in` / `meridio_tc_out`: one TC classifier per direction, attached to every traced
//!   interface. They parse Ethernet (802.1Q, 802.1ad/QinQ: two tags), IPv4/IPv6 (extension
//!   headers walked, fragments tied to their datagram through `FRAGS`) and TCP/UDP/ICMP, keep only
//!   packets of the VIP set (and of the client port, when one is given) and write one
//!   `PacketRecord` per kept packet. They never touch the packet and always return
//!   `TC_ACT_UNSPEC` (TCX_NEXT) so whatever else is attached still decides.
//! - `meridio_fib4` / `meridio_fib6`: tracepoints on the routing table lookups. The kernel does
//!   not fill ports into the lookup key of forwarded packets, nor tell which netns looks up,
//!   so a lookup is only reported when it follows, on the same CPU, a traced ingress packet
//!   with the same addresses on the lookup's input interface (see `LAST_INGRESS`), or, for a
//!   lookup made later with a mark netfilter set (after nfqlb's NFQUEUE verdict, in its
//!   thread), when the TC egress hook sees the routed packet next on that CPU (`LAST_LOOKUP`).
#![no_std]
#![no_main]
// `atomic_xadd`: the bpfel target has no `AtomicU64::fetch_add`; the intrinsic, its result
// unused, becomes the BPF `lock xadd` every kernel has.
#![allow(internal_features)]
#![feature(core_intrinsics)]

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_UNSPEC},
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{classifier, fexit, kretprobe, map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{FExitContext, RawTracePointContext, RetProbeContext, TcContext, TracePointContext},
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};
use tracer_common::{
    v4_mapped, CaptureRecord, TIE_EGRESS, TIE_INGRESS, DropOffsets, DropRecord, FibOffsets, FibRawOffsets, FibRecord, FragKey, HashRecord,
    HopCount, HopKey, IfaceKey, PacketRecord, FRAGS_ENTRIES, FRAG_IS, FRAG_MORE, FRAG_ORPHAN, AF_INET, AF_INET6, BUDGET_ALL, COUNTERS_LEN, COUNTER_HOP_NEW,
    COUNTER_LOST, COUNTER_MATCHED, COUNTER_UNRECORDED, DIR_EGRESS, DIR_INGRESS, FIELD_ABSENT,
    HASH_HOOK_FEXIT, HASH_HOOK_KRETPROBE, HOPS_DEFAULT_ENTRIES, INLINE_VIPS, KIND_DROP, KIND_FIB,
    KIND_CAPTURE, KIND_HASH, KIND_PACKET, SNAP_MAX, SNAP_SMALL, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, RING_BYTES,
    RING_WAKEUP_BYTES,
};

// Read-only globals, set by the loader (`EbpfLoader::set_global`) before the programs
// load: the verifier sees constants, and the per-packet path needs no map lookup for them.
// Read through `read_volatile` so the compiler does not fold the zero defaults.

/// Client port to follow, 0 = every flow of the VIPs.
#[no_mangle]
static CLIENT_PORT: u16 = 0;
/// Records to write per hop entry: `BUDGET_ALL`, 0 (counts only) or the first N packets.
/// The first packet of each hop (so of each next-hop) and TCP SYN/FIN/RST always are.
#[no_mangle]
static RECORD_BUDGET: u32 = BUDGET_ALL;
/// The VIPs, compared inline: IPv4 as the 4 address bytes read as a native u32, IPv6 as
/// two native u64 halves. `VIPS_IN_MAP` set: more than `INLINE_VIPS` of a family were
/// asked for, and `VIPS` holds them all.
#[no_mangle]
static VIP4: [u32; INLINE_VIPS] = [0; INLINE_VIPS];
#[no_mangle]
static VIP4_COUNT: u32 = 0;
#[no_mangle]
static VIP6: [[u64; 2]; INLINE_VIPS] = [[0; 2]; INLINE_VIPS];
#[no_mangle]
static VIP6_COUNT: u32 = 0;
#[no_mangle]
static VIPS_IN_MAP: u8 = 0;
/// Which traced namespace this object's TC programs watch (its site number, from 1), or 0:
/// one object's TC programs watch every traced namespace, and find a packet's site from its
/// device's namespace (`NETNS_OFFSETS`, `NETNS_INUMS`). The node-wide programs tag what they
/// report with the site the TC programs saw.
#[no_mangle]
static SITE: u16 = 0;
/// `sk_buff.dev`, `net_device.nd_net.net` and `net.ns.inum`, from the kernel's BTF: how a
/// TC program shared by every site reads the namespace of the device it runs on.
#[no_mangle]
static NETNS_OFFSETS: [u16; 3] = [0; 3];
/// `--pcap`: frame bytes to copy into each record (a `CaptureRecord`), 0 = no capture.
#[no_mangle]
static SNAP_LEN: u32 = 0;

#[inline(always)]
fn global<T: Copy>(v: &T) -> T {
    // SAFETY: reading a static the loader initialised.
    unsafe { core::ptr::read_volatile(v) }
}

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// VIPs (IPv4 stored IPv4-mapped) -> 1; used only when `VIPS_IN_MAP` is set.
#[map]
static VIPS: HashMap<[u8; 16], u8> = HashMap::with_max_entries(256, 0);

/// Index 0: IPv4 tracepoint offsets, index 1: IPv6.
#[map]
static FIB_OFFSETS: Array<FibOffsets> = Array::with_max_entries(2, 0);

/// Records lost (ring buffer full), matched, hop entries created, records not written by
/// the budget; per CPU.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

/// Exact per-hop packet and byte counts of the traced flows (see `HopKey`). The loader
/// sizes it (`--hop-entries`); an LRU map, so a full map evicts the oldest hops rather
/// than failing, and userspace reports how many were evicted.
#[map]
static HOPS: LruHashMap<HopKey, HopCount> = LruHashMap::with_max_entries(HOPS_DEFAULT_ENTRIES, 0);

/// The ports of each datagram whose first fragment a TC program saw: later fragments carry
/// no transport header, and take their flow from here (`FragKey` -> sport, dport).
#[map]
static FRAGS: LruHashMap<FragKey, [u16; 2]> = LruHashMap::with_max_entries(FRAGS_ENTRIES, 0);

/// The traced L3 interfaces (bridge0) of every site: packets entering there go up to IP
/// routing. Bridge ports are L2 and are not listed.
#[map]
static L3_IFACES: HashMap<IfaceKey, u8> = HashMap::with_max_entries(1024, 0);

/// The last traced packet that entered a traced L3 interface on this CPU, in any traced
/// namespace: one map shared by the node object (fib, hash and drop programs, attached once
/// per node) and every namespace's TC object (see `tracer::attach`). A forwarded
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
    _pad: u8,
    /// The namespace the packet entered (its site number).
    site: u16,
    _pad2: [u8; 6],
}

/// A route lookup of a VIP packet that did not follow its TC ingress hook, waiting on this
/// CPU for the TC egress hook its packet reaches next. After an NFQUEUE verdict (every VIP
/// packet of a real stateless-lb-frontend: nfqlb sets the target's fwmark) the lookup runs
/// in the verdict's thread, on any CPU, long after the ingress hook; from the lookup on,
/// routing, forwarding and the egress hook run synchronously on that CPU with bottom halves
/// off, so the next egress of the same addresses and mark in the same namespace is the
/// routed packet itself, and lends the lookup its ports.
#[map]
static LAST_LOOKUP: PerCpuArray<LastLookup> = PerCpuArray::with_max_entries(1, 0);

/// When a traced packet toward a VIP last entered a traced L3 interface (a frontend's
/// external one: its route lookup may come later, after the load balancer's queue), node
/// wide; 0 never. The fib programs look for lookups to tie at egress only while this is
/// recent: a node whose traced flows are quiet pays no kernel read per route lookup.
#[map]
static DEFER_ARMED: Array<u64> = Array::with_max_entries(1, 0);

/// How long after a traced packet entered toward a VIP its lookup may still come (nfqlb's
/// queue can hold a packet for milliseconds under load; generous, as the other ages).
const DEFER_ARMED_NS: u64 = 1_000_000_000;

#[inline(always)]
fn arm_deferred_lookups(now: u64) {
    if let Some(t) = DEFER_ARMED.get_ptr_mut(0) {
        // SAFETY: a map value; a plain store (the latest writer wins, any is recent).
        unsafe { *t = now };
    }
}

/// Whether a traced packet entered toward a VIP recently enough for its lookup to come.
#[inline(always)]
fn deferred_lookups_armed() -> bool {
    match DEFER_ARMED.get(0) {
        Some(&t) if t != 0 => unsafe { bpf_ktime_get_ns() }.wrapping_sub(t) < DEFER_ARMED_NS,
        _ => false,
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
struct LastLookup {
    /// 0: empty (taken, or never filled).
    ts_ns: u64,
    src: [u8; 16],
    dst: [u8; 16],
    gw: [u8; 16],
    dev: [u8; 16],
    table: u32,
    err: i32,
    oif: i32,
    iif: i32,
    mark: u32,
    site: u16,
    family: u8,
    _pad: u8,
}

/// A lookup further from its ingress hook than this is not the same packet's. The slot is
/// cleared by the packet's first successful lookup and by any TC egress hook anyway; the
/// age only retires a slot whose packet died unseen. Generous: in an emulated (TCG)
/// machine the first packet of a flow took 5 ms from bridge0 ingress to its lookup.
const LAST_INGRESS_MAX_AGE_NS: u64 = 20_000_000;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const VLAN_HDR_LEN: usize = 4;
const TCP_SYN_FIN_RST: u8 = 0x01 | 0x02 | 0x04;
/// IPv6 extension headers walked to the transport header (hop-by-hop, routing,
/// destination options, fragment; more than this and the packet is not traced).
const IPV6_EXT_MAX: usize = 4;
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_DEST: u8 = 60;

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

/// Submit flags for a record: wake the reader only once `RING_WAKEUP_BYTES` wait.
#[inline(always)]
fn wakeup() -> u64 {
    const BPF_RB_NO_WAKEUP: u64 = 1;
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    const BPF_RB_AVAIL_DATA: u64 = 0;
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= RING_WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[inline(always)]
fn bump(counter: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(counter) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}

/// Is this address (IPv4-mapped or IPv6, 16 bytes) a VIP? Inline compares against the
/// read-only globals; the map only when there are too many VIPs to keep inline.
#[inline(always)]
fn is_vip(addr: &[u8; 16]) -> bool {
    if global(&VIPS_IN_MAP) != 0 {
        // SAFETY: the value is only tested for presence.
        return unsafe { VIPS.get(addr).is_some() };
    }
    if addr[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] {
        is_vip4(u32::from_ne_bytes([addr[12], addr[13], addr[14], addr[15]]))
    } else {
        let hi = u64::from_ne_bytes([
            addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
        ]);
        let lo = u64::from_ne_bytes([
            addr[8], addr[9], addr[10], addr[11], addr[12], addr[13], addr[14], addr[15],
        ]);
        is_vip6(hi, lo)
    }
}

#[inline(always)]
fn is_vip4(a: u32) -> bool {
    let n = global(&VIP4_COUNT) as usize;
    let mut i = 0;
    while i < INLINE_VIPS {
        if i >= n {
            return false;
        }
        if global(&VIP4[i]) == a {
            return true;
        }
        i += 1;
    }
    false
}

#[inline(always)]
fn is_vip6(hi: u64, lo: u64) -> bool {
    let n = global(&VIP6_COUNT) as usize;
    let mut i = 0;
    while i < INLINE_VIPS {
        if i >= n {
            return false;
        }
        let v = global(&VIP6[i]);
        if v[0] == hi && v[1] == lo {
            return true;
        }
        i += 1;
    }
    false
}

/// Keeps a packet of a VIP flow; with a client port, only that client's flow.
#[inline(always)]
fn wanted(src: &[u8; 16], dst: &[u8; 16], sport: u16, dport: u16) -> bool {
    let port = global(&CLIENT_PORT);
    if is_vip(dst) {
        port == 0 || sport == port
    } else if is_vip(src) {
        port == 0 || dport == port
    } else {
        false
    }
}

/// Reads a `T` at `off` in the packet: straight from the linear data when it is there
/// (no helper call; the common case), else through `bpf_skb_load_bytes`.
#[inline(always)]
fn rd<T: Copy>(ctx: &TcContext, off: usize) -> Result<T, ()> {
    let start = ctx.data();
    if start + off + core::mem::size_of::<T>() <= ctx.data_end() {
        // SAFETY: bounds checked against data_end just above, as the verifier requires.
        Ok(unsafe { core::ptr::read_unaligned((start + off) as *const T) })
    } else {
        ctx.load(off).map_err(|_| ())
    }
}

#[inline(always)]
fn observe(ctx: &TcContext, dir: u8) {
    let _ = try_observe(ctx, dir);
}

/// Cheapest reject first: the EtherType, then the addresses against the VIPs, before
/// anything else is read or looked up. The hop key is filled in place and the record in the
/// ring: the stack stays small enough for older verifiers (6.1 counts 512 bytes across the
/// program and the memcpy it calls).
fn try_observe(ctx: &TcContext, dir: u8) -> Result<(), ()> {
    let ether_type = u16::from_be(rd::<u16>(ctx, 12)?);
    if is_vlan(ether_type) {
        // 802.1Q, or 802.1ad (QinQ) with a second tag inside.
        let inner = u16::from_be(rd::<u16>(ctx, EthHdr::LEN + 2)?);
        if is_vlan(inner) {
            let inner = u16::from_be(rd::<u16>(ctx, EthHdr::LEN + VLAN_HDR_LEN + 2)?);
            observe_ip::<{ EthHdr::LEN + 2 * VLAN_HDR_LEN }>(ctx, dir, inner)
        } else {
            observe_ip::<{ EthHdr::LEN + VLAN_HDR_LEN }>(ctx, dir, inner)
        }
    } else {
        observe_ip::<{ EthHdr::LEN }>(ctx, dir, ether_type)
    }
}

#[inline(always)]
fn is_vlan(ether_type: u16) -> bool {
    ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD
}

/// The rest of `try_observe` for an IP header at the constant offset `L3`: every header
/// read before the VIP test is at a constant offset, which every verifier can bound for
/// direct packet access. The transport header's offset depends on the IPv4 header length,
/// so its (VIP packets only) reads go through `bpf_skb_load_bytes`.
#[inline(always)]
fn observe_ip<const L3: usize>(ctx: &TcContext, dir: u8, ether_type: u16) -> Result<(), ()> {
    let l3 = L3;

    let mut key = HopKey {
        src: [0; 16],
        dst: [0; 16],
        sport: 0,
        dport: 0,
        ifindex: 0,
        eth_dst: [0; 6],
        proto: 0,
        dir,
        site: 0,
        _pad: 0,
    };
    // `FRAG_*` bits, offset in bytes and datagram id, when the packet is a fragment.
    let mut frag = 0u8;
    let mut frag_off = 0u16;
    let mut frag_id = 0u32;
    // `to_vip`: the VIP is the destination (else the source).
    let (family, to_vip, ip_len, l4) = match ether_type {
        ETH_P_IP => {
            // Version/IHL, total length, protocol and both addresses, each read on its own.
            key.src = v4_mapped(rd::<[u8; 4]>(ctx, l3 + 12)?);
            key.dst = v4_mapped(rd::<[u8; 4]>(ctx, l3 + 16)?);
            let to_vip = is_vip(&key.dst);
            if !to_vip && !is_vip(&key.src) {
                return Ok(());
            }
            let vihl: u8 = rd(ctx, l3)?;
            let ihl = (vihl & 0x0f) as usize;
            if ihl < 5 {
                return Ok(());
            }
            key.proto = rd(ctx, l3 + 9)?;
            let tot_len = u16::from_be(rd::<u16>(ctx, l3 + 2)?);
            // Identification and flags/fragment offset.
            let id_frag: [u8; 4] = rd(ctx, l3 + 4)?;
            let frag_field = u16::from_be_bytes([id_frag[2], id_frag[3]]);
            if frag_field & 0x3fff != 0 {
                frag = FRAG_IS | if frag_field & 0x2000 != 0 { FRAG_MORE } else { 0 };
                frag_off = (frag_field & 0x1fff) << 3;
                frag_id = u32::from(u16::from_be_bytes([id_frag[0], id_frag[1]]));
            }
            (AF_INET, to_vip, tot_len, l3 + ihl * 4)
        }
        ETH_P_IPV6 => {
            key.src = rd(ctx, l3 + 8)?;
            key.dst = rd(ctx, l3 + 24)?;
            let to_vip = is_vip(&key.dst);
            if !to_vip && !is_vip(&key.src) {
                return Ok(());
            }
            let payload_len = u16::from_be(rd::<u16>(ctx, l3 + 4)?);
            // Walk the extension headers to the transport header, a bounded number of
            // them. Offsets past the fixed header vary: read through the helper.
            let mut next: u8 = rd(ctx, l3 + 6)?;
            let mut off = l3 + Ipv6Hdr::LEN;
            for _ in 0..IPV6_EXT_MAX {
                match next {
                    NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => {
                        let h: [u8; 2] = ctx.load(off).map_err(|_| ())?;
                        next = h[0];
                        off += (h[1] as usize + 1) * 8;
                    }
                    NEXTHDR_FRAGMENT => {
                        let h: [u8; 8] = ctx.load(off).map_err(|_| ())?;
                        next = h[0];
                        off += 8;
                        let field = u16::from_be_bytes([h[2], h[3]]);
                        frag = FRAG_IS | if field & 1 != 0 { FRAG_MORE } else { 0 };
                        frag_off = field & 0xfff8;
                        frag_id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                        if frag_off != 0 {
                            break; // no more headers in a non-first fragment
                        }
                    }
                    _ => break,
                }
            }
            key.proto = next;
            (
                AF_INET6,
                to_vip,
                payload_len.wrapping_add(Ipv6Hdr::LEN as u16),
                off,
            )
        }
        _ => return Ok(()),
    };

    let tcp_flags = match key.proto {
        // A later fragment carries no transport header: its ports are its first
        // fragment's, or unknown (0) when that was not seen.
        PROTO_TCP | PROTO_UDP if frag_off != 0 => {
            match frag_ports(&key, frag_id) {
                Some(ports) => {
                    key.sport = ports[0];
                    key.dport = ports[1];
                }
                None => frag |= FRAG_ORPHAN,
            }
            0
        }
        PROTO_TCP | PROTO_UDP => {
            // Both ports in one read (and the TCP flags, byte 13, in a second).
            let ports: u32 = ctx.load(l4).map_err(|_| ())?;
            let ports = ports.to_ne_bytes();
            key.sport = u16::from_be_bytes([ports[0], ports[1]]);
            key.dport = u16::from_be_bytes([ports[2], ports[3]]);
            if key.proto == PROTO_TCP {
                ctx.load::<u8>(l4 + 13).map_err(|_| ())?
            } else {
                0
            }
        }
        PROTO_ICMP | PROTO_ICMPV6 => 0,
        _ => return Ok(()),
    };

    let port = global(&CLIENT_PORT);
    if port != 0 {
        let client = if to_vip { key.sport } else { key.dport };
        if client != port {
            return Ok(());
        }
    }
    let Some(site) = site_of(ctx) else {
        return Ok(());
    };
    key.site = site;
    bump(COUNTER_MATCHED);
    if frag & (FRAG_IS | FRAG_MORE) == FRAG_IS | FRAG_MORE
        && frag_off == 0
        && (key.proto == PROTO_TCP || key.proto == PROTO_UDP)
    {
        remember_frag(&key, frag_id);
    }

    let ts_ns = unsafe { bpf_ktime_get_ns() };
    // SAFETY: ctx.skb.skb is the valid __sk_buff the program was called with.
    let skb = unsafe { &*ctx.skb.skb };
    // Map keys must live on the BPF stack, not point into the context.
    let ifindex: u32 = skb.ifindex;
    key.ifindex = ifindex;
    let iface = IfaceKey {
        ifindex,
        site,
        _pad: 0,
    };
    // SAFETY: presence test only.
    let l3_iface = unsafe { L3_IFACES.get(iface).is_some() };
    let eth_dst: [u8; 6] = rd(ctx, 0)?;
    // The routed hop's count is kept per next-hop: its Ethernet destination is the key.
    if dir == DIR_EGRESS && l3_iface {
        key.eth_dst = eth_dst;
    }
    let (first, count) = count_hop(&key, ip_len, ts_ns);
    let budget = global(&RECORD_BUDGET);
    let record = first || tcp_flags & TCP_SYN_FIN_RST != 0 || count <= u64::from(budget);

    if dir == DIR_EGRESS {
        forget_last_ingress();
        tie_lookup(&key, family, skb.mark, ts_ns, record);
    } else if l3_iface {
        if to_vip {
            arm_deferred_lookups(ts_ns);
        }
        // Only a recorded packet primes the route lookup and hash hooks: a packet the
        // budget leaves out gets no lookup or hash records either.
        if let Some(last) = LAST_INGRESS.get_ptr_mut(0) {
            // SAFETY: per-CPU slot, only this CPU writes it. Field by field: a whole
            // LastIngress on the BPF stack would not fit beside the rest.
            unsafe {
                (*last).ts_ns = if record { ts_ns } else { 0 };
                (*last).src = key.src;
                (*last).dst = key.dst;
                (*last).ifindex = ifindex;
                (*last).mark = skb.mark;
                (*last).sport = key.sport;
                (*last).dport = key.dport;
                (*last).proto = key.proto;
                (*last).family = family;
                (*last).routed = 0;
                (*last).site = site;
            }
        }
    }
    if !record {
        bump(COUNTER_UNRECORDED);
        return Ok(());
    }

    // VLAN tags outermost first: the one in the skb's metadata (taken off the frame on
    // ingress, or to be put on by the device on egress), then those in the frame. Each tag
    // is (TPID, TCI); the first two are kept.
    let accel = if skb.vlan_present != 0 {
        // `vlan_proto` is in network order.
        Some((u16::from_be(skb.vlan_proto as u16), skb.vlan_tci as u16))
    } else {
        None
    };
    let in_frame = if l3 > EthHdr::LEN {
        Some((
            u16::from_be(rd::<u16>(ctx, 12)?),
            u16::from_be(rd::<u16>(ctx, EthHdr::LEN)?),
        ))
    } else {
        None
    };
    let in_frame2 = if l3 > EthHdr::LEN + VLAN_HDR_LEN {
        Some((
            u16::from_be(rd::<u16>(ctx, EthHdr::LEN + 2)?),
            u16::from_be(rd::<u16>(ctx, EthHdr::LEN + VLAN_HDR_LEN)?),
        ))
    } else {
        None
    };
    let (outer, inner, vlan_tags) = match (accel, in_frame) {
        (Some(a), Some(f)) => (a, f, 2),
        (Some(a), None) => (a, (0, 0), 1),
        (None, Some(f)) => match in_frame2 {
            Some(f2) => (f, f2, 2),
            None => (f, (0, 0), 1),
        },
        (None, None) => ((0, 0), (0, 0), 0),
    };
    let eth_src: [u8; 6] = rd(ctx, 6)?;
    // Fills a record in place in the ring: it would not fit on the BPF stack beside the key.
    macro_rules! fill_packet {
        ($r:expr, $kind:expr) => {{
            let r: *mut PacketRecord = $r;
            // SAFETY: `r` points at a reserved, exclusively owned PacketRecord-sized slot.
            unsafe {
                (*r).kind = $kind;
                (*r).ifindex = ifindex;
                (*r).ts_ns = ts_ns;
                (*r).src = key.src;
                (*r).dst = key.dst;
                (*r).eth_src = eth_src;
                (*r).eth_dst = eth_dst;
                (*r).sport = key.sport;
                (*r).dport = key.dport;
                (*r).ip_len = ip_len;
                (*r).vlan = outer.1 & 0x0fff;
                (*r).vlan_tpid = outer.0;
                (*r).vlan_inner = inner.1 & 0x0fff;
                (*r).vlan_prio = ((outer.1 >> 13) as u8) | (((inner.1 >> 13) as u8) << 4);
                (*r).vlan_tags = vlan_tags;
                (*r).frag = frag;
                (*r)._pad = 0;
                (*r).frag_off = frag_off;
                (*r).site = site;
                (*r).frag_id = frag_id;
                (*r).mark = skb.mark;
                (*r).hash = skb.hash;
                (*r).dir = dir;
                (*r).family = family;
                (*r).proto = key.proto;
                (*r).tcp_flags = tcp_flags;
            }
        }};
    }
    let snap = global(&SNAP_LEN);
    if snap != 0 {
        // --pcap: its own record kind, so the default path below is the same as without it.
        if snap as usize <= SNAP_SMALL {
            let Some(mut entry) = EVENTS.reserve::<CaptureRecord<SNAP_SMALL>>(0) else {
                bump(COUNTER_LOST);
                return Ok(());
            };
            let c = entry.as_mut_ptr();
            // SAFETY: `c` points at a reserved, exclusively owned capture record.
            fill_packet!(unsafe { core::ptr::addr_of_mut!((*c).head.packet) }, KIND_CAPTURE);
            capture_bytes(ctx, c, snap);
            entry.submit(wakeup());
        } else {
            let Some(mut entry) = EVENTS.reserve::<CaptureRecord<SNAP_MAX>>(0) else {
                bump(COUNTER_LOST);
                return Ok(());
            };
            let c = entry.as_mut_ptr();
            // SAFETY: as above.
            fill_packet!(unsafe { core::ptr::addr_of_mut!((*c).head.packet) }, KIND_CAPTURE);
            capture_bytes(ctx, c, snap);
            entry.submit(wakeup());
        }
        return Ok(());
    }
    let Some(mut entry) = EVENTS.reserve::<PacketRecord>(0) else {
        bump(COUNTER_LOST);
        return Ok(());
    };
    fill_packet!(entry.as_mut_ptr(), KIND_PACKET);
    entry.submit(wakeup());
    Ok(())
}

/// Copies the first `snap` bytes of the frame (at most `N`, at most the frame) behind a
/// capture record's head; `cap_len` 0 when the copy failed.
/// The site of the namespace this TC program runs in: the object's own `SITE`, or, for the
/// object every site shares, the traced namespace the device is in (`None`: not traced).
/// Read only for packets of the traced flows.
#[inline(always)]
fn site_of(ctx: &TcContext) -> Option<u16> {
    let site = global(&SITE);
    if site != 0 {
        return Some(site);
    }
    let [skb_dev, dev_nd_net, net_ns_inum] = global(&NETNS_OFFSETS);
    // The context is the kernel's `sk_buff` (`__sk_buff` is its view for programs).
    let skb = ctx.skb.skb as u64;
    let dev: u64 = kread(skb, skb_dev).ok()?;
    let net: u64 = kread(dev, dev_nd_net).ok()?;
    let inum: u32 = kread(net, net_ns_inum).ok()?;
    // SAFETY: a plain read of a map value.
    unsafe { NETNS_INUMS.get(inum) }.copied()
}

#[inline(always)]
fn capture_bytes<const N: usize>(ctx: &TcContext, c: *mut CaptureRecord<N>, snap: u32) {
    let wire = ctx.len();
    let mut len = if snap < wire { snap } else { wire };
    if len > N as u32 {
        len = N as u32;
    }
    // The helper wants a length in [1, N] the verifier can prove. 6.1's learns nothing from
    // `len != 0` (the only test LLVM emits for `len > 0`), but follows a mask: N is a power
    // of two, and a length of 0 becomes N, which the helper refuses past the frame's end.
    let len = (len.wrapping_sub(1) & (N as u32 - 1)) + 1;
    // SAFETY: `c` is a reserved ring slot of `N` data bytes and `len` is at most `N`; the
    // helper checks the skb side.
    unsafe {
        (*c).head.wire_len = wire;
        let copied = aya_ebpf::helpers::bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            0,
            core::ptr::addr_of_mut!((*c).data) as *mut _,
            len,
        ) == 0;
        (*c).head.cap_len = if copied { len } else { 0 };
    }
}

#[inline(always)]
fn frag_key(key: &HopKey, id: u32) -> FragKey {
    FragKey {
        src: key.src,
        dst: key.dst,
        id,
        proto: key.proto,
        _pad: [0; 3],
    }
}

/// A first fragment: its datagram's later fragments will look their ports up here.
#[inline(always)]
fn remember_frag(key: &HopKey, id: u32) {
    let _ = FRAGS.insert(frag_key(key, id), [key.sport, key.dport], 0);
}

#[inline(always)]
fn frag_ports(key: &HopKey, id: u32) -> Option<[u16; 2]> {
    // SAFETY: the value is copied out at once.
    unsafe { FRAGS.get(frag_key(key, id)).copied() }
}

/// Adds to a counter several CPUs may update at once.
#[inline(always)]
fn add(counter: *mut u64, n: u64) {
    // SAFETY: `counter` points into a map value; the add is atomic.
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, n);
    }
}

/// Counts one packet of a hop; returns whether it created the entry, and the hop's
/// packet count after it (read back racily: close enough for the record budget).
#[inline(always)]
fn count_hop(key: &HopKey, ip_len: u16, ts_ns: u64) -> (bool, u64) {
    let c = match HOPS.get_ptr_mut(key) {
        Some(c) => c,
        None => {
            let fresh = HopCount {
                packets: 1,
                bytes: u64::from(ip_len),
                first_ns: ts_ns,
                last_ns: ts_ns,
            };
            if HOPS.insert(key, fresh, BPF_NOEXIST as u64).is_ok() {
                bump(COUNTER_HOP_NEW);
                return (true, 1);
            }
            // Another CPU created it meanwhile.
            match HOPS.get_ptr_mut(key) {
                Some(c) => c,
                None => return (false, 0),
            }
        }
    };
    // SAFETY: a map value pointer; the time is a plain store (the latest writer wins).
    unsafe {
        add(core::ptr::addr_of_mut!((*c).packets), 1);
        add(core::ptr::addr_of_mut!((*c).bytes), u64::from(ip_len));
        (*c).last_ns = ts_ns;
        (false, (*c).packets)
    }
}

/// The egress side of `LAST_LOOKUP`: a routed packet with the waiting lookup's addresses
/// and mark, in its namespace, takes the lookup (written only when the packet is recorded,
/// as a lookup tied at ingress is).
#[inline(always)]
fn tie_lookup(key: &HopKey, family: u8, mark: u32, now: u64, record: bool) {
    let Some(l) = LAST_LOOKUP.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU slot, only this CPU reads and writes it.
    let l = unsafe { &mut *l };
    if l.ts_ns == 0
        || l.site != key.site
        || l.family != family
        || l.mark != mark
        || l.src != key.src
        || l.dst != key.dst
    {
        return;
    }
    let ts = l.ts_ns;
    l.ts_ns = 0;
    if !record || now.wrapping_sub(ts) > LAST_INGRESS_MAX_AGE_NS {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<FibRecord>(0) else {
        bump(COUNTER_LOST);
        return;
    };
    let r = entry.as_mut_ptr();
    // SAFETY: `r` points at a reserved, exclusively owned FibRecord-sized slot.
    unsafe {
        (*r).kind = KIND_FIB;
        (*r).table = l.table;
        (*r).ts_ns = ts;
        (*r).err = l.err;
        (*r).oif = l.oif;
        (*r).iif = l.iif;
        (*r).sport = key.sport;
        (*r).dport = key.dport;
        (*r).src = l.src;
        (*r).dst = l.dst;
        (*r).gw = l.gw;
        (*r).dev = l.dev;
        (*r).mark = l.mark;
        (*r).family = family;
        (*r).proto = key.proto;
        (*r).site = l.site;
        (*r).tie = TIE_EGRESS;
        (*r)._pad = [0; 7];
    }
    entry.submit(wakeup());
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

/// The traced packet this CPU is routing right now, if any: the cheapest reject of every
/// route lookup on the node (see `LAST_INGRESS`), before anything else is read.
#[inline(always)]
fn pending_lookup(family: u8) -> Option<(&'static LastIngress, u64)> {
    let last = LAST_INGRESS.get(0)?;
    if last.ts_ns == 0 || last.routed != 0 || last.family != family {
        return None;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    if now.wrapping_sub(last.ts_ns) > LAST_INGRESS_MAX_AGE_NS {
        return None;
    }
    Some((last, now))
}

/// Reserves a fib record and fills what every lookup hook knows the same way; the caller
/// fills `table`, `err`, `oif`, `gw` and `dev`, then calls `submit_fib`.
#[inline(always)]
fn start_fib(
    last: &LastIngress,
    now: u64,
    family: u8,
    iif: i32,
) -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<FibRecord>> {
    let Some(mut entry) = EVENTS.reserve::<FibRecord>(0) else {
        bump(COUNTER_LOST);
        return None;
    };
    let r = entry.as_mut_ptr();
    // SAFETY: `r` points at a reserved, exclusively owned FibRecord-sized slot. Filled in
    // place: a FibRecord on the BPF stack would not fit beside the reads.
    unsafe {
        (*r).kind = KIND_FIB;
        (*r).ts_ns = now;
        (*r).iif = iif;
        (*r).sport = last.sport;
        (*r).dport = last.dport;
        (*r).src = last.src;
        (*r).dst = last.dst;
        (*r).mark = last.mark;
        (*r).family = family;
        (*r).proto = last.proto;
        (*r).site = last.site;
        (*r).tie = TIE_INGRESS;
        (*r)._pad = [0; 7];
    }
    Some(entry)
}

#[inline(always)]
fn submit_fib(entry: aya_ebpf::maps::ring_buf::RingBufEntry<FibRecord>, err: i32) {
    entry.submit(wakeup());
    if err == 0 {
        // The packet's route is found; later lookups belong to other packets.
        if let Some(last) = LAST_INGRESS.get_ptr_mut(0) {
            // SAFETY: per-CPU slot, only this CPU writes it.
            unsafe { (*last).routed = 1 };
        }
    }
}

/// The perf tracepoints (the fallback where the raw ones cannot load): the kernel has
/// already formatted a record, read at the offsets of its format file.
fn try_fib(ctx: &TracePointContext, index: u32, family: u8) -> Result<(), ()> {
    let (last, now) = pending_lookup(family).ok_or(())?;
    let off = *FIB_OFFSETS.get(index).ok_or(())?;
    if off.valid == 0 {
        return Ok(());
    }
    let iif: i32 = read(ctx, off.iif)?;
    if last.ifindex as i32 != iif {
        return Ok(());
    }
    // The slot holds a VIP packet's addresses: the same addresses make it this lookup's.
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
    if last.src != src || last.dst != dst {
        return Ok(());
    }
    let Some(mut entry) = start_fib(last, now, family, iif) else {
        return Ok(());
    };
    let r = entry.as_mut_ptr();
    let err: i32 = read(ctx, off.err).unwrap_or(0);
    // SAFETY: as in start_fib.
    unsafe {
        (*r).table = read(ctx, off.tb_id).unwrap_or(0);
        (*r).err = err;
        (*r).oif = read(ctx, off.oif).unwrap_or(0);
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
    }
    submit_fib(entry, err);
    Ok(())
}

/// The kernel's local table (`RT_TABLE_LOCAL`): addresses of this namespace.
const RT_TABLE_LOCAL: u32 = 255;

/// Offsets for the raw fib programs (`FibRawOffsets`), entry 0.
#[map]
static FIB_RAW_OFFSETS: Array<FibRawOffsets> = Array::with_max_entries(1, 0);

/// `fib:fib_table_lookup` as a raw tracepoint: the kernel calls the program with the
/// lookup's own arguments and formats nothing, so a lookup no traced packet waits for costs
/// one per-CPU map read.
#[raw_tracepoint(tracepoint = "fib_table_lookup")]
pub fn meridio_fib4_raw(ctx: RawTracePointContext) -> i32 {
    let _ = try_fib4_raw(&ctx);
    0
}

fn try_fib4_raw(ctx: &RawTracePointContext) -> Result<(), ()> {
    let pending = pending_lookup(AF_INET);
    let err: u64 = ctx.arg(3);
    let err = err as i32;
    let table: u64 = ctx.arg(0);
    // No traced packet waiting and a table that did not match (most lookups: each policy
    // rule's table is looked up in turn), or local delivery (no egress will follow), is the
    // common case, told from the arguments alone.
    if pending.is_none()
        && (err != 0 || table == u64::from(RT_TABLE_LOCAL) || !deferred_lookups_armed())
    {
        return Ok(());
    }
    let off = *FIB_RAW_OFFSETS.get(0).ok_or(())?;
    if off.valid == 0 {
        return Ok(());
    }
    let flp: u64 = ctx.arg(1);
    // Then the mark: only a lookup with a mark its packet's ingress hook did not see can be
    // one to tie at egress.
    let mark: u32 = kread(flp, off.fl4_mark)?;
    if pending.is_none() && mark == 0 {
        return Ok(());
    }
    let iif: i32 = kread(flp, off.fl4_iif)?;
    let src = v4_mapped(kread::<[u8; 4]>(flp, off.fl4_saddr)?);
    let dst = v4_mapped(kread::<[u8; 4]>(flp, off.fl4_daddr)?);
    let nhc: u64 = ctx.arg(2);
    let Some((last, now)) = pending.filter(|(last, _)| {
        last.ifindex as i32 == iif && last.src == src && last.dst == dst && last.mark == mark
    }) else {
        if mark != 0 && err == 0 {
            let gw = nhc_gw4(nhc, &off);
            defer_lookup(&off, nhc, AF_INET, iif, src, dst, mark, table as u32, flp + u64::from(off.fl4_oif), gw);
        }
        return Ok(());
    };
    if !same_site(last, nhc, &off) {
        return Ok(());
    }
    let Some(mut entry) = start_fib(last, now, AF_INET, iif) else {
        return Ok(());
    };
    let r = entry.as_mut_ptr();
    // SAFETY: as in start_fib.
    unsafe {
        (*r).table = table as u32;
        (*r).err = err;
        (*r).mark = mark;
        (*r).oif = kread(flp, off.fl4_oif).unwrap_or(0);
        (*r).gw = nhc_gw4(nhc, &off);
        (*r).dev = nhc_dev_name(nhc, &off);
    }
    submit_fib(entry, err);
    Ok(())
}

/// An IPv4 route's next-hop gateway (an IPv6 gateway on an IPv4 route, RFC 5549, is left
/// out, as unspecified).
#[inline(always)]
fn nhc_gw4(nhc: u64, off: &FibRawOffsets) -> [u8; 16] {
    if nhc != 0 && kread::<u8>(nhc, off.nhc_gw_family).unwrap_or(0) == AF_INET {
        v4_mapped(kread::<[u8; 4]>(nhc, off.nhc_gw).unwrap_or([0; 4]))
    } else {
        [0; 16]
    }
}

/// The name of a next-hop's device (zeros without one).
#[inline(always)]
fn nhc_dev_name(nhc: u64, off: &FibRawOffsets) -> [u8; 16] {
    if nhc == 0 {
        return [0; 16];
    }
    let dev: u64 = kread(nhc, off.nhc_dev).unwrap_or(0);
    if dev == 0 {
        return [0; 16];
    }
    kread(dev, off.dev_name).unwrap_or([0; 16])
}

/// The traced namespace a next-hop's device is in, if it is one.
#[inline(always)]
fn nhc_site(nhc: u64, off: &FibRawOffsets) -> Option<u16> {
    let dev: u64 = kread(nhc, off.nhc_dev).ok()?;
    if dev == 0 {
        return None;
    }
    let net = kread::<u64>(dev, off.dev_nd_net).ok()?;
    let inum = kread::<u32>(net, off.net_ns_inum).ok()?;
    // SAFETY: a plain read of a map value.
    unsafe { NETNS_INUMS.get(inum) }.copied()
}

/// A successful lookup of a VIP packet, with a mark its TC ingress hook did not see, in a
/// traced namespace: kept in `LAST_LOOKUP` for the egress hook its packet reaches next.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn defer_lookup(
    off: &FibRawOffsets,
    nhc: u64,
    family: u8,
    iif: i32,
    src: [u8; 16],
    dst: [u8; 16],
    mark: u32,
    table: u32,
    oif_at: u64,
    gw: [u8; 16],
) {
    if nhc == 0 || !(is_vip(&dst) || is_vip(&src)) {
        return;
    }
    let Some(site) = nhc_site(nhc, off) else {
        return;
    };
    let Some(l) = LAST_LOOKUP.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU slot, only this CPU reads and writes it.
    unsafe {
        (*l).ts_ns = bpf_ktime_get_ns();
        (*l).src = src;
        (*l).dst = dst;
        (*l).gw = gw;
        (*l).dev = nhc_dev_name(nhc, off);
        (*l).table = table;
        (*l).err = 0;
        (*l).oif = kread(oif_at, 0).unwrap_or(0);
        (*l).iif = iif;
        (*l).mark = mark;
        (*l).site = site;
        (*l).family = family;
    }
}

/// Whether a lookup whose next-hop is `nhc` (a `fib_nh_common`, 0 when none) ran in the
/// namespace of the traced packet waiting in `last`. The programs see every lookup of the
/// node, and interface indexes repeat across namespaces: a lookup elsewhere with the same
/// addresses and input index must not be taken for the traced packet's. Without a
/// next-hop device (a failed lookup) there is nothing to tell by, and the lookup is kept.
#[inline(always)]
fn same_site(last: &LastIngress, nhc: u64, off: &FibRawOffsets) -> bool {
    if nhc == 0 || kread::<u64>(nhc, off.nhc_dev).unwrap_or(0) == 0 {
        return true;
    }
    nhc_site(nhc, off).is_some_and(|site| site == last.site)
}

/// `fib6:fib6_table_lookup` as a raw tracepoint (see `meridio_fib4_raw`).
#[raw_tracepoint(tracepoint = "fib6_table_lookup")]
pub fn meridio_fib6_raw(ctx: RawTracePointContext) -> i32 {
    let _ = try_fib6_raw(&ctx);
    0
}

/// `ip6_rt_type_to_error`: the errno the kernel reports for a route type.
#[inline(always)]
fn rt6_type_error(t: u8) -> i32 {
    const EINVAL: i32 = 22;
    const EHOSTUNREACH: i32 = 113;
    const EACCES: i32 = 13;
    const EAGAIN: i32 = 11;
    match t {
        3 | 6 | 10 | 11 => -EINVAL, // broadcast, blackhole, nat, xresolve
        7 => -EHOSTUNREACH,         // unreachable
        8 => -EACCES,               // prohibit
        9 => -EAGAIN,               // throw
        _ => 0,
    }
}

fn try_fib6_raw(ctx: &RawTracePointContext) -> Result<(), ()> {
    let pending = pending_lookup(AF_INET6);
    if pending.is_none() && !deferred_lookups_armed() {
        return Ok(());
    }
    let off = *FIB_RAW_OFFSETS.get(0).ok_or(())?;
    if off.valid == 0 {
        return Ok(());
    }
    let flp: u64 = ctx.arg(3);
    // The mark first: a lookup with none and no traced packet waiting is the common case.
    let mark: u32 = kread(flp, off.fl6_mark)?;
    if pending.is_none() && mark == 0 {
        return Ok(());
    }
    let iif: i32 = kread(flp, off.fl6_iif)?;
    let src: [u8; 16] = kread(flp, off.fl6_saddr)?;
    let dst: [u8; 16] = kread(flp, off.fl6_daddr)?;
    let res: u64 = ctx.arg(1);
    let table: u64 = ctx.arg(2);
    let err = rt6_type_error(kread(res, off.res_type).unwrap_or(0));
    let nh: u64 = kread(res, off.res_nh).unwrap_or(0);
    let nhc = if nh != 0 { nh + u64::from(off.f6nh_common) } else { 0 };
    let gw = if nhc != 0 && err == 0 {
        kread(nhc, off.nhc_gw).unwrap_or([0; 16])
    } else {
        [0; 16]
    };
    let Some((last, now)) = pending.filter(|(last, _)| {
        last.ifindex as i32 == iif && last.src == src && last.dst == dst && last.mark == mark
    }) else {
        if mark != 0 && err == 0 {
            let tb_id: u32 = kread(table, off.tb6_id).unwrap_or(0);
            defer_lookup(&off, nhc, AF_INET6, iif, src, dst, mark, tb_id, flp + u64::from(off.fl6_oif), gw);
        }
        return Ok(());
    };
    if nhc != 0 && !same_site(last, nhc, &off) {
        return Ok(());
    }
    let Some(mut entry) = start_fib(last, now, AF_INET6, iif) else {
        return Ok(());
    };
    let r = entry.as_mut_ptr();
    // SAFETY: as in start_fib.
    unsafe {
        (*r).table = kread(table, off.tb6_id).unwrap_or(0);
        (*r).err = err;
        (*r).mark = mark;
        (*r).oif = kread(flp, off.fl6_oif).unwrap_or(0);
        (*r).gw = gw;
        (*r).dev = nhc_dev_name(nhc, &off);
    }
    submit_fib(entry, err);
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
        site: last.site,
        _pad2: [0; 6],
    };
    if EVENTS.output::<HashRecord>(&record, wakeup()).is_err() {
        bump(COUNTER_LOST);
    }
    Ok(())
}

/// Namespace inode numbers (`ns.inum`) of the traced namespaces -> their site number: drops
/// and route lookups elsewhere are not ours even when they carry a VIP.
#[map]
static NETNS_INUMS: HashMap<u32, u16> = HashMap::with_max_entries(256, 0);

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
    // SAFETY: a plain read of a map value.
    let Some(site) = (unsafe { NETNS_INUMS.get(inum) }).copied() else {
        return Ok(());
    };
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
        site,
    };
    if EVENTS.output::<DropRecord>(&record, wakeup()).is_err() {
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
