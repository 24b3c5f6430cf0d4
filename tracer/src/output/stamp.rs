//! Where and when, on every JSON record: the node's name, and wall-clock time for the
//! kernel's timestamps. `ts_ns` is `bpf_ktime_get_ns`, CLOCK_MONOTONIC: it means nothing on
//! another node, so records of several nodes (`tracer merge`) are put on one time line by
//! the wall clock. The offset between the two clocks is read once at start.
use rustix::time::{clock_gettime, ClockId};

/// The node name and the MONOTONIC -> REALTIME offset of this run.
#[derive(Clone, Debug)]
pub struct Stamp {
    pub node: String,
    /// REALTIME minus MONOTONIC, in ns.
    offset_ns: i128,
    /// Half the widest gap between the two REALTIME reads around the MONOTONIC one of the
    /// best try: how far the offset can be off when it was read.
    pub read_error_ns: u64,
}

fn clock_ns(clock: ClockId) -> i128 {
    let ts = clock_gettime(clock);
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl Stamp {
    /// Reads REALTIME, MONOTONIC, REALTIME back to back a few times and keeps the try
    /// whose REALTIME reads are closest (the one least disturbed by preemption).
    pub fn measure(node: String) -> Stamp {
        let (mut best_gap, mut offset_ns) = (i128::MAX, 0);
        for _ in 0..16 {
            let r1 = clock_ns(ClockId::Realtime);
            let m = clock_ns(ClockId::Monotonic);
            let r2 = clock_ns(ClockId::Realtime);
            if r2 - r1 < best_gap {
                best_gap = r2 - r1;
                offset_ns = (r1 + r2) / 2 - m;
            }
        }
        Stamp {
            node,
            offset_ns,
            read_error_ns: (best_gap.max(0) as u64).div_ceil(2),
        }
    }

    /// Nanoseconds since the Unix epoch for a kernel (CLOCK_MONOTONIC) timestamp.
    pub fn wall_ns(&self, ts_ns: u64) -> i128 {
        ts_ns as i128 + self.offset_ns
    }

    /// A fixed offset: the record-form tests and the rate bench.
    pub fn fixed(node: &str, offset_ns: i128) -> Stamp {
        Stamp {
            node: node.into(),
            offset_ns,
            read_error_ns: 0,
        }
    }
}

/// RFC 3339 in UTC with nanoseconds, e.g. `2026-12-03T10:11:12.123456789Z`.
pub fn rfc3339(wall_ns: i128) -> String {
    match jiff::Timestamp::from_nanosecond(wall_ns) {
        Ok(t) => format!("{t:.9}"),
        Err(_) => String::new(), // outside jiff's range (years -9999..9999): cannot happen
    }
}

/// The node's name when --node does not give it: the kernel's hostname (uname, no NSS
/// lookup, so a static binary in an empty root finds it too). In a DaemonSet pod with
/// hostNetwork that is the node's hostname; the manifest passes the Kubernetes node name.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_time_is_the_realtime_clock_within_the_read_error() {
        let s = Stamp::measure("n1".into());
        assert!(s.read_error_ns < 1_000_000, "{s:?}");
        let (m, r) = (clock_ns(ClockId::Monotonic), clock_ns(ClockId::Realtime));
        let diff = (s.wall_ns(m as u64) - r).abs();
        // The two reads above are apart by a few µs; allow for a preempted test thread.
        assert!(diff < 50_000_000, "{diff} ns off");
    }

    #[test]
    fn formats_rfc3339_utc_with_nanoseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(1_796_292_672_123_456_789),
            "2026-12-03T10:11:12.123456789Z"
        );
        assert_eq!(Stamp::fixed("n", 1_000).wall_ns(5), 1_005);
    }

    #[test]
    fn the_hostname_is_the_kernels() {
        // The kernel's hostname as procfs shows it (uname reads the same UTS namespace).
        let proc = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(hostname(), proc.trim_end_matches('\n'));
        assert!(!hostname().is_empty());
    }
}
