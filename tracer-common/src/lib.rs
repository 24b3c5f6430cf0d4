//! Records, map values and program names shared by the eBPF programs and the `tracer` binary.
//!
//! Every type here is `#[repr(C)]` with explicit padding so both sides agree on the layout
//! byte for byte. The eBPF side writes them into the ring buffer or reads them from maps;
//! userspace decodes them once (see `tracer::events`) into typed values.
#![no_std]

pub mod programs;

/// Record kinds: the first `u32` of every ring-buffer record.
pub const KIND_PACKET: u32 = 1;
pub const KIND_FIB: u32 = 2;
pub const KIND_HASH: u32 = 3;
pub const KIND_DROP: u32 = 4;
/// A [`PacketRecord`] with the first bytes of its frame (`--pcap`), see [`CaptureHead`].
pub const KIND_CAPTURE: u32 = 5;

/// Which hook produced a [`HashRecord`].
pub const HASH_HOOK_FEXIT: u8 = 1;
pub const HASH_HOOK_KRETPROBE: u8 = 2;

/// TC hook direction, as stored in [`PacketRecord::dir`].
pub const DIR_INGRESS: u8 = 0;
pub const DIR_EGRESS: u8 = 1;

/// Address families, as stored in the records (Linux values).
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// IP protocols the programs understand.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// Ring buffer size in bytes (a power of two multiple of the page size). The kernel maps
/// the data pages into the reader twice (so a record never wraps), and once read they count
/// twice in its RSS: 2 MiB costs 4 MiB. 2 MiB holds about 20 000 packet records, 100 ms at
/// 200 000 records/s; the 4 MiB before it raised a flooded tracer's peak RSS above 30 MB.
pub const RING_BYTES: u32 = 1 << 21;

/// Unread bytes in the ring above which a program wakes the reader; below it the reader's
/// 10 ms poll collects. A wakeup per record is a self-interrupt per record (microseconds
/// in a virtual machine), paid inside the TC hook.
pub const RING_WAKEUP_BYTES: u64 = 1 << 19;

/// Indexes into the `COUNTERS` per-CPU array.
pub const COUNTER_LOST: u32 = 0;
pub const COUNTER_MATCHED: u32 = 1;
/// Entries the TC programs created in `HOPS` (an LRU map: created minus deleted minus
/// present is what the kernel evicted).
pub const COUNTER_HOP_NEW: u32 = 2;
/// Records the budget chose not to write (counted in `HOPS` all the same).
pub const COUNTER_UNRECORDED: u32 = 3;
/// Packets `TOTALS` could not count because it was full (it never evicts).
pub const COUNTER_TOTALS_FULL: u32 = 4;
/// TCP RSTs freed by `kfree_skb` with no drop reason: the stack consuming a reset, not a
/// lost packet; counted here instead of reported as drops.
pub const COUNTER_RST_CONSUMED: u32 = 5;
/// Packets a traced stack discarded because their Ethernet destination was another host's
/// (`OTHERHOST`): a bridge floods a frame whose destination it has not learned to every
/// port, and the hosts it was not for discard their copies. The flow's own copy goes on;
/// counted here instead of reported as drops.
pub const COUNTER_NOT_FOR_HOST: u32 = 6;
pub const COUNTERS_LEN: u32 = 7;

/// VIPs per family the TC programs compare inline (read-only globals); with more, they
/// look the VIP set up in the `VIPS` map instead.
pub const INLINE_VIPS: usize = 8;

/// `RECORD_BUDGET` value: write a record for every packet.
pub const BUDGET_ALL: u32 = u32::MAX;

/// Default number of entries of the `HOPS` map (one map for every traced namespace).
pub const HOPS_DEFAULT_ENTRIES: u32 = 32_768;

