//! Left running on a node: the whole-path tracer with the DaemonSet's arguments under a
//! bounded SYN flood whose source port changes with each SYN (hping3 in the lab's gateway
//! only). Its memory stays bounded, it stays up, the per-next-hop totals (the distribution
//! record and `/metrics`) equal what the frontends' nftables counters saw, the flows it had
//! to summarise early are counted, and the target's stack consuming the gateway's RSTs is
//! not reported as drops. Real eBPF, the namespace lab, root. Ground truth: nftables
//! counters in the frontends and the target.
//!
//! Labs use the netns prefix `ao1-`.
mod support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use lab::{Lab, Role, VIP4};
use support::{lab_up, root_or_skip, view_command, PipedTracer};
use tracer::records::{self, Record};

/// SYNs sent: four times the default `--max-flows`. Half their connections stay half-open
/// ([`half_open`]), twice the cap, so the cap is reached however fast the machine ends the
/// others.
const SYNS: u32 = 40_000;
const METRICS: &str = "127.0.0.1:19464";
/// The client: the lab's gateway.
const GATEWAY: &str = "169.254.100.150";
/// The DaemonSet's memory limit (deploy/daemonset.yaml), and the room the tracer keeps.
const LIMIT_KIB: u64 = 128 * 1024;
const PEAK_KIB: u64 = LIMIT_KIB * 3 / 4;

/// Counters of the VIP's TCP packets from the proxy in each frontend (before routing),
/// and of the SYNs and RSTs reaching the target.
fn arm_truth(lab: &Lab, port: u16) {
    let rules = |role| {
        match role {
        Role::Target => format!(
            "add counter inet ao syns
add counter inet ao rsts
add rule inet ao pre ip daddr {VIP4} tcp dport {port} tcp flags & (syn | ack) == syn counter name \"syns\"
add rule inet ao pre ip daddr {VIP4} tcp dport {port} tcp flags & rst == rst counter name \"rsts\"
"
        ),
        _ => format!(
            "add counter inet ao eg
add rule inet ao pre ip saddr {VIP4} tcp sport {port} counter name \"eg\"
"
        ),
    }
    };
    for role in [Role::FrontendA, Role::FrontendB, Role::Target] {
        let script = format!(
            "add table inet ao
add chain inet ao pre {{ type filter hook prerouting priority -300; policy accept; }}
{}",
            rules(role)
        );
        lab::cmd::run_with_stdin(
            "ip",
            &["netns", "exec", &lab.ns(role), "nft", "-f", "-"],
            Some(&script),
        )
        .unwrap();
    }
}

/// Every second RST the gateway's stack answers a SYN-ACK with is dropped on its way out,
/// so that connection stays half-open at the target (a flow that never closes, as a real
/// flood's spoofed sources leave them), and the target sends no SYN-ACK again (which would
/// move the frontends' counters after they are read).
fn half_open(lab: &Lab) {
    let script = "add table inet ao_half
add chain inet ao_half out { type filter hook output priority 0; policy accept; }
add rule inet ao_half out tcp flags & rst == rst numgen inc mod 2 == 0 drop
";
    lab::cmd::run_with_stdin(
        "ip",
        &["netns", "exec", &lab.ns(Role::Gateway), "nft", "-f", "-"],
        Some(script),
    )
    .unwrap();
    lab::cmd::run(
        "ip",
        &[
            "netns",
            "exec",
            &lab.ns(Role::Target),
            "sysctl",
            "-qw",
            "net.ipv4.tcp_synack_retries=0",
        ],
    )
    .unwrap();
}

fn truth(lab: &Lab, role: Role, counter: &str) -> u64 {
    support::nft_packets(&lab.ns(role), "ao", counter)
}

/// Peak resident memory of a process in KiB (VmHWM).
fn peak_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// One plain HTTP GET of the tracer's metrics port.
fn get(path: &str) -> (u16, String) {
    support::http_get(METRICS, path)
}

/// A /metrics scrape, parsed: every sample as (name, labels, value).
fn scrape() -> Vec<(String, HashMap<String, String>, f64)> {
    let (code, body) = get("/metrics");
    assert_eq!(code, 200, "{body}");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("a Prometheus text scrape");
    parsed
        .samples
        .into_iter()
        .map(|s| {
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("{}: unexpected {other:?}", s.metric),
            };
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (s.metric, labels, v)
        })
        .collect()
}

fn sum(
    samples: &[(String, HashMap<String, String>, f64)],
    name: &str,
    want: &[(&str, &str)],
) -> u64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v as u64)
        .sum()
}

#[derive(Default)]
struct Kept {
    distribution: Vec<records::Distribution<'static>>,
    evicted: u64,
    summaries: u64,
    /// Drops of the flood's flows at a target with no reason: consumed RSTs reported.
    false_drops: u64,
}

