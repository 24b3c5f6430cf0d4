//! The programs' clocks, both CLOCK_MONOTONIC in ns.
use aya_ebpf::helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns};

use crate::maps::{global, COARSE_CLOCK};

/// Now: what records carry.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// Now within a clock tick: a hop's last-seen stamp for packets the budget leaves out. It
/// reads no clocksource (a TSC read costs some 50 ns inside a virtual machine, a seventh
/// of a traced packet's time in the program). Kernels before 5.11 have no coarse clock
/// (`COARSE_CLOCK` 0; the verifier drops the branch not taken) and get the precise one.
#[inline(always)]
pub fn coarse_now_ns() -> u64 {
    if global(&COARSE_CLOCK) != 0 {
        // SAFETY: a helper without arguments.
        unsafe { bpf_ktime_get_coarse_ns() }
    } else {
        now_ns()
    }
}