/// One packet seen by the TC classifier on one interface, in one direction.
///
/// Addresses are 16 bytes; IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`) so one
/// key type serves both families in the VIP set.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketRecord {
    pub kind: u32,
    pub ifindex: u32,
    pub ts_ns: u64,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub eth_src: [u8; 6],
    pub eth_dst: [u8; 6],
    pub sport: u16,
    pub dport: u16,
    pub ip_len: u16,
    pub vlan: u16,
    pub mark: u32,
    pub hash: u32,
    pub dir: u8,
    pub family: u8,
    pub proto: u8,
    pub tcp_flags: u8,
    /// Inner (second) VLAN id of a QinQ frame, 0 without one. `vlan` holds the outer id.
    pub vlan_inner: u16,
    /// TPID of the outer tag (0x8100 802.1Q, 0x88a8 802.1ad), 0 without a tag.
    pub vlan_tpid: u16,
    /// Priority (PCP) of the outer tag in bits 0-2, of the inner tag in bits 4-6.
    pub vlan_prio: u8,
    /// VLAN tags seen, outermost first: in the skb's metadata (the kernel took it off the
    /// frame, or will put it on) and in the frame itself; at most 2 are kept.
    pub vlan_tags: u8,
    /// `FRAG_*` bits; the fields below are meaningful with `FRAG_IS`.
    pub frag: u8,
    pub _pad: u8,
    /// Fragment offset in bytes.
    pub frag_off: u16,
    /// The traced namespace (site number, from 1): every site writes to one ring.
    pub site: u16,
    /// IPv4 identification or IPv6 fragment header identification (host order).
    pub frag_id: u32,
}

/// Frame bytes a capture record carries by default (`--snap-len`).
pub const SNAP_DEFAULT: u32 = 128;
/// Capture records come in two sizes (a ring reservation has a size fixed at load): up to
/// `SNAP_SMALL` bytes, so the default costs little ring space, and up to `SNAP_MAX`, enough
/// for a whole 1500-byte frame with Ethernet and two VLAN tags. Both are powers of two: the
/// program bounds the copy's length with a mask, which every verifier follows.
pub const SNAP_SMALL: usize = 128;
pub const SNAP_MAX: usize = 2048;
const _: () = assert!(SNAP_SMALL.is_power_of_two() && SNAP_MAX.is_power_of_two());

/// Start of a `KIND_CAPTURE` record: the packet record (its `kind` is `KIND_CAPTURE`), the
/// frame's length on the wire and how many of its bytes follow the head.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureHead {
    pub packet: PacketRecord,
    /// `skb->len` at the hook: the frame as the kernel holds it (a VLAN tag kept in the
    /// skb's metadata is not in it).
    pub wire_len: u32,
    pub cap_len: u32,
}

/// A capture record as the eBPF program reserves it: `N` is `SNAP_SMALL` or `SNAP_MAX`;
/// only the first `cap_len` bytes of `data` are meaningful.
#[repr(C)]
pub struct CaptureRecord<const N: usize> {
    pub head: CaptureHead,
    pub data: [u8; N],
}

/// [`PacketRecord::frag`] bits.
pub const FRAG_IS: u8 = 1;
/// More fragments follow (the MF flag / M bit).
pub const FRAG_MORE: u8 = 2;
/// A non-first fragment whose first fragment was not seen (yet): its ports are unknown and
/// it is counted under ports 0.
pub const FRAG_ORPHAN: u8 = 4;

/// One `fib:fib_table_lookup` / `fib6:fib6_table_lookup` tracepoint hit on a VIP flow.
///
/// The kernel reports the first usable next-hop of a multipath route here, before the hash
/// picks one: `gw` names the table's candidate, not the choice.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FibRecord {
    pub kind: u32,
    pub table: u32,
    pub ts_ns: u64,
    pub err: i32,
    pub oif: i32,
    pub iif: i32,
    pub sport: u16,
    pub dport: u16,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub gw: [u8; 16],
    pub dev: [u8; 16],
    /// The mark the lookup used (the raw hooks read the lookup's own `flowi*_mark`; the
    /// perf tracepoint fallback has the packet's mark at its ingress hook).
    pub mark: u32,
    pub family: u8,
    pub proto: u8,
    /// The traced namespace whose packet this lookup routes (see `SITE` in the eBPF).
    pub site: u16,
    /// How the lookup was tied to its packet: `TIE_INGRESS` or `TIE_EGRESS`.
    pub tie: u8,
    pub _pad: [u8; 7],
}

/// The lookup followed its packet's TC ingress hook in the same softirq, on the same CPU.
pub const TIE_INGRESS: u8 = 0;
/// The lookup ran elsewhere (after an NFQUEUE verdict: in the verdict's thread, on any CPU,
/// with the mark the verdict set) and was tied to the packet that its TC egress hook saw
/// next on that CPU, with the lookup's addresses and mark: what the routing did with it.
pub const TIE_EGRESS: u8 = 1;

