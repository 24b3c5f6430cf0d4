//! End-to-end tests of running the tracer on a node as an operator would: no arguments (the
//! VIPs are discovery's), and `node` / wall-clock time on every record. Real eBPF, the
//! namespace lab (prefix `x1-`), root. Ground truth: the lab's own configuration (its VIPs),
//! nftables counters in the frontends, the test's own clocks.
mod support;

use std::{net::IpAddr, time::Duration};

use lab::{Lab, Role, VIP4, VIP6};
use support::{lab_up, root_or_skip, view_command, Finished, Tracer};
use tracer::records;

const FRONTENDS: [Role; 2] = [Role::FrontendA, Role::FrontendB];

/// The frontend whose counter `name` saw packets; exactly one must have.
fn carried(lab: &Lab, name: &str) -> Role {
    let used: Vec<Role> = FRONTENDS
        .into_iter()
        .filter(|fe| lab.frontend_counter(*fe, name).unwrap() > 0)
        .collect();
    assert_eq!(used.len(), 1, "counter {name}: {used:?}");
    used[0]
}

/// The proxy's flow summary of the flow from client port `port`.
fn proxy_flow(f: &Finished, port: u16) -> &records::Flow<'static> {
    f.flows()
        .into_iter()
        .find(|s| s.flow.client_port == port && s.egress.nexthop.is_some())
        .unwrap_or_else(|| panic!("no flow summary with a next-hop for port {port}"))
}

/// With no --vip the tracer traces every VIP discovery finds (the lab's IPv4 and IPv6 VIP,
/// nothing else), says so in each ready record, and follows a flow of each family to the
/// frontend the counters name.
#[test]
fn without_arguments_every_discovered_vip_is_traced() {
    let Some(_serial) = root_or_skip("without_arguments_every_discovered_vip_is_traced") else {
        return;
    };
    let lab = lab_up("x1-");
    let _listener = lab.listen().unwrap();
    let (p4, p6) = (35971, 35972);
    let (v4, v6) = (IpAddr::V4(VIP4), IpAddr::V6(VIP6));
    for fe in FRONTENDS {
        lab.add_frontend_counter(fe, "eg4", v4, p4).unwrap();
        lab.add_frontend_counter(fe, "eg6", v6, p6).unwrap();
    }
    // Only this lab's netns files are visible, as on a CI node with only this lab.
    let tracer = Tracer::start_command(&mut view_command("x1-", false, &["--json"]));
    lab.connect(v4, p4, b"no args v4\n").unwrap();
    lab.connect(v6, p6, b"no args v6\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);

    let ready = f.readies();
    let traced: Vec<&str> = ready.iter().map(|r| r.netns.as_ref()).collect();
    for role in [Role::Proxy, Role::FrontendA, Role::FrontendB, Role::Target] {
        assert!(
            traced.contains(&lab.ns(role).as_str()),
            "{role:?} not traced: {traced:?}"
        );
    }
    for r in &ready {
        assert_eq!(r.vips_from, "discovery", "{r:?}");
        let mut vips = r.vips.to_vec();
        vips.sort();
        assert_eq!(vips, [v4, v6], "{r:?}");
    }
    for (port, counter, v6) in [(p4, "eg4", false), (p6, "eg6", true)] {
        let fe = carried(&lab, counter);
        let flow = proxy_flow(&f, port);
        assert_eq!(
            flow.egress.nexthop,
            Some(lab.frontend_conduit_ip(fe, v6)),
            "{flow:?}"
        );
    }
}

/// A node where discovery finds no VIP: one sentence, non-zero exit, nothing attached. The
/// tracer sees an empty netns directory and a /proc of its own pid namespace.
#[test]
fn without_arguments_and_without_vips_it_says_so() {
    let Some(_serial) = root_or_skip("without_arguments_and_without_vips_it_says_so") else {
        return;
    };
    let out = view_command("x1-nothing-", true, &["--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("discovery finds no VIP on this node") && stderr.contains("--vip"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn realtime_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

/// `--node` names every record; each record with a kernel time `ts_ns` carries the same
/// instant on the wall clock (`wall_ns`, and `time` in RFC 3339), which falls inside the
/// test's own wall-clock readings around the connection; without --node the node is the
/// hostname.
#[test]
fn every_record_says_node_and_wall_clock() {
    let Some(_serial) = root_or_skip("every_record_says_node_and_wall_clock") else {
        return;
    };
    let lab = lab_up("x1-");
    let _listener = lab.listen().unwrap();
    let proxy = lab.ns(Role::Proxy);
    let port = 35973;
    let tracer = Tracer::start(&[
        "--netns",
        &proxy,
        "--vip",
        "20.0.0.1",
        "--node",
        "x1-worker-7",
    ]);
    let before = realtime_ns();
    lab.connect(IpAddr::V4(VIP4), port, b"stamps\n").unwrap();
    let after = realtime_ns();
    std::thread::sleep(Duration::from_millis(200));
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);

    let ready = f
        .lines
        .iter()
        .find(|l| matches!(l.record, records::Record::Ready(_)))
        .expect("a ready record");
    let read_error = ready
        .stamp
        .clock_read_error_ns
        .expect("the ready record says how well the clock offset was read");
    assert!(read_error < 1_000_000, "{ready:?}");
    eprintln!("wall-clock offset read within {read_error} ns");
    let (mut timed, mut offset) = (0, None);
    for r in &f.lines {
        let s = &r.stamp;
        assert_eq!(s.node.as_deref(), Some("x1-worker-7"), "{r:?}");
        let Some(ts) = r.record.ts_ns() else {
            assert!(s.wall_ns.is_none() && s.time.is_none(), "{r:?}");
            continue;
        };
        timed += 1;
        let wall = s.wall_ns.unwrap_or_else(|| panic!("no wall_ns: {r:?}")) as i128;
        let time = s.time.as_deref().unwrap();
        let parsed: jiff::Timestamp = time.parse().unwrap();
        assert_eq!(parsed.as_nanosecond(), wall, "{r:?}");
        if matches!(&r.record, records::Record::Hop(h) if h.sport == port || h.dport == port) {
            // The packets were on the wire between the two readings (1 ms of slack for
            // the conversion and the readings themselves).
            assert!(
                wall >= before - 1_000_000 && wall <= after + 1_000_000,
                "hop at {wall} outside [{before}, {after}]: {r:?}"
            );
        }
        // One offset for the whole run.
        assert_eq!(
            wall - ts as i128,
            *offset.get_or_insert(wall - ts as i128),
            "{r:?}"
        );
    }
    let hops = f
        .hops()
        .into_iter()
        .filter(|h| h.sport == port || h.dport == port)
        .count();
    assert!(
        hops >= 4 && timed >= hops,
        "{hops} hops, {timed} timed records"
    );

    // Without --node: the kernel's hostname.
    let tracer = Tracer::start(&["--netns", &proxy, "--vip", "20.0.0.1"]);
    let f = tracer.stop(libc::SIGINT);
    let host = String::from_utf8(
        std::process::Command::new("uname")
            .arg("-n")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for r in &f.lines {
        assert_eq!(r.stamp.node.as_deref(), Some(host.trim()), "{r:?}");
    }
    assert!(!f.lines.is_empty());
}
