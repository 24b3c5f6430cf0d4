//! Every map and read-only global of the object, and the values only the eBPF side keeps.
//! The userspace loader finds them by these names.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use tracer_common::{
    DeviceSite, DropOffsets, FibOffsets, FibRawOffsets, FragKey, HopCount, HopKey, IfaceKey,
    TotalCount, TotalKey, BUDGET_ALL, COUNTERS_LEN, DEVICES_ENTRIES, FRAGS_ENTRIES,
    HOPS_DEFAULT_ENTRIES, INLINE_VIPS, RING_BYTES, TOTALS_ENTRIES,
};

// Read-only globals, set by the loader (`EbpfLoader::set_global`) before the programs
// load: the verifier sees constants, and the per-packet path needs no map lookup for them.
// Read through `global`, so the compiler does not fold the zero defaults.

/// Client port to follow, 0 = every flow of the VIPs.
#[no_mangle]
pub static CLIENT_PORT: u16 = 0;
/// Records to write per hop entry: `BUDGET_ALL`, 0 (counts only) or the first N packets.
/// The first packet of each hop (so of each next-hop) and TCP SYN/FIN/RST always are.
#[no_mangle]
pub static RECORD_BUDGET: u32 = BUDGET_ALL;
/// The VIPs, compared inline: IPv4 as the 4 address bytes read as a native u32, IPv6 as
/// two native u64 halves. `VIPS_IN_MAP` set: more than `INLINE_VIPS` of a family were
/// asked for, and `VIPS` holds them all.
#[no_mangle]
pub static VIP4: [u32; INLINE_VIPS] = [0; INLINE_VIPS];
#[no_mangle]
pub static VIP4_COUNT: u32 = 0;
#[no_mangle]
pub static VIP6: [[u64; 2]; INLINE_VIPS] = [[0; 2]; INLINE_VIPS];
#[no_mangle]
pub static VIP6_COUNT: u32 = 0;
#[no_mangle]
pub static VIPS_IN_MAP: u8 = 0;
/// Which traced namespace this object's TC programs watch (its site number, from 1), or 0:
/// one object's TC programs watch every traced namespace, and find a packet's site from its
/// device's namespace (`NETNS_OFFSETS`, `NETNS_INUMS`). The node-wide programs tag what they
/// report with the site the TC programs saw.
#[no_mangle]
pub static SITE: u16 = 0;
/// `sk_buff.dev`, `net_device.nd_net.net` and `net.ns.inum`, from the kernel's BTF: how a
/// TC program shared by every site reads the namespace of the device it runs on.
#[no_mangle]
pub static NETNS_OFFSETS: [u16; 3] = [0; 3];
/// 1: the kernel has `bpf_ktime_get_coarse_ns` (5.11 and later; see `clock`).
#[no_mangle]
pub static COARSE_CLOCK: u8 = 0;
/// `--pcap`: frame bytes to copy into each record (a `CaptureRecord`), 0 = no capture.
#[no_mangle]
pub static SNAP_LEN: u32 = 0;

/// The value of a read-only global.
#[inline(always)]
pub fn global<T: Copy>(v: &T) -> T {
    // SAFETY: reading a static the loader initialised. Volatile: the compiler must not
    // fold the default the object was built with.
    unsafe { core::ptr::read_volatile(v) }
}

/// The one ring buffer every program writes its records to.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// VIPs (IPv4 stored IPv4-mapped) -> 1; used only when `VIPS_IN_MAP` is set.
#[map]
pub static VIPS: HashMap<[u8; 16], u8> = HashMap::with_max_entries(256, 0);

/// Records lost (ring buffer full), matched, hop entries created, records not written by
/// the budget, packets `TOTALS` had no room for, consumed RSTs; per CPU.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

/// Exact per-hop packet and byte counts of the traced flows (see `HopKey`). The loader
/// sizes it (`--hop-entries`); an LRU map, so a full map evicts the oldest hops rather
/// than failing, and userspace reports how many were evicted.
#[map]
pub static HOPS: LruHashMap<HopKey, HopCount> =
    LruHashMap::with_max_entries(HOPS_DEFAULT_ENTRIES, 0);

/// Exact per-VIP totals by topology (see `TotalKey`): a plain hash map, so nothing is ever
/// evicted and the distribution over next-hops stays exact however many flows come; a
/// packet it has no room for is counted in `COUNTER_TOTALS_FULL`.
#[map]
pub static TOTALS: HashMap<TotalKey, TotalCount> = HashMap::with_max_entries(TOTALS_ENTRIES, 0);

