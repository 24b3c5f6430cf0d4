//! `skb:kfree_skb`: a packet of a traced flow freed as a drop in a traced namespace. The
//! headers are read from the freed skb in kernel memory, at offsets from BTF.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};
use tracer_common::{
    v4_mapped, DropRecord, AF_INET, AF_INET6, COUNTER_LOST, COUNTER_NOT_FOR_HOST,
    COUNTER_RST_CONSUMED, FIELD_ABSENT, KIND_DROP, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
};

use crate::{
    clock::now_ns,
    events::{bump, wakeup},
    kernel::{dev_site, kread, read},
    maps::{DROP_OFFSETS, EVENTS, LAST_INGRESS},
    packet::{ETH_P_IP, ETH_P_IPV6},
    tie::forget_last_ingress,
    vip::wanted,
};

const TCP_RST: u8 = 0x04;

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
    let Some(site) = dev_site(dev, off.dev_nd_net, off.net_ns_inum) else {
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
    let reason = if off.tp_reason == FIELD_ABSENT {
        0
    } else {
        read(ctx, off.tp_reason)?
    };
    // A reset the stack took in (e.g. for a half-open connection) is freed with no
    // reason: not a lost packet.
    if proto == PROTO_TCP
        && off.reason_not_specified != 0
        && reason == u32::from(off.reason_not_specified)
    {
        let flags: u8 = kread(l4, 13)?;
        if flags & TCP_RST != 0 {
            bump(COUNTER_RST_CONSUMED);
            return Ok(());
        }
    }
    // A copy a bridge flooded, discarded by a host it was not for (see
    // `COUNTER_NOT_FOR_HOST`).
    if off.reason_otherhost != 0 && reason == u32::from(off.reason_otherhost) {
        bump(COUNTER_NOT_FOR_HOST);
        return Ok(());
    }
    let record = DropRecord {
        kind: KIND_DROP,
        ifindex: kread::<i32>(dev, off.dev_ifindex)? as u32,
        ts_ns: now_ns(),
        location: read(ctx, off.tp_location)?,
        src,
        dst,
        reason,
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
