//! Correlation: the flow table ([`flows`]), the one place where events become hops,
//! decisions, drops and distributions, and the kernel's ECMP choice redone in userspace
//! ([`multipath`]) to check the next-hop the wire showed against the one the hash selects,
//! and the kernel's per-VIP totals by topology named ([`totals`]).

pub mod flows;
pub mod multipath;
pub mod totals;
