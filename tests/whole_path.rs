//! End-to-end tests of whole-path tracing (no --netns): one timeline per flow across the
//! frontends, the proxy and the target, and pods and interfaces that come and go while the
//! tracer runs. Real eBPF, the namespace lab, root. Ground truth: nftables counters in the
//! frontends, the lab's own configuration, /proc fdinfo of the tracer for its links.
mod support;

use support::lab_up;

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use lab::{netns::in_netns, Role, VIP4, VIP_PORT};
use support::{
    add_udp_counter, held_by, programs_held_by, read_udp_counter, root_or_skip, view_command,
    Finished, ThirdFrontend, Tracer,
};
use tracer::records::{self, Hop, Record, What};

const FRONTENDS: [Role; 2] = [Role::FrontendA, Role::FrontendB];

/// The tracer on the whole path, seeing only this lab's netns files (as a CI node would).
fn whole_path(prefix: &str, extra: &[&str]) -> Tracer {
    let mut args = vec!["--json", "--vip", "20.0.0.1"];
    args.extend_from_slice(extra);
    Tracer::start_command(&mut view_command(prefix, false, &args))
}

fn hop<'a>(f: &'a Finished, netns: &str, ifname: &str, dir: &str, flags: &str) -> &'a Hop<'a> {
    f.hops()
        .into_iter()
        .find(|h| h.netns == netns && h.ifname == ifname && h.dir == dir && h.tcp_flags == flags)
        .unwrap_or_else(|| panic!("no {flags} hop at {netns} {ifname} {dir}"))
}

fn in_order(what: &str, chain: &[&Hop]) {
    assert!(
        chain.windows(2).all(|w| w[0].ts_ns < w[1].ts_ns),
        "{what} out of order: {chain:#?}"
    );
}

/// One client flow: its SYN crosses gateway-side frontend -> proxy -> target and its SYN-ACK
/// target -> proxy -> chosen frontend -> gateway, in kernel time order in one timeline, and
/// the frontends named are the ones whose counters saw the packets.
#[test]
fn one_flow_is_one_timeline_through_frontend_proxy_and_target() {
    let Some(_serial) = root_or_skip("one_flow_is_one_timeline_through_frontend_proxy_and_target")
    else {
        return;
    };
    one_flow("w1-", &[]);
}

/// The same with the TC programs loaded once per namespace (the fallback for kernels that
/// do not let a TC program read its device's namespace).
#[test]
fn one_flow_with_tc_programs_per_namespace() {
    let Some(_serial) = root_or_skip("one_flow_with_tc_programs_per_namespace") else {
        return;
    };
    one_flow("w5-", &["--tc-programs", "per-namespace"]);
}

