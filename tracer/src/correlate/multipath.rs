//! The kernel's ECMP choice, redone in userspace: which next-hop a given multipath hash
//! selects, and whether the tracer can know the hash the kernel used.
//!
//! Hand-written on purpose: it mirrors two small kernel routines no crate provides.
//! `fib_rebalance()` / `rt6_upper_bound_set()` give each live next-hop an upper bound of
//! `round((cumulative weight << 31) / total weight) - 1`; `fib_select_multipath()` /
//! `fib6_select_path()` pick the first next-hop whose bound is >= the hash. The hash is
//! already shifted right by one (`fib_multipath_hash()` returns `mhash >> 1`).
use crate::netns::kernel_state::NextHop;

/// Upper bound per next-hop, `None` for next-hops the kernel skips (dead / link down).
pub fn upper_bounds(nexthops: &[NextHop]) -> Vec<Option<u32>> {
    let total: u64 = nexthops
        .iter()
        .filter(|n| n.alive)
        .map(|n| u64::from(n.weight))
        .sum();
    let mut cumulative = 0u64;
    nexthops
        .iter()
        .map(|n| {
            if !n.alive || total == 0 {
                return None;
            }
            cumulative += u64::from(n.weight);
            // DIV_ROUND_CLOSEST_ULL(cumulative << 31, total) - 1
            let bound = ((cumulative << 31) + total / 2) / total;
            Some((bound as u32).wrapping_sub(1))
        })
        .collect()
}

/// Index of the next-hop the kernel selects for `hash` (already `>> 1`).
pub fn select(nexthops: &[NextHop], hash: u32) -> Option<usize> {
    upper_bounds(nexthops)
        .iter()
        .position(|b| b.is_some_and(|b| hash <= b))
}

/// Where the multipath hash of a routed packet comes from, and so whether it is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashSource {
    /// Read from the kernel's hash function by an fexit / kretprobe hook: exact.
    Kernel { hook: &'static str },
    /// Policy 1 reuses an L4 hash the skb already carries (`skb->l4_hash`, e.g. the
    /// sender's socket hash over veth): the hash seen at TC, shifted, is the kernel's.
    SkbL4Hash,
    /// The kernel computes the hash itself with a per-boot random key: not knowable here.
    Unknown { why: String },
}

impl HashSource {
    /// Decides from the namespace's hash policy and the skb hash seen at the routed hop.
    pub fn infer(policy: Option<u8>, skb_hash: u32) -> HashSource {
        match policy {
            Some(1) if skb_hash != 0 => HashSource::SkbL4Hash,
            Some(1) => HashSource::Unknown {
                why: "policy 1 and no hash on the skb: the kernel hashes the 5-tuple with a \
                      per-boot key that only kprobes/fentry could show"
                    .into(),
            },
            Some(p) => HashSource::Unknown {
                why: format!(
                    "fib_multipath_hash_policy {p} makes the kernel hash with a per-boot key \
                     that only kprobes/fentry could show"
                ),
            },
            None => HashSource::Unknown {
                why: "the namespace's fib_multipath_hash_policy could not be read".into(),
            },
        }
    }

    pub fn label(&self) -> String {
        match self {
            HashSource::Kernel { hook } => format!("kernel ({hook})"),
            HashSource::SkbL4Hash => "skb L4 hash reused by policy 1".into(),
            HashSource::Unknown { why } => format!("unknown: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nh(weight: u32, alive: bool) -> NextHop {
        NextHop {
            gw: None,
            ifindex: 1,
            weight,
            alive,
        }
    }

    #[test]
    fn equal_weights_split_the_hash_space_in_halves() {
        let two = [nh(1, true), nh(1, true)];
        assert_eq!(
            upper_bounds(&two),
            vec![Some((1 << 30) - 1), Some((1 << 31) - 1)]
        );
        assert_eq!(select(&two, 0), Some(0));
        assert_eq!(select(&two, (1 << 30) - 1), Some(0));
        assert_eq!(select(&two, 1 << 30), Some(1));
        assert_eq!(select(&two, u32::MAX >> 1), Some(1));
    }

    #[test]
    fn weights_1_2_1_and_dead_next_hops() {
        let three = [nh(1, true), nh(2, true), nh(1, true)];
        assert_eq!(
            upper_bounds(&three),
            vec![
                Some((1 << 29) - 1),
                Some((3 << 29) - 1),
                Some((1 << 31) - 1)
            ]
        );
        let dead_middle = [nh(1, true), nh(2, false), nh(1, true)];
        assert_eq!(select(&dead_middle, (1 << 30) - 1), Some(0));
        assert_eq!(select(&dead_middle, 1 << 30), Some(2));
        assert_eq!(select(&[nh(1, false)], 5), None);
        assert_eq!(select(&[], 5), None);
    }

    #[test]
    fn hash_source_follows_the_policy() {
        assert_eq!(HashSource::infer(Some(1), 42), HashSource::SkbL4Hash);
        assert!(matches!(
            HashSource::infer(Some(1), 0),
            HashSource::Unknown { .. }
        ));
        assert!(matches!(
            HashSource::infer(Some(3), 42),
            HashSource::Unknown { .. }
        ));
        assert!(HashSource::infer(None, 1).label().starts_with("unknown"));
    }
}
