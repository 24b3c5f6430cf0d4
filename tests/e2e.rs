//! End-to-end: the real eBPF programs against the namespace lab, as root. What the tracer
//! reports is compared with ground truth taken independently: nftables counters in the
//! frontend namespaces (which frontend really carried each direction of each flow), the
//! echo the client gets back, and bpftool / tc for what is loaded and attached.
mod support;

use support::lab_up;

use std::{net::IpAddr, time::Duration};

use lab::{Lab, LabSpec, Role, VIP4, VIP6};
use support::{
    held_by, orphaned_programs, our_program_ids, root_or_skip, run_tracer, tc_state, Finished,
    Tracer,
};
use tracer::records::{self, Record};

const FRONTENDS: [Role; 2] = [Role::FrontendA, Role::FrontendB];

/// Ground truth for one flow: which frontend carried each direction, and how many packets.
struct Truth {
    /// (frontend, packets toward the VIP seen entering it from the gateway)
    ingress: Vec<(Role, u64)>,
    /// (frontend, packets from the VIP seen entering it from the proxy)
    egress: Vec<(Role, u64)>,
}

fn counter_name(dir: &str, vip: IpAddr, port: u16) -> String {
    format!("{dir}_{}_{port}", if vip.is_ipv6() { "v6" } else { "v4" })
}

fn arm_truth(lab: &Lab, vip: IpAddr, port: u16) {
    for fe in FRONTENDS {
        lab.add_frontend_counter(fe, &counter_name("eg", vip, port), vip, port)
            .unwrap();
        lab.add_frontend_ingress_counter(fe, &counter_name("in", vip, port), vip, port)
            .unwrap();
    }
}

fn read_truth(lab: &Lab, vip: IpAddr, port: u16) -> Truth {
    let read = |dir: &str| -> Vec<(Role, u64)> {
        FRONTENDS
            .iter()
            .map(|fe| {
                (
                    *fe,
                    lab.frontend_counter(*fe, &counter_name(dir, vip, port))
                        .unwrap(),
                )
            })
            .collect()
    };
    Truth {
        ingress: read("in"),
        egress: read("eg"),
    }
}

/// The one frontend that carried packets in `counts`; fails when both or none did.
fn the_frontend(counts: &[(Role, u64)], what: &str) -> (Role, u64) {
    let used: Vec<_> = counts.iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(
        used.len(),
        1,
        "{what}: expected exactly one frontend to carry it, got {counts:?}"
    );
    *used[0]
}

fn flow(f: &Finished, vip: IpAddr, port: u16) -> &records::Flow<'static> {
    let flows: Vec<&records::Flow> = f
        .flows()
        .into_iter()
        .filter(|s| s.flow.vip == vip && s.flow.client_port == port)
        .collect();
    assert_eq!(
        flows.len(),
        1,
        "one flow summary for {vip} port {port}: {flows:?}"
    );
    flows[0]
}

/// Hops and route lookups of one flow, in the order the tracer printed them.
fn flow_records(f: &Finished, vip: IpAddr, port: u16) -> Vec<&Record<'static>> {
    f.lines
        .iter()
        .map(|l| &l.record)
        .filter(|r| match r {
            Record::Hop(h) => {
                h.vip == vip
                    && ((h.path == "ingress" && h.sport == port)
                        || (h.path == "egress" && h.dport == port))
            }
            Record::Route(l) => l.flow.vip == vip && l.flow.client_port == port,
            _ => false,
        })
        .collect()
}