fn one_flow(prefix: &str, extra: &[&str]) {
    let lab = lab_up(prefix);
    let _listener = lab.listen().unwrap();
    let port = 35951;
    let vip = IpAddr::V4(VIP4);
    for fe in FRONTENDS {
        lab.add_frontend_counter(fe, "eg", vip, port).unwrap();
        lab.add_frontend_ingress_counter(fe, "in", vip, port)
            .unwrap();
    }
    let mut args = vec!["--port", "35951"];
    args.extend_from_slice(extra);
    let tracer = whole_path(prefix, &args);
    // The node-wide hooks are loaded once whatever the number of namespaces; the TC
    // programs once for all where the kernel lets them find a packet's namespace (the
    // ready record says when it does not), else once per namespace (at least 4 here: two
    // frontends, the proxy, the target; the lab's second, process-only target may be
    // attached already or a moment later).
    let programs = programs_held_by(tracer.pid());
    let count = |prefix: &str| -> usize {
        programs
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    };
    let tc_in = count("meridio_tc_in");
    assert_eq!(tc_in, count("meridio_tc_out"), "{programs:?}");
    assert_eq!(count("meridio_fib4"), 1, "{programs:?}");
    assert_eq!(count("meridio_fib6"), 1, "{programs:?}");
    assert_eq!(count("meridio_drop"), 1, "{programs:?}");
    lab.connect(vip, port, b"whole path\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);

    let per_site = f.readies().iter().all(|r| {
        r.unavailable
            .iter()
            .any(|u| u.hook == "tc programs shared by every namespace")
    });
    if per_site {
        assert!(tc_in >= 4, "{programs:?}");
    } else {
        assert_eq!(
            tc_in, 1,
            "one copy of the TC programs for every site: {programs:?}"
        );
    }
    let ready: Vec<&str> = f.readies().iter().map(|r| r.netns.as_ref()).collect();
    for role in ["proxy-a", "lbfe-a", "lbfe-b", "target-a-1"] {
        let want = format!("{prefix}{role}");
        assert!(
            ready.contains(&want.as_str()),
            "{want} not traced: {ready:?}"
        );
    }
    let carried = |name: &str| -> Role {
        let used: Vec<Role> = FRONTENDS
            .into_iter()
            .filter(|fe| lab.frontend_counter(*fe, name).unwrap() > 0)
            .collect();
        assert_eq!(used.len(), 1, "{name}: {used:?}");
        used[0]
    };
    let (fe_in, fe_eg) = (carried("in"), carried("eg"));
    let n = lab.names();
    let conduit = |fe: Role| {
        if fe == Role::FrontendA {
            n.fea_conduit
        } else {
            n.feb_conduit
        }
    };
    let (px, tg) = (lab.ns(Role::Proxy), lab.ns(Role::Target));

    let syn = [
        hop(&f, &lab.ns(fe_in), n.fe_ext, "ingress", "SYN"),
        hop(&f, &lab.ns(fe_in), conduit(fe_in), "egress", "SYN"),
        hop(&f, &px, lab.proxy_port_towards(fe_in), "ingress", "SYN"),
        hop(
            &f,
            &px,
            lab.proxy_port_towards(Role::Target),
            "egress",
            "SYN",
        ),
        hop(&f, &tg, n.tg_if, "ingress", "SYN"),
    ];
    in_order("SYN: frontend -> proxy -> target", &syn);
    let sa = [
        hop(&f, &tg, n.tg_if, "egress", "SYN,ACK"),
        hop(
            &f,
            &px,
            lab.proxy_port_towards(Role::Target),
            "ingress",
            "SYN,ACK",
        ),
        hop(&f, &px, n.px_bridge, "ingress", "SYN,ACK"),
        hop(&f, &px, n.px_bridge, "egress", "SYN,ACK"),
        hop(&f, &px, lab.proxy_port_towards(fe_eg), "egress", "SYN,ACK"),
        hop(&f, &lab.ns(fe_eg), conduit(fe_eg), "ingress", "SYN,ACK"),
        hop(&f, &lab.ns(fe_eg), n.fe_ext, "egress", "SYN,ACK"),
    ];
    in_order("SYN-ACK: target -> proxy -> frontend -> gateway", &sa);
    // The frontend's own routing shows too: table 4096 on the way out.
    assert!(
        f.routes()
            .iter()
            .any(|r| r.netns == lab.ns(fe_eg) && r.table == 4096 && r.role == "frontend"),
        "the egress frontend's table 4096 lookup"
    );
    // Hops come out in kernel time order although each namespace has its own ring.
    let hops = f.hops();
    assert!(
        hops.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns),
        "timeline not sorted"
    );

    let flow = f.flows()[0];
    assert_eq!(flow.netns, px, "{flow:?}");
    // The whole path in the summary: the frontends the counters name, the target.
    let p = &flow.path;
    assert_eq!(
        p.frontend_in.as_ref().map(|a| a.netns.as_ref()),
        Some(lab.ns(fe_in).as_str())
    );
    assert_eq!(
        p.frontend_out.as_ref().map(|a| a.netns.as_ref()),
        Some(lab.ns(fe_eg).as_str())
    );
    assert_eq!(
        p.target.as_ref().map(|t| t.netns.as_ref()),
        Some(tg.as_str())
    );
    assert_eq!(p.asymmetric, fe_in != fe_eg);
    // The lab's frontends mark VIP traffic 5001 in nftables' prerouting, after the TC
    // ingress hook: where the raw fib hooks read the lookup's own mark, the ingress
    // frontend's lookup is tied to its packet at the egress hook, with that mark, its
    // fwmark rule and table (the perf tracepoint fallback has no mark to read).
    let raw_fib = f.readies().iter().all(|r| {
        r.hooks
            .iter()
            .any(|h| h == "raw_tracepoint:fib_table_lookup")
    });
    if raw_fib {
        let lb =
            p.lb.first()
                .unwrap_or_else(|| panic!("no lookup of the load balancer: {p:?}"));
        assert_eq!((lb.mark, lb.table), (5001, 5001), "{lb:?}");
        assert!(lb.marked_after_ingress, "{lb:?}");
        assert_eq!(lb.rule.as_ref().and_then(|r| r.table), Some(5001), "{lb:?}");
        assert_eq!(lb.netns, lab.ns(fe_in));
    }
    assert_eq!(
        flow.egress.nexthop,
        Some(lab.frontend_conduit_ip(fe_eg, false)),
        "{flow:?}"
    );
    assert_eq!(
        flow.egress.ifname.as_deref(),
        Some(lab.proxy_port_towards(fe_eg)),
        "{flow:?}"
    );
}

