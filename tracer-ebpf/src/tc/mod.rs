//! The TC classifiers on every traced interface: parse, keep the VIP flows, count the hop,
//! hand the packet to its route lookup ([`crate::tie`]) and write its record.
use aya_ebpf::{bindings::TC_ACT_UNSPEC, macros::classifier, programs::TcContext};
use network_types::eth::EthHdr;
use tracer_common::{
    DeviceSite, HopKey, IfaceKey, COUNTER_MATCHED, COUNTER_UNRECORDED, DIR_EGRESS, DIR_INGRESS,
    PROTO_TCP,
};

use crate::{
    clock,
    events::bump,
    kernel::{dev_site, kread},
    maps::{global, DEVICES, L3_IFACES, NETNS_OFFSETS, RECORD_BUDGET, SITE},
    packet::{self, frag, is_vlan, rd, Ip, VLAN_HDR_LEN},
    tie,
    vip::client_port_matches,
};

mod hop;
mod record;

const TCP_SYN_FIN_RST: u8 = 0x01 | 0x02 | 0x04;
const TCP_SYN: u8 = 0x02;

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

/// The rest of `try_observe` for an IP header at the constant offset `L3` (see
/// [`packet::ip`]), step by step.
#[inline(always)]
fn observe_ip<const L3: usize>(ctx: &TcContext, dir: u8, ether_type: u16) -> Result<(), ()> {
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
    let Some(mut ip) = packet::ip::parse::<L3>(ctx, ether_type, &mut key)? else {
        return Ok(());
    };
    let Some(tcp_flags) = packet::transport(ctx, &mut key, &mut ip)? else {
        return Ok(());
    };
    if !client_port_matches(ip.to_vip, key.sport, key.dport) {
        return Ok(());
    }
    // SAFETY: ctx.skb.skb is the valid __sk_buff the program was called with.
    let skb = unsafe { &*ctx.skb.skb };
    // Map keys must live on the BPF stack, not point into the context.
    key.ifindex = skb.ifindex;
    let Some((site, l3_iface)) = iface_of(ctx, key.ifindex) else {
        return Ok(());
    };
    key.site = site;
    bump(COUNTER_MATCHED);
    frag::remember_first(&key, &ip);

    let eth_dst: [u8; 6] = rd(ctx, 0)?;
    // The routed hop's count is kept per next-hop: its Ethernet destination is the key.
    if dir == DIR_EGRESS && l3_iface {
        key.eth_dst = eth_dst;
    }
    let counted = hop::count(&key, ip.len, clock::coarse_now_ns());
    let first = counted.first_ns != 0;
    // A TCP flow starts with its SYN, or SYN-ACK on the VIP's side (a hop entry evicted and
    // made again is no new flow); other protocols with their hop's first packet.
    let new_flow = if key.proto == PROTO_TCP {
        tcp_flags & TCP_SYN != 0
    } else {
        first
    };
    hop::total(&key, ip.to_vip, ip.len, new_flow);
    let budget = global(&RECORD_BUDGET);
    let record = first || tcp_flags & TCP_SYN_FIN_RST != 0 || counted.packets <= u64::from(budget);
    // Only a recorded packet reads the precise clock.
    let ts_ns = match (record, first) {
        (false, _) => 0,
        (true, true) => counted.first_ns,
        (true, false) => clock::now_ns(),
    };

    hand_to_lookup(&key, &ip, skb.mark, ts_ns, l3_iface);
    if !record {
        bump(COUNTER_UNRECORDED);
        return Ok(());
    }
    record::write::<L3>(ctx, &key, &ip, tcp_flags, eth_dst, ts_ns)
}

/// The site of the namespace this TC program runs in, and whether the interface routes
/// (`None`: not traced). Read only for packets of the traced flows. An object of one site
/// has its `SITE`; the object every site shares reads the packet's device, and finds it in
/// `DEVICES`, or else reads its namespace and keeps the answer there.
#[inline(always)]
fn iface_of(ctx: &TcContext, ifindex: u32) -> Option<(u16, bool)> {
    let site = global(&SITE);
    if site != 0 {
        return Some((site, routes(ifindex, site)));
    }
    let [skb_dev, dev_nd_net, net_ns_inum] = global(&NETNS_OFFSETS);
    // The context is the kernel's `sk_buff` (`__sk_buff` is its view for programs).
    let dev: u64 = kread(ctx.skb.skb as u64, skb_dev).ok()?;
    // SAFETY: the value is copied out at once.
    if let Some(d) = unsafe { DEVICES.get(dev) } {
        if d.ifindex == ifindex {
            return Some((d.site, d.l3 != 0));
        }
    }
    let site = dev_site(dev, dev_nd_net, net_ns_inum)?;
    let l3 = routes(ifindex, site);
    let known = DeviceSite {
        ifindex,
        site,
        l3: u8::from(l3),
        _pad: 0,
    };
    // Full: the next packet reads the namespace again (slower, not wrong).
    let _ = DEVICES.insert(dev, known, 0);
    Some((site, l3))
}

/// Whether the interface routes (a site's bridge0, in `L3_IFACES`).
#[inline(always)]
fn routes(ifindex: u32, site: u16) -> bool {
    let iface = IfaceKey {
        ifindex,
        site,
        _pad: 0,
    };
    // SAFETY: presence test only.
    unsafe { L3_IFACES.get(iface).is_some() }
}

/// The packet's part in the tie to its route lookup: at egress it has been routed (the
/// ingress slot is done) and may take a lookup waiting for it; entering a routed interface
/// it primes the lookup and hash hooks. Only a recorded packet (`ts_ns` not 0) primes them:
/// a packet the budget leaves out gets no lookup or hash records either.
#[inline(always)]
fn hand_to_lookup(key: &HopKey, ip: &Ip, mark: u32, ts_ns: u64, l3_iface: bool) {
    if key.dir == DIR_EGRESS {
        tie::forget_last_ingress();
        tie::tie_lookup(key, ip.family, mark, ts_ns);
    } else if l3_iface {
        if ip.to_vip && ts_ns != 0 {
            tie::arm_deferred_lookups(ts_ns);
        }
        tie::remember_ingress(key, ip.family, mark, ts_ns);
    }
}