fn hop<'a>(recs: &[&'a Record<'a>], ifname: &str, dir: &str, flags: &str) -> &'a records::Hop<'a> {
    recs.iter()
        .find_map(|r| match r {
            Record::Hop(h) if h.ifname == ifname && h.dir == dir && h.tcp_flags == flags => Some(h),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {flags} hop at {ifname} {dir} in {recs:#?}"))
}

/// Checks one traced flow against the frontends' counters and the hop order of its
/// handshake, where one packet is alone in flight.
fn check_flow(lab: &Lab, f: &Finished, vip: IpAddr, port: u16, table: u32) {
    let truth = read_truth(lab, vip, port);
    let (in_fe, in_pkts) = the_frontend(&truth.ingress, "ingress");
    let (eg_fe, eg_pkts) = the_frontend(&truth.egress, "egress");
    let summary = flow(f, vip, port);
    let ctx = format!("{vip} port {port}: {summary:?}");

    // Egress: the next-hop and port the tracer names are the frontend that received the reply.
    let eg = &summary.egress;
    assert_eq!(
        eg.nexthop,
        Some(lab.frontend_conduit_ip(eg_fe, vip.is_ipv6())),
        "{ctx}"
    );
    assert_eq!(
        eg.ifname.as_deref(),
        Some(lab.proxy_port_towards(eg_fe)),
        "{ctx}"
    );
    assert_eq!(
        eg.packets, eg_pkts,
        "routed packets vs packets the frontend got: {ctx}"
    );
    assert!(eg.consistent, "{ctx}");
    assert_eq!(eg.nexthop_in_route, Some(true), "{ctx}");
    assert_eq!(eg.table, Some(table), "{ctx}");
    // Ingress: the conduit port named is the link from the frontend the gateway chose.
    assert_eq!(
        summary.ingress.ifname.as_deref(),
        Some(lab.proxy_port_towards(in_fe)),
        "{ctx}"
    );
    assert_eq!(summary.ingress.packets, in_pkts, "{ctx}");

    // Hop order of the SYN (ingress) and the SYN-ACK (egress).
    let recs = flow_records(f, vip, port);
    let target_port = lab.proxy_port_towards(Role::Target);
    let syn_in = hop(&recs, lab.proxy_port_towards(in_fe), "ingress", "SYN");
    let syn_out = hop(&recs, target_port, "egress", "SYN");
    assert!(syn_in.ts_ns < syn_out.ts_ns, "SYN order: {ctx}");
    assert_eq!(syn_in.path, "ingress");

    let sa = |ifname: &str, dir: &str| hop(&recs, ifname, dir, "SYN,ACK");
    let sa_port_in = sa(target_port, "ingress");
    let sa_br_in = sa("bridge0", "ingress");
    let sa_br_out = sa("bridge0", "egress");
    let sa_conduit_out = sa(lab.proxy_port_towards(eg_fe), "egress");
    let lookup = recs
        .iter()
        .find_map(|r| match r {
            Record::Route(l) if l.err == 0 && l.ts_ns > sa_br_in.ts_ns => Some(l),
            _ => None,
        })
        .unwrap_or_else(|| {
            panic!("no successful fib lookup after the SYN-ACK entered bridge0: {ctx}")
        });
    assert_eq!(lookup.table, table, "{ctx}");
    assert_eq!(lookup.dev, "bridge0", "{ctx}");
    assert_eq!(
        lookup.rule.as_ref().map(|r| r.selector.as_ref()),
        Some(format!("from {vip}").as_str()),
        "{ctx}"
    );
    let order = [
        sa_port_in.ts_ns,
        sa_br_in.ts_ns,
        lookup.ts_ns,
        sa_br_out.ts_ns,
        sa_conduit_out.ts_ns,
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "egress order proxy.cond in -> bridge0 in -> lookup -> bridge0 out -> conduit out: {order:?}"
    );
    assert_eq!(sa_br_out.nexthop, eg.nexthop, "{ctx}");
    assert_eq!(sa_br_out.path, "egress");
}

#[test]
fn egress_next_hop_and_ports_match_the_frontends_for_v4_and_v6() {
    let Some(_serial) = root_or_skip("egress_next_hop_and_ports_match_the_frontends_for_v4_and_v6")
    else {
        return;
    };
    let lab = lab_up("t1-");
    let _listener = lab.listen().unwrap();
    let ports: Vec<u16> = (35100..35108).collect();
    let vips = [IpAddr::V4(VIP4), IpAddr::V6(VIP6)];
    for vip in vips {
        for &port in &ports {
            arm_truth(&lab, vip, port);
        }
    }
    let proxy = lab.ns(Role::Proxy);
    let tracer = Tracer::start(&["--netns", &proxy, "--vip", "20.0.0.1", "--vip", "2000::1"]);
    for vip in vips {
        for &port in &ports {
            let payload = format!("flow {vip} {port}\n");
            let echo = lab.connect(vip, port, payload.as_bytes()).unwrap();
            assert_eq!(
                echo,
                payload.as_bytes(),
                "traffic keeps flowing while traced"
            );
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let f = tracer.stop(libc::SIGINT);
    assert!(
        f.status.success(),
        "tracer exit: {:?}\n{}",
        f.status,
        f.stderr
    );
    assert!(f.of_type("lost").is_empty(), "no records lost at this rate");

    let mut used = std::collections::HashSet::new();
    for vip in vips {
        let table = if vip.is_ipv6() { 2 } else { 1 };
        for &port in &ports {
            check_flow(&lab, &f, vip, port, table);
            used.insert(flow(&f, vip, port).egress.ifname.clone());
        }
    }
    // Not an assertion on the kernel's choice, just what this run shows.
    eprintln!("egress ports used over {} flows: {used:?}", 2 * ports.len());
}

#[test]
fn only_the_given_client_port_is_traced() {
    let Some(_serial) = root_or_skip("only_the_given_client_port_is_traced") else {
        return;
    };
    let lab = lab_up("t2-");
    let _listener = lab.listen().unwrap();
    arm_truth(&lab, IpAddr::V4(VIP4), 35201);
    let proxy = lab.ns(Role::Proxy);
    let tracer = Tracer::start(&[
        "--netns", &proxy, "--vip", "20.0.0.1", "--vip", "2000::1", "--port", "35201",
    ]);
    for (vip, port) in [
        (IpAddr::V4(VIP4), 35202),
        (IpAddr::V4(VIP4), 35201),
        (IpAddr::V6(VIP6), 35203),
    ] {
        let echo = lab.connect(vip, port, b"x\n").unwrap();
        assert_eq!(echo, b"x\n");
    }
    std::thread::sleep(Duration::from_millis(300));
    let f = tracer.stop(libc::SIGTERM);
    assert!(f.status.success(), "{}", f.stderr);
    let hops = f.hops();
    assert!(!hops.is_empty(), "the followed flow produced hops");
    for h in &hops {
        let client_port = if h.path == "ingress" {
            h.sport
        } else {
            h.dport
        };
        assert_eq!(client_port, 35201, "hop of another flow: {h:?}");
    }
    for r in f.routes() {
        assert_eq!(r.flow.client_port, 35201, "lookup of another flow: {r:?}");
    }
    assert_eq!(f.flows().len(), 1);
    check_flow(&lab, &f, IpAddr::V4(VIP4), 35201, 1);
}

#[test]
fn a_lab_with_other_table_numbers_is_read_not_assumed() {
    let Some(_serial) = root_or_skip("a_lab_with_other_table_numbers_is_read_not_assumed") else {
        return;
    };
    let lab = Lab::up(LabSpec {
        prefix: "t3-".into(),
        table_v4: 17,
        table_v6: 230,
        ..Default::default()
    })
    .unwrap();
    let _listener = lab.listen().unwrap();
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        arm_truth(&lab, vip, 35301);
    }
    let proxy = lab.ns(Role::Proxy);
    let tracer = Tracer::start(&[
        "--netns", &proxy, "--vip", "20.0.0.1", "--vip", "2000::1", "--port", "35301",
    ]);
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        lab.connect(vip, 35301, b"t\n").unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    check_flow(&lab, &f, IpAddr::V4(VIP4), 35301, 17);
    check_flow(&lab, &f, IpAddr::V6(VIP6), 35301, 230);
}

/// Nothing of ours stays loaded or attached after SIGINT, SIGTERM or SIGKILL; while the
/// tracer runs, the same checks do see it (so they can fail). Programs are tracked by the
/// ids the tracer process holds, so a tracer running elsewhere on the machine is no noise.
#[test]
fn nothing_is_left_behind_after_any_exit() {
    let Some(_serial) = root_or_skip("nothing_is_left_behind_after_any_exit") else {
        return;
    };
    let lab = lab_up("t4-");
    let proxy = lab.ns(Role::Proxy);
    let tc_before = tc_state(&proxy);
    assert!(
        orphaned_programs().is_empty(),
        "programs of an earlier run are loaded"
    );
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL] {
        let tracer = Tracer::start(&["--netns", &proxy, "--vip", "20.0.0.1"]);
        let held = held_by(tracer.pid());
        let ours: Vec<u64> = our_program_ids()
            .into_iter()
            .filter(|id| held.programs.contains(id))
            .collect();
        assert!(
            ours.len() >= 4,
            "TC and fib programs loaded while running: {held:?}"
        );
        // 4 interfaces x 2 directions (TCX) + the fib and kfree_skb tracepoints.
        assert!(held.links >= 10, "links while running: {held:?}");
        tracer.stop(signal);
        // The kernel frees programs once their last fd and link are gone (asynchronously).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let still = || -> Vec<u64> {
            let loaded = our_program_ids();
            ours.iter()
                .copied()
                .filter(|id| loaded.contains(id))
                .collect()
        };
        while !still().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            still().is_empty(),
            "programs left after signal {signal}: {:?}",
            still()
        );
        assert!(
            orphaned_programs().is_empty(),
            "orphans after signal {signal}"
        );
        assert_eq!(
            tc_state(&proxy),
            tc_before,
            "tc qdiscs/filters changed after signal {signal}"
        );
    }
}

