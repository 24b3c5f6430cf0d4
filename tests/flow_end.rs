//! How flows end. Closed by a reset, promptly: summarised once the closed linger (2 s after
//! the last packet) has passed, while the tracer runs, not after `--flow-timeout`'s minute
//! of silence or only when the flow cap pushes them out. Under the SYN flood of
//! always_on.rs each half-open connection ends with the gateway's RST; this checks both
//! directions of a reset on one connection each, against what the client saw and the
//! frontends' counters. Pushed out early by `--max-flows`: the summary says it is not
//! exact, and the end of the run counts them.
mod support;

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use lab::{Lab, Role, VIP4, VIP_PORT};
use support::{root_or_skip, Tracer};
use tracer::records::{Flow, Record};

/// The tracer's closed linger, its 500 ms expiry tick, the reorder window and room for a
/// loaded machine: a reset flow's summary comes within this of the reset.
const PROMPT: Duration = Duration::from_millis(4_000);

fn start(lab: &Lab) -> Tracer {
    let proxy = lab.ns(Role::Proxy);
    Tracer::start(&["--netns", &proxy, "--vip", "20.0.0.1"])
}

/// Waits for the summary of the flow from `client_port` (up to 3 times [`PROMPT`]); returns
/// it and how long after `since` it came.
fn summary_of(t: &Tracer, client_port: u16, since: Instant) -> (Flow<'static>, Duration) {
    let wait = PROMPT * 3 * support::slowdown();
    let found = t.wait_for(
        0,
        wait,
        |r| matches!(r, Record::Flow(f) if f.flow.client_port == client_port),
    );
    let Some((Record::Flow(f), _, at)) = found else {
        panic!("no summary of the flow from port {client_port} within {wait:?}");
    };
    (f, at.duration_since(since))
}

/// The gateway connects to a VIP port nothing listens on: the target answers the SYN with
/// a RST (the client sees the connection refused), and the flow is summarised within
/// [`PROMPT`], with its one SYN in and one RST out.
#[test]
fn a_refused_connection_ends_its_flow_promptly() {
    let Some(_serial) = root_or_skip("a_refused_connection_ends_its_flow_promptly") else {
        return;
    };
    let lab = support::lab_up("l1-");
    let _listener = lab.listen().unwrap();
    let tracer = start(&lab);
    let port = 36950;
    let closed = SocketAddr::new(IpAddr::V4(VIP4), VIP_PORT + 1);
    let refused = lab::netns::in_netns(&lab.ns(Role::Gateway), || {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())
            .unwrap();
        s.connect_timeout(&closed.into(), Duration::from_secs(3))
    })
    .unwrap();
    let reset_at = Instant::now();
    let err = refused.expect_err("nothing listens on the VIP's port 4001");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    let (f, after) = summary_of(&tracer, port, reset_at);
    let fin = tracer.stop(libc::SIGINT);
    assert!(fin.status.success(), "{}", fin.stderr);
    eprintln!("li1: summary {after:?} after the refusal");
    assert_eq!(f.flow.vip_port, VIP_PORT + 1);
    assert_eq!(
        (f.ingress.packets, f.egress.packets),
        (1, 1),
        "the SYN in, the RST out: {f:?}"
    );
    assert!(
        after <= PROMPT * support::slowdown(),
        "summarised {after:?} after the reset"
    );
    assert!(f.exact, "nothing lost or evicted: {f:?}");
}

/// One SYN from the gateway (hping3: no socket there, so its kernel answers the target's
/// SYN-ACK with a RST), as each SYN of the flood: the flow ends within [`PROMPT`] of the
/// exchange, its packets those the frontends counted.
#[test]
fn a_flow_the_client_resets_ends_promptly() {
    let Some(_serial) = root_or_skip("a_flow_the_client_resets_ends_promptly") else {
        return;
    };
    let lab = support::lab_up("l2-");
    let _listener = lab.listen().unwrap();
    let port = 36960;
    let vip = IpAddr::V4(VIP4);
    let frontends = [Role::FrontendA, Role::FrontendB];
    for fe in frontends {
        lab.add_frontend_counter(fe, "rst_eg", vip, port).unwrap();
        lab.add_frontend_ingress_counter(fe, "rst_in", vip, port)
            .unwrap();
    }
    let tracer = start(&lab);
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns(Role::Gateway), "hping3"])
        .args(["-S", "-c", "1", "-k", "-s", &port.to_string()])
        .args(["-p", &VIP_PORT.to_string(), "20.0.0.1"])
        .output()
        .expect("hping3 (Debian package hping3) runs");
    let sent_at = Instant::now();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("flags=SA"),
        "the target answered the SYN: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (f, after) = summary_of(&tracer, port, sent_at);
    let fin = tracer.stop(libc::SIGINT);
    assert!(fin.status.success(), "{}", fin.stderr);
    eprintln!("li2: summary {after:?} after the exchange");
    let count = |name: &str| -> u64 {
        frontends
            .iter()
            .map(|fe| lab.frontend_counter(*fe, name).unwrap())
            .sum()
    };
    let (sent_in, sent_out) = (count("rst_in"), count("rst_eg"));
    assert_eq!(
        (f.ingress.packets, f.egress.packets),
        (sent_in, sent_out),
        "the frontends' counters (SYN and RST in, SYN-ACK out): {f:?}"
    );
    assert_eq!((sent_in, sent_out), (2, 1), "a SYN, its SYN-ACK, the RST");
    assert!(
        after <= PROMPT * support::slowdown(),
        "summarised {after:?} after the reset"
    );
}

