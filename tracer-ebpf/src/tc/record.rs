//! The record of a kept packet: a `PacketRecord`, or with `--pcap` a `CaptureRecord` that
//! also carries the frame's first bytes. Filled in place in the ring: it would not fit on
//! the BPF stack beside the hop key.
use aya_ebpf::programs::TcContext;
use tracer_common::{
    CaptureRecord, HopKey, PacketRecord, COUNTER_LOST, KIND_CAPTURE, KIND_PACKET, SNAP_MAX,
    SNAP_SMALL,
};

use crate::{
    events::{bump, wakeup},
    maps::{global, EVENTS, SNAP_LEN},
    packet::{rd, vlans, Ip, Vlans},
};

/// Writes the packet's record (or capture record) to the ring.
#[inline(always)]
pub fn write<const L3: usize>(
    ctx: &TcContext,
    key: &HopKey,
    ip: &Ip,
    tcp_flags: u8,
    eth_dst: [u8; 6],
    ts_ns: u64,
) -> Result<(), ()> {
    let fields = Fields {
        key,
        ip,
        tcp_flags,
        vlans: vlans::<L3>(ctx)?,
        eth_src: rd(ctx, 6)?,
        eth_dst,
        ts_ns,
    };
    let snap = global(&SNAP_LEN);
    if snap == 0 {
        let Some(mut entry) = EVENTS.reserve::<PacketRecord>(0) else {
            bump(COUNTER_LOST);
            return Ok(());
        };
        fill_packet(ctx, entry.as_mut_ptr(), KIND_PACKET, &fields);
        entry.submit(wakeup());
    } else if snap as usize <= SNAP_SMALL {
        // --pcap: a record kind of its own, so the default path above is the same as
        // without it; a small snap length takes a small ring slot.
        write_capture::<SNAP_SMALL>(ctx, snap, &fields);
    } else {
        write_capture::<SNAP_MAX>(ctx, snap, &fields);
    }
    Ok(())
}

/// What a record says about the packet besides the skb's own fields.
struct Fields<'a> {
    key: &'a HopKey,
    ip: &'a Ip,
    tcp_flags: u8,
    vlans: Vlans,
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    ts_ns: u64,
}

/// A capture record with room for `N` bytes of the frame.
#[inline(always)]
fn write_capture<const N: usize>(ctx: &TcContext, snap: u32, f: &Fields) {
    let Some(mut entry) = EVENTS.reserve::<CaptureRecord<N>>(0) else {
        bump(COUNTER_LOST);
        return;
    };
    let c = entry.as_mut_ptr();
    // SAFETY: `c` points at a reserved, exclusively owned capture record.
    let head = unsafe { core::ptr::addr_of_mut!((*c).head.packet) };
    fill_packet(ctx, head, KIND_CAPTURE, f);
    capture_bytes(ctx, c, snap);
    entry.submit(wakeup());
}

/// Fills a packet record at `r`, a reserved, exclusively owned `PacketRecord`-sized slot.
#[inline(always)]
fn fill_packet(ctx: &TcContext, r: *mut PacketRecord, kind: u32, f: &Fields) {
    let (key, ip, vlans) = (f.key, f.ip, &f.vlans);
    // SAFETY: ctx.skb.skb is the valid __sk_buff the program was called with.
    let skb = unsafe { &*ctx.skb.skb };
    let (outer, inner) = (vlans.outer, vlans.inner);
    // SAFETY: `r` points at a reserved, exclusively owned PacketRecord-sized slot.
    unsafe {
        (*r).kind = kind;
        (*r).ifindex = key.ifindex;
        (*r).ts_ns = f.ts_ns;
        (*r).src = key.src;
        (*r).dst = key.dst;
        (*r).eth_src = f.eth_src;
        (*r).eth_dst = f.eth_dst;
        (*r).sport = key.sport;
        (*r).dport = key.dport;
        (*r).ip_len = ip.len;
        (*r).vlan = outer.1 & 0x0fff;
        (*r).vlan_tpid = outer.0;
        (*r).vlan_inner = inner.1 & 0x0fff;
        (*r).vlan_prio = ((outer.1 >> 13) as u8) | (((inner.1 >> 13) as u8) << 4);
        (*r).vlan_tags = vlans.count;
        (*r).frag = ip.frag;
        (*r)._pad = 0;
        (*r).frag_off = ip.frag_off;
        (*r).site = key.site;
        (*r).frag_id = ip.frag_id;
        (*r).mark = skb.mark;
        (*r).hash = skb.hash;
        (*r).dir = key.dir;
        (*r).family = ip.family;
        (*r).proto = key.proto;
        (*r).tcp_flags = f.tcp_flags;
    }
}

/// Copies the first `snap` bytes of the frame (at most `N`, at most the frame) behind a
/// capture record's head; `cap_len` 0 when the copy failed.
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