/// A third frontend's conduit port appears on bridge0 while tracing: the tracer attaches to
/// it within a second and its traffic shows up; when it goes, that is reported and the
/// tracer's links on it are closed (counted in the tracer's /proc fdinfo).
#[test]
fn a_third_frontend_coming_and_going_is_followed() {
    let Some(_serial) = root_or_skip("a_third_frontend_coming_and_going_is_followed") else {
        return;
    };
    let lab = lab_up("w2-");
    add_udp_counter(&lab.ns(Role::FrontendA));
    add_udp_counter(&lab.ns(Role::FrontendB));
    let tracer = whole_path("w2-", &[]);
    std::thread::sleep(Duration::from_millis(300));
    let links_before = held_by(tracer.pid()).links;

    let mark = tracer.count();
    let added_at = Instant::now();
    let third = ThirdFrontend::add(&lab);
    let is_port = |added: bool| {
        move |r: &Record| {
            matches!(r, Record::Change(c) if matches!(&c.what,
                What::Attached { added: a, ifname } if *a == added && ifname == "conduit-c.-4242"))
        }
    };
    let (_, _, seen) = tracer
        .wait_for(mark, Duration::from_secs(3), is_port(true))
        .expect("the new conduit port is attached");
    assert!(
        seen - added_at < Duration::from_secs(1),
        "attached after {:?}",
        seen - added_at
    );
    assert_eq!(
        held_by(tracer.pid()).links,
        links_before + 2,
        "ingress and egress links on it"
    );

    // Traffic through it: 100 UDP flows from the VIP over the three next-hops.
    in_netns(&lab.ns(Role::Target), || {
        let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(VIP4), VIP_PORT)).unwrap();
        for port in 42000..42100u16 {
            sock.send_to(b"c", ("169.254.100.150", port)).unwrap();
        }
    })
    .unwrap();
    if tracer
        .wait_for(
            mark,
            Duration::from_secs(5),
            |r| matches!(r, Record::Hop(h) if h.ifname == "conduit-c.-4242" && h.dir == "egress"),
        )
        .is_none()
    {
        let f = tracer.stop(libc::SIGINT);
        let seen: std::collections::BTreeSet<String> = f.lines[mark..]
            .iter()
            .map(|r| match &r.record {
                Record::Hop(h) => format!("hop {} {}", h.ifname, h.dir),
                other => other.type_name().to_string(),
            })
            .collect();
        panic!(
            "no traffic through the new port; seen after it came: {seen:?}\n{}",
            f.stderr
        );
    }
    let got_c = read_udp_counter(&third.ns);
    assert!(
        got_c > 0,
        "the third frontend received nothing: weights not in effect?"
    );

    let mark = tracer.count();
    let removed_at = Instant::now();
    drop(third);
    let (_, _, seen) = tracer
        .wait_for(mark, Duration::from_secs(3), is_port(false))
        .expect("the vanished port is reported");
    assert!(
        seen - removed_at < Duration::from_secs(1),
        "reported after {:?}",
        seen - removed_at
    );
    assert_eq!(
        held_by(tracer.pid()).links,
        links_before,
        "its links are closed"
    );

    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    assert!(
        !f.stderr.contains("rror"),
        "no error on the way: {}",
        f.stderr
    );
    let d = f
        .distributions()
        .into_iter()
        .find(|d| d.vip == IpAddr::V4(VIP4))
        .expect("a distribution");
    let flows_via = |gw: &str| d.flows_via(gw.parse().unwrap());
    assert_eq!(
        flows_via("172.16.0.9"),
        got_c,
        "flows via the third frontend, tracer vs its counter: {d:?}"
    );
    let via_ab = flows_via("172.16.0.3") + flows_via("172.16.0.5");
    let truth_ab =
        read_udp_counter(&lab.ns(Role::FrontendA)) + read_udp_counter(&lab.ns(Role::FrontendB));
    assert_eq!(via_ab, truth_ab, "{d:?}");
}

