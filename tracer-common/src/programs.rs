//! The eBPF programs' names, as the loader finds them in the object. The eBPF side cannot
//! use these constants (its program macros name each program after its function), so the
//! tracer's unit tests check that the built object holds exactly these programs.

/// TC classifier on ingress of every traced interface.
pub const TC_IN: &str = "meridio_tc_in";
/// TC classifier on egress of every traced interface.
pub const TC_OUT: &str = "meridio_tc_out";
/// `fib:fib_table_lookup` as a perf tracepoint.
pub const FIB4: &str = "meridio_fib4";
/// `fib6:fib6_table_lookup` as a perf tracepoint.
pub const FIB6: &str = "meridio_fib6";
/// `fib_table_lookup` as a raw tracepoint.
pub const FIB4_RAW: &str = "meridio_fib4_raw";
/// `fib6_table_lookup` as a raw tracepoint.
pub const FIB6_RAW: &str = "meridio_fib6_raw";
/// fexit of `fib_multipath_hash`.
pub const MPH4: &str = "meridio_mph4";
/// fexit of `rt6_multipath_hash`.
pub const MPH6: &str = "meridio_mph6";
/// kretprobe of `fib_multipath_hash`.
pub const MPH4_KRETPROBE: &str = "meridio_mph4_kr";
/// kretprobe of `rt6_multipath_hash`.
pub const MPH6_KRETPROBE: &str = "meridio_mph6_kr";
/// `skb:kfree_skb`.
pub const DROP: &str = "meridio_drop";

/// Every program of the object.
pub const ALL: [&str; 11] = [
    TC_IN,
    TC_OUT,
    FIB4,
    FIB6,
    FIB4_RAW,
    FIB6_RAW,
    MPH4,
    MPH6,
    MPH4_KRETPROBE,
    MPH6_KRETPROBE,
    DROP,
];