/// The netlink attach path (forced): clsact filters outlive a killed process, so a later
/// start must find and remove them, and a clean exit must remove its own, qdisc included.
/// Ground truth: `tc` in the proxy namespace.
#[test]
fn netlink_mode_cleans_up_after_itself_and_after_a_killed_run() {
    let Some(_serial) = root_or_skip("netlink_mode_cleans_up_after_itself_and_after_a_killed_run")
    else {
        return;
    };
    let lab = lab_up("t6-");
    let proxy = lab.ns(Role::Proxy);
    let tc_before = tc_state(&proxy);
    let args = [
        "--netns",
        proxy.as_str(),
        "--vip",
        "20.0.0.1",
        "--attach",
        "netlink",
    ];

    let tracer = Tracer::start(&args);
    let during = tc_state(&proxy);
    assert!(
        during.contains("clsact") && during.contains("meridio_tc_in"),
        "{during}"
    );
    tracer.stop(libc::SIGKILL);
    let left = tc_state(&proxy);
    assert!(
        left.contains("meridio_tc_out"),
        "a killed netlink run leaves filters: {left}"
    );

    let tracer = Tracer::start(&args);
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    let notes = f.readies()[0].notes.join("; ");
    assert!(notes.contains("earlier, killed run"), "{notes}");
    assert_eq!(
        tc_state(&proxy),
        tc_before,
        "leftovers and our own filters and qdiscs removed"
    );

    // A foreign filter keeps its clsact: we remove only what is ours.
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", &proxy, "tc", "qdisc", "add", "dev", "bridge0", "clsact",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    support::ip(&[
        "netns", "exec", &proxy, "tc", "filter", "add", "dev", "bridge0", "ingress", "protocol",
        "ip", "pref", "7", "u32", "match", "u32", "0", "0",
    ]);
    let with_foreign = tc_state(&proxy);
    let tracer = Tracer::start(&args);
    tracer.stop(libc::SIGTERM);
    assert_eq!(
        tc_state(&proxy),
        with_foreign,
        "the foreign filter and its qdisc stay"
    );
}