/// 40 connections held open at once under `--max-flows 16`: the table fills and the flows
/// idle longest are summarised early. Each such summary says
/// `exact: false` with `flow_evicted_early`, the others are exact, and the end-of-run
/// `evicted` record counts exactly those. The ready record names the default budget.
#[test]
fn flows_summarised_early_say_they_are_not_exact_and_are_counted() {
    let Some(_serial) =
        root_or_skip("flows_summarised_early_say_they_are_not_exact_and_are_counted")
    else {
        return;
    };
    let lab = support::lab_up("l3-");
    let _listener = lab.listen().unwrap();
    let proxy = lab.ns(Role::Proxy);
    let tracer = Tracer::start(&["--netns", &proxy, "--vip", "20.0.0.1", "--max-flows", "16"]);
    let ports: Vec<u16> = (36970..37010).collect();
    // Held open at once, so every one is live: the cap, not the linger, decides.
    let echo = SocketAddr::new(IpAddr::V4(VIP4), lab.echo_port());
    let held = lab::netns::in_netns(&lab.ns(Role::Gateway), || {
        use socket2::{Domain, Socket, Type};
        ports
            .iter()
            .map(|&port| {
                let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                s.set_reuse_address(true).unwrap();
                s.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())
                    .unwrap();
                s.connect_timeout(&echo.into(), Duration::from_secs(3))
                    .unwrap();
                s
            })
            .collect::<Vec<_>>()
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(1_000) * support::slowdown());
    drop(held);
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    assert!(f.of_type("lost").is_empty(), "no records lost at this rate");
    assert_eq!(f.readies()[0].records, "first 8 per hop");
    let flows: Vec<_> = f
        .flows()
        .into_iter()
        .filter(|s| ports.contains(&s.flow.client_port))
        .collect();
    // A flow summarised early and seen again (its FINs at the end) is a new flow.
    let seen: std::collections::BTreeSet<u16> = flows.iter().map(|s| s.flow.client_port).collect();
    assert_eq!(seen.len(), ports.len(), "every connection summarised");
    let early: Vec<_> = flows.iter().filter(|s| !s.exact).collect();
    for s in &early {
        assert_eq!(
            s.not_exact,
            [tracer::records::Inexact::FlowEvictedEarly],
            "{s:?}"
        );
    }
    assert!(
        flows
            .iter()
            .filter(|s| s.exact)
            .all(|s| s.not_exact.is_empty()),
        "an exact flow has no reason"
    );
    let evicted: Vec<u64> = f
        .lines
        .iter()
        .filter_map(|l| match &l.record {
            Record::Evicted(e) => Some(e.flows),
            _ => None,
        })
        .collect();
    eprintln!(
        "li3: {} of {} flows summarised early",
        early.len(),
        flows.len()
    );
    assert_eq!(evicted, [early.len() as u64], "the end-of-run count");
    assert!(
        early.len() >= ports.len() - 16,
        "40 live connections cannot all fit 16 slots: {} early",
        early.len()
    );
}

/// A steady stream of SYNs through the whole path (hping3, 450 a second, each from the next
/// source port; the gateway resets each SYN-ACK): every flow ends by its linger, none is
/// pushed out early under a cap the linger alone stays below (2.5 s of them is ~1 100), and
/// none says it is inexact where nothing was lost or evicted.
#[test]
fn a_steady_syn_stream_ends_each_flow_by_its_linger_and_exactly() {
    let Some(_serial) =
        root_or_skip("a_steady_syn_stream_ends_each_flow_by_its_linger_and_exactly")
    else {
        return;
    };
    const SYNS: usize = 3_000;
    let lab = support::lab_up("l4-");
    let _listener = lab.listen().unwrap();
    let tracer = Tracer::start(&["--vip", "20.0.0.1", "--max-flows", "2000"]);
    support::syn_flood(&lab, "20.0.0.1".parse().unwrap(), VIP_PORT, SYNS, 2000);
    std::thread::sleep(PROMPT * support::slowdown());
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    assert!(f.of_type("lost").is_empty(), "no records lost at this rate");
    assert!(
        f.of_type("evicted").is_empty(),
        "nothing evicted: {:?}",
        f.of_type("evicted")
    );
    let flows = f.flows();
    let ports: std::collections::BTreeSet<u16> = flows.iter().map(|s| s.flow.client_port).collect();
    assert_eq!(
        (flows.len(), ports.len()),
        (SYNS, SYNS),
        "one summary per SYN's source port"
    );
    let inexact: Vec<_> = flows.iter().filter(|s| !s.exact).collect();
    assert!(
        inexact.is_empty(),
        "{} not exact, the first: {:?}",
        inexact.len(),
        inexact.first()
    );
}
