//! Decoding of ring-buffer records into typed events.
//!
//! This is the only place that knows the byte layout of `tracer_common` records; every
//! later stage works on [`Event`]. Decoding never panics: short or unknown records are
//! reported as errors and skipped by the caller.
//!
//! By what each part owns: [`model`] (the typed events), [`decode`] (records to events),
//! [`counts`] (the kernel's per-hop counters and the VIP map's key form), and [`text`]
//! (how MACs, TCP flags and protocols are written).
mod counts;
mod decode;
mod model;
mod text;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

pub use counts::{vip_key, HopCounted};
pub use decode::{decode, DecodeError};
pub use model::*;
pub use text::{fmt_mac, fmt_tcp_flags, proto_name, FlagsText, MacText};