/// Bad input: one clear sentence on stderr, a non-zero exit, nothing loaded.
#[test]
fn bad_input_gets_one_sentence_and_nothing_attached() {
    let Some(_serial) = root_or_skip("bad_input_gets_one_sentence_and_nothing_attached") else {
        return;
    };
    let lab = lab_up("t5-");
    let proxy = lab.ns(Role::Proxy);
    let target = lab.ns(Role::Target);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--netns", "no-such-ns", "--vip", "20.0.0.1"],
            "not found",
        ),
        (
            vec!["--netns", "999999999", "--vip", "20.0.0.1"],
            "no process with pid",
        ),
        (
            vec!["--netns", "/etc/hostname", "--vip", "20.0.0.1"],
            "not a network namespace",
        ),
        (
            vec!["--netns", &proxy, "--vip", "20.0.0.1", "--iface", "nope0"],
            "interface nope0 not found",
        ),
        (
            vec!["--netns", &proxy, "--vip", "20.0.0.1", "--iface", "lo"],
            "neither a bridge nor a bridge port",
        ),
        (
            // A target is traced as one unless --role says otherwise (it has no bridge).
            vec!["--netns", &target, "--role", "proxy", "--vip", "20.0.0.1"],
            "has no bridge",
        ),
        (
            vec!["--netns", &proxy, "--vip", "20.0.0.256"],
            "not an IPv4 or IPv6 address",
        ),
        (
            vec!["--netns", &proxy, "--vip", "20.0.0.1", "--vip", "20.0.0.1"],
            "given twice",
        ),
        (
            vec!["--netns", &proxy, "--vip", "20.0.0.1", "--port", "0"],
            "--port",
        ),
        (
            vec!["--netns", &proxy, "--vip", "20.0.0.1", "--port", "70000"],
            "--port",
        ),
        (
            vec!["--netns", &proxy, "--vip", "20.0.0.1", "--duration", "0"],
            "more than 0",
        ),
    ];
    for (args, needle) in cases {
        let (status, stdout, stderr) = run_tracer(&args);
        assert!(!status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr {stderr:?} lacks {needle:?}"
        );
        assert!(stdout.is_empty(), "{args:?} printed {stdout:?}");
        assert!(
            orphaned_programs().is_empty(),
            "{args:?} left programs loaded"
        );
    }
    // Not root: run as nobody.
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            support::TRACER,
        ])
        .args(["--netns", &proxy, "--vip", "20.0.0.1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must run as root"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr}");
}