/// The multipath hash the kernel computed for a traced packet (`fib_multipath_hash` /
/// `rt6_multipath_hash` return value, already shifted right by one as the kernel compares
/// it). Only kernels that allow fexit or kretprobes produce these.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashRecord {
    pub kind: u32,
    pub hash: u32,
    pub ts_ns: u64,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub hook: u8,
    pub _pad: u8,
    /// The traced namespace whose packet was hashed.
    pub site: u16,
    pub _pad2: [u8; 6],
}

/// A traced packet freed by `kfree_skb` (a drop, with the kernel's reason) in a traced
/// namespace (`skb:kfree_skb` tracepoint).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropRecord {
    pub kind: u32,
    pub ifindex: u32,
    pub ts_ns: u64,
    /// Kernel code address that dropped it (symbolized from /proc/kallsyms).
    pub location: u64,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// `enum skb_drop_reason`, named from the tracepoint's format file.
    pub reason: u32,
    pub mark: u32,
    pub sport: u16,
    pub dport: u16,
    pub family: u8,
    pub proto: u8,
    /// The traced namespace the drop happened in.
    pub site: u16,
}

/// A tracepoint field this kernel does not have (e.g. `kfree_skb`'s `reason` before 5.17):
/// the program writes 0 instead of reading it.
pub const FIELD_ABSENT: u16 = u16::MAX;

/// Where the `skb:kfree_skb` program finds what it reads: tracepoint fields (from the
/// format file) and kernel struct members (from the kernel's BTF), all in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropOffsets {
    pub tp_skbaddr: u16,
    pub tp_location: u16,
    pub tp_protocol: u16,
    pub tp_reason: u16,
    pub skb_head: u16,
    pub skb_network_header: u16,
    pub skb_transport_header: u16,
    pub skb_dev: u16,
    pub skb_mark: u16,
    pub dev_ifindex: u16,
    pub dev_nd_net: u16,
    pub net_ns_inum: u16,
    /// 1 once userspace has filled the entry.
    pub valid: u16,
    /// The number of the `NOT_SPECIFIED` drop reason on this kernel (0: none): a TCP RST
    /// freed with it is the stack consuming a reset, counted (`COUNTER_RST_CONSUMED`), not
    /// reported as a drop.
    pub reason_not_specified: u16,
    /// The number of the `OTHERHOST` drop reason on this kernel (0: none): see
    /// `COUNTER_NOT_FOR_HOST`.
    pub reason_otherhost: u16,
}

/// Key of the `HOPS` map: one packet direction of one flow on one interface of one
/// namespace, and on a routed egress hop the next-hop (the frame's Ethernet destination),
/// so each next-hop a flow took has its own exact count.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HopKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub ifindex: u32,
    /// Zero but on the egress of a routed (L3) interface.
    pub eth_dst: [u8; 6],
    pub proto: u8,
    pub dir: u8,
    /// The traced namespace (site number): one map counts every site's hops, and
    /// ifindexes repeat between namespaces.
    pub site: u16,
    pub _pad: u16,
}

/// Key of the `TOTALS` map: one VIP's packets on one interface of one namespace in one
/// direction, and on a routed egress hop per next-hop (the frame's Ethernet destination).
/// Keyed by the topology, never by a client: its size does not grow with the flows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TotalKey {
    /// The VIP (IPv4-mapped for IPv4), whichever end of the packet it is.
    pub vip: [u8; 16],
    pub ifindex: u32,
    /// Zero but on the egress of a routed (L3) interface.
    pub eth_dst: [u8; 6],
    pub proto: u8,
    pub dir: u8,
    pub site: u16,
    pub _pad: u16,
}

/// Value of the `TOTALS` map: atomic adds for every packet; `flows` counts the TCP SYNs
/// (and SYN-ACKs: on the VIP's side a flow starts with one) and the first packet of every
/// other flow's hop.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TotalCount {
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
}

/// Entries of the `TOTALS` map: VIPs x interfaces x directions x next-hops of every traced
/// namespace on a node, with room.
pub const TOTALS_ENTRIES: u32 = 16_384;

/// Key of the `L3_IFACES` map: one interface of one traced namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IfaceKey {
    pub ifindex: u32,
    pub site: u16,
    pub _pad: u16,
}

/// Value of the `DEVICES` map, keyed by the address of a traced device's `net_device`:
/// which traced namespace (site) it is in, whether it routes (as in `L3_IFACES`), and its
/// ifindex, checked on every use (an address the kernel gave to a new device since fails
/// it, or userspace has cleared the map by then: it does whenever a site's interfaces
/// change).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceSite {
    pub ifindex: u32,
    pub site: u16,
    pub l3: u8,
    pub _pad: u8,
}

