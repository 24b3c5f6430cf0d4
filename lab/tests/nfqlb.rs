//! The lab with Meridio's real load balancer: nfqlb in both frontends spreads connections
//! over three targets (IPv4 and IPv6), the gateway's ECMP and the proxy's spread them over
//! both frontends, a deactivated target gets nothing, and teardown leaves nothing behind.
//! Needs root; skips without it outside CI (CI must run it).

use std::collections::BTreeSet;
use std::net::IpAddr;

use lab::{Lab, LabSpec, Lb, Role, VIP4, VIP6};

const PREFIX: &str = "nq-";

fn root_or_skip(test: &str) -> bool {
    if !lab::cmd::is_root() {
        if std::env::var_os("CI").is_some() {
            panic!("{test}: the lab tests need root, and CI must run them");
        }
        eprintln!("SKIPPED {test}: needs root (network namespaces); run `sudo cargo xtask test`");
        return false;
    }
    true
}

#[test]
fn nfqlb_spreads_over_targets_and_frontends() {
    if !root_or_skip("nfqlb_spreads_over_targets_and_frontends") {
        return;
    }
    let lab = Lab::up(LabSpec {
        prefix: PREFIX.into(),
        lb: Lb::Nfqlb,
        targets: 3,
        ..LabSpec::default()
    })
    .expect("the nfqlb lab comes up");
    assert!(lab.queue_rule().is_some());
    let targets = lab.targets();
    assert_eq!(targets.len(), 3);
    assert_eq!(targets[1].ns, "nq-target-a-2");
    assert_eq!(targets[1].hostname, "nq-target-a-2");
    assert_eq!(targets[2].fwmark, 5003);
    assert_eq!(lab.target_ns(1), lab.ns(Role::Target));
    let pids: Vec<u32> = [Role::FrontendA, Role::FrontendB]
        .iter()
        .map(|r| lab.nfqlb_pid(*r).expect("nfqlb runs in each frontend"))
        .collect();
    assert!(lab
        .nfqlb(Role::FrontendA, &["show", "--shm=tshm-stream-a"])
        .unwrap()
        .contains("5003"));

    // Ground truth: SYNs entering each frontend from the gateway, SYN-ACKs from the proxy.
    for fe in [Role::FrontendA, Role::FrontendB] {
        let ns = lab.ns(fe);
        let ext = lab.names().fe_ext;
        lab.add_counter(
            &ns,
            "syn_in",
            &format!("iifname \"{ext}\" tcp dport 4000 tcp flags & (syn|ack) == syn"),
        )
        .unwrap();
        lab.add_counter(
            &ns,
            "synack_in",
            &format!("iifname != \"{ext}\" tcp sport 4000 tcp flags & (syn|ack) == syn|ack"),
        )
        .unwrap();
    }

    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        let r = lab.mconnect(vip, 300).unwrap();
        assert_eq!(r.failed_connects, 0, "{vip}: {r:?}");
        assert_eq!(r.connects, 300);
        for t in &targets {
            assert!(r.count(&t.hostname) > 30, "{vip}: {r:?}");
        }
        assert_eq!(r.hosts.values().sum::<u64>(), 300, "{vip}: {r:?}");
    }
    for fe in [Role::FrontendA, Role::FrontendB] {
        let ns = lab.ns(fe);
        let syn = lab.counter(&ns, "syn_in").unwrap();
        let synack = lab.counter(&ns, "synack_in").unwrap();
        assert!(
            syn > 60 && synack > 60,
            "{ns}: {syn} SYNs in, {synack} SYN-ACKs in"
        );
    }

    // One connection from each of 12 source ports lands on more than one target.
    let hosts: BTreeSet<String> = (0..12)
        .map(|i| lab.ask_hostname(IpAddr::V4(VIP4), 36100 + i).unwrap())
        .collect();
    assert!(hosts.len() > 1, "{hosts:?}");
    assert!(hosts
        .iter()
        .all(|h| targets.iter().any(|t| &t.hostname == h)));

    // The echo servers (one per target) behind nfqlb.
    let _echo = lab.listen().unwrap();
    let echoed = lab.connect(IpAddr::V6(VIP6), 36200, b"hello").unwrap();
    assert_eq!(echoed, b"hello");

    lab.deactivate_target(2).unwrap();
    let r = lab.mconnect(IpAddr::V4(VIP4), 200).unwrap();
    assert_eq!(r.failed_connects, 0, "{r:?}");
    assert_eq!(r.count("nq-target-a-2"), 0, "{r:?}");
    lab.activate_target(2).unwrap();
    let r = lab.mconnect(IpAddr::V4(VIP4), 200).unwrap();
    assert!(r.count("nq-target-a-2") > 0, "{r:?}");

    drop(_echo);
    drop(lab);
    let left = lab::cmd::run("ip", &["netns", "list"]).unwrap();
    assert!(!left.contains(PREFIX), "namespaces left: {left}");
    for pid in pids {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| !s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')));
        assert!(!alive, "nfqlb {pid} still runs");
    }
}