/// The maps shared between the node object and each namespace's object are pinned in bpffs
/// only while that object loads. A pin a killed run left there (named by its pid) is removed
/// by the next start once that pid is gone, and said so; while the tracer runs none of its
/// own pins is left. Ground truth: the bpffs directory itself.
#[test]
fn a_killed_runs_pinned_map_is_removed_and_none_stays_pinned() {
    let Some(_serial) = root_or_skip("a_killed_runs_pinned_map_is_removed_and_none_stays_pinned")
    else {
        return;
    };
    let lab = lab_up("t9-");
    let proxy = lab.ns(Role::Proxy);
    // A pid no process has: the highest possible one, above pid_max.
    let stale = std::path::Path::new("/sys/fs/bpf/meridio-tracer-4194304-last_ingress");
    let _ = std::fs::remove_file(stale);
    let out = std::process::Command::new("bpftool")
        .args(["map", "create"])
        .arg(stale)
        .args([
            "type", "array", "key", "4", "value", "8", "entries", "1", "name", "stale",
        ])
        .output()
        .expect("bpftool");
    assert!(
        out.status.success(),
        "bpftool map create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tracer = Tracer::start(&["--netns", &proxy, "--vip", "20.0.0.1"]);
    assert!(!stale.exists(), "the stale pin is still there");
    let ours: Vec<String> = std::fs::read_dir("/sys/fs/bpf")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("meridio-tracer-{}-", tracer.pid())))
        .collect();
    assert!(ours.is_empty(), "pins of the running tracer: {ours:?}");
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    let notes = f.readies()[0].notes.join("; ");
    assert!(
        notes.contains("removed 1 pinned map"),
        "the ready record does not say so: {notes}"
    );
}
