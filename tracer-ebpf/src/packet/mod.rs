//! The packet parser of the TC programs: Ethernet and its VLAN tags, IPv4/IPv6 ([`ip`]:
//! extension headers, fragments) and the transport ports. It only reads the packet.
use aya_ebpf::programs::TcContext;
use network_types::eth::EthHdr;
use tracer_common::{HopKey, FRAG_ORPHAN, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

pub mod frag;
pub mod ip;

pub use ip::Ip;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
pub const VLAN_HDR_LEN: usize = 4;

/// Reads a `T` at `off` in the packet: straight from the linear data when it is there
/// (no helper call; the common case), else through `bpf_skb_load_bytes`.
#[inline(always)]
pub fn rd<T: Copy>(ctx: &TcContext, off: usize) -> Result<T, ()> {
    let start = ctx.data();
    if start + off + core::mem::size_of::<T>() <= ctx.data_end() {
        // SAFETY: bounds checked against data_end just above, as the verifier requires.
        Ok(unsafe { core::ptr::read_unaligned((start + off) as *const T) })
    } else {
        ctx.load(off).map_err(|_| ())
    }
}

#[inline(always)]
pub fn is_vlan(ether_type: u16) -> bool {
    ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD
}

/// A frame's VLAN tags, outermost first, as (TPID, TCI); the first two are kept.
pub struct Vlans {
    pub outer: (u16, u16),
    pub inner: (u16, u16),
    pub count: u8,
}

/// The VLAN tags of a frame whose IP header is at `L3`: the one in the skb's metadata
/// (taken off the frame on ingress, or to be put on by the device on egress), then those in
/// the frame.
#[inline(always)]
pub fn vlans<const L3: usize>(ctx: &TcContext) -> Result<Vlans, ()> {
    // SAFETY: ctx.skb.skb is the valid __sk_buff the program was called with.
    let skb = unsafe { &*ctx.skb.skb };
    // Every value below is always written (no `Option` payload left unset): LLVM may read a
    // `None`'s payload from the stack before discarding it, and verifiers before 5.12 refuse
    // any read of stack that was never written ("invalid read from stack").
    let accel_present = skb.vlan_present != 0;
    let accel = if accel_present {
        // `vlan_proto` is in network order.
        (u16::from_be(skb.vlan_proto as u16), skb.vlan_tci as u16)
    } else {
        (0, 0)
    };
    let in_frame = if L3 > EthHdr::LEN {
        (
            u16::from_be(rd::<u16>(ctx, 12)?),
            u16::from_be(rd::<u16>(ctx, EthHdr::LEN)?),
        )
    } else {
        (0, 0)
    };
    let in_frame2 = if L3 > EthHdr::LEN + VLAN_HDR_LEN {
        (
            u16::from_be(rd::<u16>(ctx, EthHdr::LEN + 2)?),
            u16::from_be(rd::<u16>(ctx, EthHdr::LEN + VLAN_HDR_LEN)?),
        )
    } else {
        (0, 0)
    };
    // `L3` is a constant: only one arm of each test below is compiled.
    let (outer, inner, count) = if accel_present {
        if L3 > EthHdr::LEN {
            (accel, in_frame, 2)
        } else {
            (accel, (0, 0), 1)
        }
    } else if L3 > EthHdr::LEN + VLAN_HDR_LEN {
        (in_frame, in_frame2, 2)
    } else if L3 > EthHdr::LEN {
        (in_frame, (0, 0), 1)
    } else {
        ((0, 0), (0, 0), 0)
    };
    Ok(Vlans {
        outer,
        inner,
        count,
    })
}

/// Fills the ports into `key` and returns the TCP flags (0 for other protocols), or `None`
/// for a protocol that is not traced. A later fragment carries no transport header: its
/// ports are its first fragment's, or unknown (0, and `FRAG_ORPHAN`) when that was not seen.
#[inline(always)]
pub fn transport(ctx: &TcContext, key: &mut HopKey, ip: &mut Ip) -> Result<Option<u8>, ()> {
    let tcp_flags = match key.proto {
        PROTO_TCP | PROTO_UDP if ip.frag_off != 0 => {
            match frag::ports(key, ip.frag_id) {
                Some(ports) => {
                    key.sport = ports[0];
                    key.dport = ports[1];
                }
                None => ip.frag |= FRAG_ORPHAN,
            }
            0
        }
        PROTO_TCP | PROTO_UDP => {
            // Both ports in one read (and the TCP flags, byte 13, in a second).
            let ports: u32 = ctx.load(ip.l4).map_err(|_| ())?;
            let ports = ports.to_ne_bytes();
            key.sport = u16::from_be_bytes([ports[0], ports[1]]);
            key.dport = u16::from_be_bytes([ports[2], ports[3]]);
            if key.proto == PROTO_TCP {
                ctx.load::<u8>(ip.l4 + 13).map_err(|_| ())?
            } else {
                0
            }
        }
        PROTO_ICMP | PROTO_ICMPV6 => 0,
        _ => return Ok(None),
    };
    Ok(Some(tcp_flags))
}
