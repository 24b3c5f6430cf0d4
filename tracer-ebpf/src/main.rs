//! eBPF side of the Meridio path tracer.
//!
//! - `meridio_tc_in` / `meridio_tc_out` ([`tc`]): one TC classifier per direction, attached to
//!   every traced interface. They parse Ethernet (802.1Q, 802.1ad/QinQ: two tags), IPv4/IPv6
//!   (extension headers walked, fragments tied to their datagram through `FRAGS`) and
//!   TCP/UDP/ICMP ([`packet`]), keep only packets of the VIP set (and of the client port, when
//!   one is given) and write one `PacketRecord` per kept packet. They never touch the packet
//!   and always return `TC_ACT_UNSPEC` (TCX_NEXT) so whatever else is attached still decides.
//! - `meridio_fib4` / `meridio_fib6` and their raw twins ([`fib`]): the routing table lookups.
//!   The kernel does not fill ports into the lookup key of forwarded packets, nor tell which
//!   netns looks up, so a lookup is only reported when it follows, on the same CPU, a traced
//!   ingress packet with the same addresses on the lookup's input interface (see
//!   `LAST_INGRESS`), or, for a lookup made later with a mark netfilter set (after nfqlb's
//!   NFQUEUE verdict, in its thread), when the TC egress hook sees the routed packet next on
//!   that CPU (`LAST_LOOKUP`); [`tie`] holds both halves of that handoff.
//! - `meridio_mph*` ([`hash`]): the multipath hash of the packet being routed.
//! - `meridio_drop` ([`drop`]): `skb:kfree_skb` for the traced flows.
//!
//! Every map and read-only global is in [`maps`]. Helpers are `#[inline(always)]`: the
//! programs must load on 5.10, whose verifier takes no bpf-to-bpf call passing the context
//! or a packet pointer.
#![no_std]
#![no_main]
// `atomic_xadd`: the bpfel target has no `AtomicU64::fetch_add`; the intrinsic, its result
// unused, becomes the BPF `lock xadd` every kernel has.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod clock;
mod drop;
mod events;
mod fib;
mod hash;
mod kernel;
mod maps;
mod packet;
mod tc;
mod tie;
mod vip;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
