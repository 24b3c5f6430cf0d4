//! What the tracer needs of the kernel's privileges, checked before anything is loaded so
//! that a container started with too few capabilities stops with one sentence naming the
//! missing one, instead of failing half-way through an attach with a bare EPERM.
//!
//! Measured under a reduced bounding set (`setpriv --bounding-set=-all,+...`): the tracer
//! traces with exactly these three; without `CAP_SYS_PTRACE` a root process with every
//! capability cannot have its `/proc/<pid>/ns/net` opened (the kernel's ptrace access
//! check wants the caller's capabilities to cover the target's); without `CAP_NET_ADMIN`
//! a clsact qdisc cannot be added (`--attach netlink`, the default before 6.6).
//! `CAP_SYS_ADMIN` grants what `CAP_BPF` and `CAP_PERFMON` would (the kernel accepts
//! either), and `setns` into a pod's network namespace has no narrower capability.
//! On kernels before 5.11 maps are charged to `RLIMIT_MEMLOCK` ([`memlock`]), which
//! may need `CAP_SYS_RESOURCE` to raise.
pub mod memlock;
pub mod tools;

use anyhow::{bail, Result};
use rustix::thread::{capabilities, CapabilitySet};

/// One capability the tracer needs, and why (for the sentence).
struct Need {
    cap: CapabilitySet,
    name: &'static str,
    why: &'static str,
}

/// The capabilities the tracer cannot run without, in the order they are checked.
const NEEDED: [Need; 3] = [
    Need {
        cap: CapabilitySet::SYS_ADMIN,
        name: "CAP_SYS_ADMIN",
        why: "to load its eBPF programs and enter pods' network namespaces",
    },
    Need {
        cap: CapabilitySet::NET_ADMIN,
        name: "CAP_NET_ADMIN",
        why: "to attach its TC programs to the pods' interfaces",
    },
    Need {
        cap: CapabilitySet::SYS_PTRACE,
        name: "CAP_SYS_PTRACE",
        why: "to open the network namespace of other pods' processes (/proc/<pid>/ns/net)",
    },
];

/// Fails with one sentence when this process is not root, or when its effective set
/// lacks a capability the tracer needs; then raises `RLIMIT_MEMLOCK` where the kernel
/// charges maps to it.
pub fn check() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("the tracer must run as root (it loads eBPF programs and enters network namespaces); run it with sudo");
    }
    let effective = capabilities(None)?.effective;
    if let Some(missing) = first_missing(effective) {
        bail!(
            "the tracer needs the {} capability {}, and this process does not have it: add it to the container's capabilities (deploy/daemonset.yaml lists them all) or run the tracer as full root",
            missing.name,
            missing.why
        );
    }
    memlock::raise()
}

fn first_missing(effective: CapabilitySet) -> Option<&'static Need> {
    NEEDED.iter().find(|n| !effective.contains(n.cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_needed_capability_is_named_when_missing() {
        let all = NEEDED.iter().fold(CapabilitySet::empty(), |s, n| s | n.cap);
        assert!(first_missing(all).is_none());
        for n in &NEEDED {
            let missing = first_missing(all - n.cap).expect("a capability is missing");
            assert_eq!(missing.name, n.name);
        }
    }

    /// deploy/daemonset.yaml adds every capability checked here (tests/image.rs runs the
    /// image with exactly its list).
    #[test]
    fn the_daemonset_adds_every_needed_capability() {
        let yaml = include_str!("../../../deploy/daemonset.yaml");
        let add = yaml
            .lines()
            .find_map(|l| l.trim().strip_prefix("add:"))
            .expect("the DaemonSet adds capabilities");
        for n in &NEEDED {
            let name = n.name.trim_start_matches("CAP_");
            assert!(add.contains(&format!("\"{name}\"")), "{name} not in {add}");
        }
    }
}