#[test]
fn a_syn_flood_keeps_memory_bounded_and_totals_exact() {
    let Some(_serial) = root_or_skip("a_syn_flood_keeps_memory_bounded_and_totals_exact") else {
        return;
    };
    let lab = lab_up("ao1-");
    let _listener = lab.listen().unwrap();
    let port = lab.echo_port();
    arm_truth(&lab, port);
    half_open(&lab);
    let kept = Arc::new(Mutex::new(Kept::default()));
    let k = kept.clone();
    // The DaemonSet's arguments (deploy/daemonset.yaml), the metrics port on loopback.
    let metrics = format!("--metrics={METRICS}");
    let args = ["--json", "--node=ao1-node", &metrics];
    let tracer = PipedTracer::start_command(&mut view_command("ao1-", false, &args), move |line| {
        let line: records::Line = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a tracer record ({e}): {line}"));
        let mut k = k.lock().unwrap();
        match line.record {
            Record::Distribution(d) => k.distribution.push(d),
            Record::Evicted(e) => k.evicted += e.count,
            Record::Flow(_) => k.summaries += 1,
            Record::Drop(d) if d.role == "target" && d.reason.contains("NOT_SPECIFIED") => {
                k.false_drops += 1
            }
            _ => {}
        }
    });
    let (code, body) = get("/healthz");
    assert_eq!(code, 200, "/healthz: {body}");

    // The flood: SYNs from the gateway, each from a new source port.
    let t0 = Instant::now();
    support::syn_flood(&lab, VIP4.into(), port, SYNS as usize, 20);
    eprintln!("ao1: {SYNS} SYNs sent in {:?}", t0.elapsed());
    // Let the last SYN-ACKs and RSTs land and the tracer publish its totals (every 500 ms).
    std::thread::sleep(Duration::from_secs(2));
    let (a, b) = (
        truth(&lab, Role::FrontendA, "eg"),
        truth(&lab, Role::FrontendB, "eg"),
    );
    let (syns, rsts) = (
        truth(&lab, Role::Target, "syns"),
        truth(&lab, Role::Target, "rsts"),
    );
    eprintln!("ao1: frontends saw {a} + {b} SYN-ACKs, the target {syns} SYNs and {rsts} RSTs");
    assert!(
        a > 0 && b > 0,
        "the flood's SYN-ACKs went through both frontends: {a} {b}"
    );
    assert!(
        syns >= u64::from(SYNS) * 9 / 10,
        "{syns} SYNs reached the target"
    );

    let peak = peak_kib(tracer.pid());
    eprintln!("ao1: peak RSS {peak} KiB");
    assert!(
        peak < PEAK_KIB,
        "peak RSS {peak} KiB, above 3/4 of the DaemonSet's {LIMIT_KIB} KiB"
    );
    let (code, _) = get("/healthz");
    assert_eq!(code, 200, "the tracer is up after the flood");

    let samples = scrape();
    let fe_ip = |r| lab.frontend_conduit_ip(r, false).to_string();
    let vip = VIP4.to_string();
    for (role, want) in [(Role::FrontendA, a), (Role::FrontendB, b)] {
        let got = sum(
            &samples,
            "meridio_tracer_packets_total",
            &[("vip", &vip), ("role", "proxy"), ("nexthop", &fe_ip(role))],
        );
        assert_eq!(
            got,
            want,
            "/metrics packets toward next-hop {}",
            fe_ip(role)
        );
    }
    let flows_at_target = sum(
        &samples,
        "meridio_tracer_flows_total",
        &[("vip", &vip), ("role", "target"), ("direction", "ingress")],
    );
    assert_eq!(
        flows_at_target, syns,
        "/metrics flows at the target against its SYN counter"
    );
    let flows_evicted = sum(&samples, "meridio_tracer_flows_evicted_total", &[]);
    assert!(flows_evicted > 0, "{SYNS} flows and no flow evicted");
    let consumed = sum(&samples, "meridio_tracer_rsts_consumed_total", &[]);
    eprintln!("ao1: flows evicted {flows_evicted}, RSTs consumed {consumed}");
    assert!(
        consumed > 0 && consumed <= rsts,
        "RSTs consumed {consumed}, at the target {rsts}"
    );
    // Labels name the topology, never a client: the lab's client is also its gateway
    // router, which a frontend's routed hop names as its next-hop, and nowhere else.
    let series = samples
        .iter()
        .filter(|(n, _, _)| n == "meridio_tracer_packets_total")
        .count();
    assert!(series < 64, "{series} packet series after {SYNS} flows");
    for (n, l, _) in &samples {
        for (k, v) in l {
            assert!(!k.contains("port"), "{n} has a port label {k}");
            let router = k == "nexthop" && l.get("role").map(String::as_str) == Some("frontend");
            assert!(v != GATEWAY || router, "{n} names the client in {k}: {l:?}");
        }
    }

    let (status, stderr) = tracer.stop(libc::SIGTERM, Duration::from_secs(120));
    assert!(status.success(), "tracer exit {status:?}: {stderr}");
    let k = std::mem::take(&mut *kept.lock().unwrap());
    eprintln!(
        "ao1: {} summaries, {} hop counters evicted, {} false drops",
        k.summaries, k.evicted, k.false_drops
    );
    assert_eq!(k.false_drops, 0, "consumed RSTs reported as drops");
    let d = k
        .distribution
        .iter()
        .find(|d| d.vip == std::net::IpAddr::V4(VIP4))
        .expect("a distribution of the VIP");
    for (role, want) in [(Role::FrontendA, a), (Role::FrontendB, b)] {
        let ip = lab.frontend_conduit_ip(role, false);
        let got: u64 = d
            .nexthops
            .iter()
            .filter(|n| n.nexthop == Some(ip))
            .map(|n| n.packets)
            .sum();
        assert_eq!(got, want, "distribution toward {ip}: {d:?}");
    }
}