/// Entries of the `DEVICES` map: traced interfaces of every namespace on a node, with room;
/// an interface past it is still traced, its namespace read from the device each time.
pub const DEVICES_ENTRIES: u32 = 4_096;

/// Key of the `FRAGS` map: one IP datagram (IPv4: source, destination, protocol and IP ID;
/// IPv6: the fragment header's identification, with the addresses and next header).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub id: u32,
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// Entries of the `FRAGS` map: datagrams in flight whose first fragment was seen.
pub const FRAGS_ENTRIES: u32 = 4_096;

/// Value of the `HOPS` map, counted in the kernel for every packet whatever the record
/// budget or ring buffer loss. `packets` and `bytes` are atomic adds; the times are the
/// first packet's (`bpf_ktime_get_ns`) and the latest packet's within a clock tick
/// (`bpf_ktime_get_coarse_ns` from 5.11: what idle flows are told by).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HopCount {
    pub packets: u64,
    pub bytes: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

/// Byte offsets of the fields the fib tracepoint programs read, taken at start-up from
/// `/sys/kernel/tracing/events/fib*/fib*_table_lookup/format` (they differ between kernels).
/// Entry 0 of `FIB_OFFSETS` is IPv4, entry 1 is IPv6. `gw4` is unused for IPv6.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FibOffsets {
    pub tb_id: u16,
    pub err: u16,
    pub oif: u16,
    pub iif: u16,
    pub proto: u16,
    pub src: u16,
    pub dst: u16,
    pub gw: u16,
    pub sport: u16,
    pub dport: u16,
    pub name: u16,
    /// 1 once userspace has filled the entry; the program does nothing before that.
    pub valid: u16,
    /// 1 when `name` is a `__data_loc char[]` field (kernels before 5.18 or so): the `u32`
    /// there holds the string's length (high 16 bits) and offset in the record (low 16).
    pub name_loc: u16,
}

/// Where the raw fib tracepoint programs find what they read, from the kernel's BTF (bytes).
/// They get the tracepoints' own arguments (`TP_PROTO`), not a formatted record:
/// `fib_table_lookup(u32 tb_id, const struct flowi4 *, const struct fib_nh_common *, int err)`
/// and `fib6_table_lookup(const struct net *, const struct fib6_result *,
/// struct fib6_table *, const struct flowi6 *)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FibRawOffsets {
    /// `flowi4` / `flowi6`: input and output interface, addresses.
    pub fl4_iif: u16,
    pub fl4_oif: u16,
    pub fl4_saddr: u16,
    pub fl4_daddr: u16,
    pub fl6_iif: u16,
    pub fl6_oif: u16,
    pub fl6_saddr: u16,
    pub fl6_daddr: u16,
    /// `flowi4` / `flowi6`: the mark the lookup uses (what fwmark rules select on).
    pub fl4_mark: u16,
    pub fl6_mark: u16,
    /// `fib_nh_common`: device, gateway family and gateway.
    pub nhc_dev: u16,
    pub nhc_gw_family: u16,
    pub nhc_gw: u16,
    /// `net_device.name`.
    pub dev_name: u16,
    /// `fib6_result`: next-hop (a `fib6_nh`, whose `fib_nh_common` comes first) and type.
    pub res_nh: u16,
    pub res_type: u16,
    /// `fib6_nh.nh_common`, `fib6_table.tb6_id`.
    pub f6nh_common: u16,
    pub tb6_id: u16,
    /// `net_device.nd_net` and `net.ns.inum`: the namespace a next-hop's device is in.
    pub dev_nd_net: u16,
    pub net_ns_inum: u16,
    /// 1 once userspace has filled the entry.
    pub valid: u16,
    pub _pad: u16,
}

/// IPv4-mapped IPv6 form of an IPv4 address, the key form used in the VIP set.
pub const fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
    ]
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data structs with explicit padding and no invalid bit patterns.
    unsafe impl aya::Pod for super::HopKey {}
    unsafe impl aya::Pod for super::IfaceKey {}
    unsafe impl aya::Pod for super::DeviceSite {}
    unsafe impl aya::Pod for super::HopCount {}
    unsafe impl aya::Pod for super::TotalKey {}
    unsafe impl aya::Pod for super::TotalCount {}
    unsafe impl aya::Pod for super::FibOffsets {}
    unsafe impl aya::Pod for super::DropOffsets {}
    unsafe impl aya::Pod for super::FibRawOffsets {}
}
