//! Counts never lost: a one-thread UDP flood from the VIP through the proxy while the
//! tracer's output is not read (its ring buffer fills and records are lost on purpose),
//! and the flow summary's egress packets still equal what the frontends' nftables counters
//! saw, per next-hop. Once with every packet recorded (`--records all`: without --port the
//! default is a budget), once with counts only (`--records none`).
//!
//! Labs use the netns prefixes `c1-` and `c2-`.
mod support;

use std::{
    net::{Ipv4Addr, UdpSocket},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use lab::{Lab, Role, VIP4};
use support::{lab_up, root_or_skip, PipedTracer};
use tracer::records::{self, Record};

const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 100, 150);
/// The flood's ports: from VIP:FLOOD_SPORT to the gateway's FLOOD_DPORT, one flow.
const FLOOD_SPORT: u16 = 4000;
const FLOOD_DPORT: u16 = 9100;
const FLOOD_DATAGRAMS: u64 = 300_000;

/// Counters of the flood's datagrams in each frontend (before routing, so every one that
/// arrived is counted), and one in the gateway that drops them (no ICMP comes back).
fn arm_truth(lab: &Lab) {
    for role in [Role::FrontendA, Role::FrontendB, Role::Gateway] {
        let verdict = if role == Role::Gateway { " drop" } else { "" };
        let script = format!(
            "add table inet counts
add chain inet counts pre {{ type filter hook prerouting priority -300; policy accept; }}
add counter inet counts flood
add rule inet counts pre ip saddr {VIP4} udp sport {FLOOD_SPORT} udp dport {FLOOD_DPORT} counter name \"flood\"{verdict}
"
        );
        lab::cmd::run_with_stdin(
            "ip",
            &["netns", "exec", &lab.ns(role), "nft", "-f", "-"],
            Some(&script),
        )
        .unwrap();
    }
}

fn truth(lab: &Lab, role: Role) -> u64 {
    support::nft_packets(&lab.ns(role), "counts", "flood")
}

/// Sends FLOOD_DATAGRAMS from one thread, as fast as it goes; returns how many were sent.
fn flood(lab: &Lab) -> u64 {
    let ns = lab.ns(Role::Target);
    lab::netns::in_netns(&ns, || {
        let s = UdpSocket::bind((VIP4, FLOOD_SPORT)).expect("bind the VIP");
        s.connect((GATEWAY, FLOOD_DPORT)).unwrap();
        let mut sent = 0u64;
        let mut tries = 0u64;
        while sent < FLOOD_DATAGRAMS && tries < 4 * FLOOD_DATAGRAMS {
            tries += 1;
            if s.send(&[0u8; 64]).is_ok() {
                sent += 1;
            }
        }
        sent
    })
    .unwrap()
}

#[derive(Default)]
struct Kept {
    summaries: Vec<records::Flow<'static>>,
    lost: Vec<records::Lost>,
    /// Per-packet records of the flood flow (hops), counted, not kept.
    flood_hops: u64,
}

/// The flood's flow (the flood goes to the client port).
fn is_flood(k: &records::FlowKey) -> bool {
    k.proto == "udp" && k.client_port == FLOOD_DPORT
}

/// Floods through a paused tracer started with `extra` args, then compares its summary of
/// the flood's flow with the frontends' counters.
fn flood_counts_match(prefix: &str, extra: &[&str]) -> (records::Flow<'static>, Kept) {
    let lab = lab_up(prefix);
    arm_truth(&lab);
    let kept = Arc::new(Mutex::new(Kept::default()));
    let k = kept.clone();
    let proxy = lab.ns(Role::Proxy);
    let mut args = vec!["--json", "--netns", &proxy, "--vip", "20.0.0.1"];
    args.extend_from_slice(extra);
    let tracer = PipedTracer::start(&args, move |line| {
        let line: records::Line = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a tracer record ({e}): {line}"));
        let mut k = k.lock().unwrap();
        match line.record {
            Record::Flow(f) if is_flood(&f.flow) => k.summaries.push(f),
            Record::Lost(l) => k.lost.push(l),
            Record::Hop(h) if h.proto == "udp" && h.dport == FLOOD_DPORT => k.flood_hops += 1,
            _ => {}
        }
    });
    // Not reading the tracer's output: it blocks, its ring buffer fills, records are lost.
    tracer.pause();
    let t0 = Instant::now();
    let sent = flood(&lab);
    eprintln!("{prefix}: {sent} datagrams sent in {:?}", t0.elapsed());
    std::thread::sleep(Duration::from_millis(300));
    let (a, b) = (truth(&lab, Role::FrontendA), truth(&lab, Role::FrontendB));
    let at_gateway = truth(&lab, Role::Gateway);
    tracer.resume();
    let (status, stderr) = tracer.stop(libc::SIGINT, Duration::from_secs(120));
    assert!(status.success(), "tracer exit {status:?}: {stderr}");

    let k = std::mem::take(&mut *kept.lock().unwrap());
    eprintln!(
        "{prefix}: frontends saw {a} + {b}, gateway {at_gateway}; flood hop records {}; lost records {:?}",
        k.flood_hops,
        k.lost.last()
    );
    assert!(a + b > 0, "the flood reached no frontend");
    assert_eq!(
        k.summaries.len(),
        1,
        "one summary of the flood's flow: {:?}",
        k.summaries
    );
    let s = k.summaries[0].clone();
    eprintln!("{prefix}: summary {s:?}");
    assert!(s.counted, "{s:?}");
    assert_eq!(
        s.egress.packets,
        a + b,
        "the summary's egress packets against the frontends' counters ({a} + {b})"
    );
    // Per next-hop: the frontend whose counter moved is the next-hop, with its exact count.
    let by_frontend = [(Role::FrontendA, a), (Role::FrontendB, b)];
    for nh in &s.egress.nexthops {
        let ip = nh.nexthop.expect("a next-hop taken names its address");
        let (_, want) = by_frontend
            .iter()
            .find(|(r, _)| lab.frontend_conduit_ip(*r, false) == ip)
            .unwrap_or_else(|| panic!("next-hop {ip} is no frontend's"));
        assert_eq!(nh.packets, *want, "next-hop {ip}: {s:?}");
    }
    (s, k)
}

#[test]
fn flood_counts_are_exact_when_records_are_lost() {
    let Some(_serial) = root_or_skip("flood_counts_are_exact_when_records_are_lost") else {
        return;
    };
    let (s, k) = flood_counts_match("c1-", &["--records", "all"]);
    // The point of the test: records were lost, the counts were not.
    let lost: u64 = k.lost.last().map_or(0, |l| l.total);
    assert!(
        lost > 0,
        "no record was lost: the flood did not test anything"
    );
    assert!(
        s.egress.records < s.egress.packets,
        "every egress packet has a record although {lost} were lost: {s:?}"
    );
}

#[test]
fn counts_only_budget_writes_almost_no_records_and_counts_everything() {
    let Some(_serial) = root_or_skip("counts_only_budget_writes_almost_no_records") else {
        return;
    };
    let (s, k) = flood_counts_match("c2-", &["--records", "none"]);
    // Only the first packet of each hop has a record: the proxy has three hops on this
    // path (target port in, bridge0 out per next-hop, frontend port out).
    assert!(
        k.flood_hops <= 4,
        "{} hop records with --records none",
        k.flood_hops
    );
    assert!(
        s.egress.records <= 1,
        "egress records with --records none: {s:?}"
    );
}
