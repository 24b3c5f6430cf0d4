//! Flows closed by a reset end promptly: summarised once the closed linger (2 s after the
//! last packet) has passed, while the tracer runs, not after `--flow-timeout`'s minute of
//! silence or only when the flow cap pushes them out. Under the SYN flood of always_on.rs
//! each half-open connection ends with the gateway's RST; this checks both directions of a
//! reset on one connection each, against what the client saw and the frontends' counters.
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
