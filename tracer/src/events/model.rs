//! The typed events every stage after decoding works on.
use std::net::IpAddr;

/// TC hook direction on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    Ingress,
    Egress,
}

impl Dir {
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::Ingress => "ingress",
            Dir::Egress => "egress",
        }
    }
}

pub type Mac = [u8; 6];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub ts_ns: u64,
    pub ifindex: u32,
    pub dir: Dir,
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub len: u16,
    pub tcp_flags: u8,
    pub eth_src: Mac,
    pub eth_dst: Mac,
    pub vlan: Vlan,
    pub mark: u32,
    pub hash: u32,
    /// Set when the packet is an IP fragment.
    pub frag: Option<Frag>,
    /// The frame's first bytes, with `--pcap` only. Boxed: every event waiting in the
    /// reorder window is the size of a packet, and most have no capture.
    pub snap: Option<Box<Snap>>,
}

/// The first bytes of a frame as the TC program copied them (`--pcap`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snap {
    /// The frame's length at the hook (`skb->len`).
    pub wire_len: u32,
    pub bytes: Vec<u8>,
}

/// An IP fragment: which datagram, where in it, and whether its ports are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frag {
    /// IPv4 identification or IPv6 fragment header identification.
    pub id: u32,
    /// Offset of its payload in the datagram, in bytes (0: the first fragment).
    pub offset: u16,
    pub more: bool,
    /// A later fragment whose first fragment was not seen: counted under ports 0.
    pub orphan: bool,
}

/// The VLAN tags of a frame, outermost first (802.1Q, or 802.1ad QinQ with two), whether
/// the kernel keeps a tag in the skb's metadata or in the frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vlan {
    /// Tags seen, 0 to 2.
    pub tags: u8,
    /// Outer VLAN id (0 without a tag), its priority (PCP) and TPID.
    pub id: u16,
    pub pcp: u8,
    pub tpid: u16,
    /// Inner VLAN id and priority of a QinQ frame (0 without).
    pub inner_id: u16,
    pub inner_pcp: u8,
}

impl Vlan {
    /// `100` or `100.200` (outer.inner), empty without a tag.
    pub fn ids_text(&self) -> String {
        match self.tags {
            0 => String::new(),
            1 => self.id.to_string(),
            _ => format!("{}.{}", self.id, self.inner_id),
        }
    }
}

/// A routing table lookup made for a traced packet (`fib*:fib*_table_lookup`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FibLookup {
    pub ts_ns: u64,
    pub table: u32,
    pub err: i32,
    pub iif: i32,
    pub oif: i32,
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// First usable next-hop of the matched route; unspecified when the route has none.
    pub gw: IpAddr,
    pub dev: String,
    /// The mark the lookup used (fwmark rules select on it): the lookup's own where the raw
    /// hooks read it, else the packet's at its ingress hook.
    pub mark: u32,
    /// The lookup did not follow its packet's ingress hook (it ran after an NFQUEUE verdict,
    /// or with a mark netfilter set): it was tied to the packet at its egress hook.
    pub after_ingress: bool,
}

/// The multipath hash the kernel computed for a traced packet (fexit/kretprobe hooks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashSample {
    pub ts_ns: u64,
    /// As the kernel compares it with the next-hop bounds (already shifted right by one).
    pub hash: u32,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub hook: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Packet(Packet),
    Fib(FibLookup),
    Hash(HashSample),
    Drop(Drop),
}

/// A traced packet the kernel dropped in the traced namespace (`skb:kfree_skb`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drop {
    pub ts_ns: u64,
    pub ifindex: u32,
    /// `enum skb_drop_reason` value (named with the kernel's own table by the loader).
    pub reason: u32,
    /// Kernel code address of the drop.
    pub location: u64,
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub mark: u32,
}