/// A frontend pod goes away mid-run (its netns file deleted, no process in it): the tracer
/// reports it gone, lets go of it (so the namespace really goes, and with it the proxy's
/// port toward it) and carries on without an error.
#[test]
fn a_vanishing_frontend_is_reported_and_dropped_without_errors() {
    let Some(_serial) = root_or_skip("a_vanishing_frontend_is_reported_and_dropped_without_errors")
    else {
        return;
    };
    let lab = lab_up("w3-");
    // Not in a view: the netns file must vanish for the tracer too.
    let tracer = Tracer::start(&["--vip", "20.0.0.1", "--role", "frontend", "--role", "proxy"]);
    std::thread::sleep(Duration::from_millis(300));
    let mark = tracer.count();
    let gone_ns = lab.ns(Role::FrontendB);
    let out = std::process::Command::new("ip")
        .args(["netns", "del", &gone_ns])
        .output()
        .unwrap();
    assert!(out.status.success());
    let (change, _, _) = tracer
        // Rediscovery runs every second; on a loaded machine one round can take a while.
        .wait_for(mark, Duration::from_secs(15), |r| {
            matches!(r, Record::Change(c) if matches!(&c.what, What::Netns { name, .. } if *name == gone_ns))
        })
        .expect("the vanished frontend is reported");
    let Record::Change(records::Change {
        what: What::Netns { added, role, .. },
        ..
    }) = change
    else {
        unreachable!("the predicate matched a netns change")
    };
    assert_eq!((added, role.as_ref()), (false, "frontend"));
    // With our last fd on it closed the namespace is gone, and so is the proxy's port to it.
    let port = lab.proxy_port_towards(Role::FrontendB);
    let px = lab.ns(Role::Proxy);
    tracer
        .wait_for(mark, Duration::from_secs(15), |r| {
            matches!(r, Record::Change(c) if c.netns == px
                && matches!(&c.what, What::Attached { ifname, .. } if ifname == port))
        })
        .expect("the proxy's port toward it is reported gone");
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    assert!(!f.stderr.contains("rror"), "no error: {}", f.stderr);
}

/// The text view of the whole path names the node-wide hooks (the route lookups, the drop
/// hook, the hash hooks refused or not used) once, with the first ready line; every ready
/// line keeps its own namespace's `tc:` hooks. The JSON ready records keep every hook in
/// every record.
#[test]
fn the_text_view_says_the_node_wide_hooks_once() {
    let Some(_serial) = root_or_skip("the_text_view_says_the_node_wide_hooks_once") else {
        return;
    };
    let _lab = lab_up("w6-");
    let out = view_command("w6-", false, &["--vip", "20.0.0.1", "--duration", "2"])
        .output()
        .expect("run the tracer");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    let readies: Vec<usize> = (0..lines.len())
        .filter(|i| lines[*i].starts_with("ready: "))
        .collect();
    assert!(readies.len() >= 4, "{text}");
    for i in &readies {
        assert!(
            lines[i + 1].starts_with("  attached: tc:"),
            "its own tc hooks after {}: {text}",
            lines[*i]
        );
    }
    assert_eq!(count("node-wide hooks"), 1, "{text}");
    assert_eq!(count("fib_table_lookup"), 1, "{text}");
    assert_eq!(count("fib6_table_lookup"), 1, "{text}");
    assert_eq!(count("kfree_skb"), 1, "{text}");
    for hook in [
        "fexit:fib_multipath_hash",
        "fexit:rt6_multipath_hash",
        "kretprobe:fib_multipath_hash",
        "kretprobe:rt6_multipath_hash",
    ] {
        assert!(count(hook) <= 1, "{hook} once at most: {text}");
    }
    let heading = lines
        .iter()
        .position(|l| l.contains("node-wide hooks"))
        .unwrap();
    assert!(
        heading > readies[0] && readies.get(1).is_none_or(|next| heading < *next),
        "under the first ready line: {text}"
    );

    // JSON: every ready record carries the node-wide hooks, as before.
    let tracer = Tracer::start_command(&mut view_command(
        "w6-",
        false,
        &["--json", "--vip", "20.0.0.1"],
    ));
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    let readies = f.readies();
    assert!(readies.len() >= 4, "{readies:#?}");
    for r in readies {
        assert!(
            r.hooks.iter().any(|h| h.contains("fib_table_lookup"))
                && r.hooks.iter().any(|h| h.starts_with("tc:")),
            "{r:#?}"
        );
    }
}