/// The ports of each datagram whose first fragment a TC program saw: later fragments carry
/// no transport header, and take their flow from here (`FragKey` -> sport, dport).
#[map]
pub static FRAGS: LruHashMap<FragKey, [u16; 2]> = LruHashMap::with_max_entries(FRAGS_ENTRIES, 0);

/// The traced L3 interfaces (bridge0) of every site: packets entering there go up to IP
/// routing. Bridge ports are L2 and are not listed.
#[map]
pub static L3_IFACES: HashMap<IfaceKey, u8> = HashMap::with_max_entries(1024, 0);

/// The traced devices the TC programs every site shares have seen (see `DeviceSite`), by
/// `net_device` address: the site and whether it routes in one kernel read and one lookup.
/// Reading the namespace from the device each time took three reads and a lookup, a third
/// of a traced packet's time in the program. Interface indexes would not do: each namespace
/// numbers its own from 1.
#[map]
pub static DEVICES: HashMap<u64, DeviceSite> = HashMap::with_max_entries(DEVICES_ENTRIES, 0);

/// Namespace inode numbers (`ns.inum`) of the traced namespaces -> their site number: drops
/// and route lookups elsewhere are not ours even when they carry a VIP.
#[map]
pub static NETNS_INUMS: HashMap<u32, u16> = HashMap::with_max_entries(256, 0);

/// Index 0: IPv4 tracepoint offsets, index 1: IPv6.
#[map]
pub static FIB_OFFSETS: Array<FibOffsets> = Array::with_max_entries(2, 0);

/// Offsets for the raw fib programs (`FibRawOffsets`), entry 0.
#[map]
pub static FIB_RAW_OFFSETS: Array<FibRawOffsets> = Array::with_max_entries(1, 0);

/// Offsets for the drop program (`DropOffsets`), entry 0.
#[map]
pub static DROP_OFFSETS: Array<DropOffsets> = Array::with_max_entries(1, 0);

/// The last traced packet that entered a traced L3 interface on this CPU, in any traced
/// namespace: one map shared by the node object (fib, hash and drop programs, attached once
/// per node) and every namespace's TC object (see `tracer::attach`). A forwarded
/// packet's route lookup runs synchronously after that TC ingress hook, in the same softirq
/// on the same CPU, so the fib tracepoint can match its lookup to it and borrow the ports
/// the lookup key lacks. It is cleared by the first successful lookup and by any TC egress
/// hook (the packet has been routed by then), so lookups made later in other namespaces
/// for the same flow never match it.
#[map]
pub static LAST_INGRESS: PerCpuArray<LastIngress> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct LastIngress {
    pub ts_ns: u64,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub ifindex: u32,
    pub mark: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    /// Set once the packet's route lookup matched: later lookups are other packets', but
    /// the multipath hash computed next (fexit/kretprobe) is still this packet's.
    pub routed: u8,
    pub _pad: u8,
    /// The namespace the packet entered (its site number).
    pub site: u16,
    pub _pad2: [u8; 6],
}

/// A route lookup of a VIP packet that did not follow its TC ingress hook, waiting on this
/// CPU for the TC egress hook its packet reaches next. After an NFQUEUE verdict (every VIP
/// packet of a real stateless-lb-frontend: nfqlb sets the target's fwmark) the lookup runs
/// in the verdict's thread, on any CPU, long after the ingress hook; from the lookup on,
/// routing, forwarding and the egress hook run synchronously on that CPU with bottom halves
/// off, so the next egress of the same addresses and mark in the same namespace is the
/// routed packet itself, and lends the lookup its ports.
#[map]
pub static LAST_LOOKUP: PerCpuArray<LastLookup> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct LastLookup {
    /// 0: empty (taken, or never filled).
    pub ts_ns: u64,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub gw: [u8; 16],
    pub dev: [u8; 16],
    pub table: u32,
    pub err: i32,
    pub oif: i32,
    pub iif: i32,
    pub mark: u32,
    pub site: u16,
    pub family: u8,
    pub _pad: u8,
}

/// When a traced packet toward a VIP last entered a traced L3 interface (a frontend's
/// external one: its route lookup may come later, after the load balancer's queue), node
/// wide; 0 never. The fib programs look for lookups to tie at egress only while this is
/// recent: a node whose traced flows are quiet pays no kernel read per route lookup.
#[map]
pub static DEFER_ARMED: Array<u64> = Array::with_max_entries(1, 0);
