//! A real Prometheus server (Debian's `prometheus`, run by the test on a port of its own)
//! scrapes the whole-path tracer, run with the DaemonSet's arguments, every second while
//! `mconnect` crosses the lab with Meridio's nfqlb and three targets. PromQL's answers
//! are compared with independent truth: packets per proxy next-hop with the frontends'
//! nftables counters, flows per target with mconnect's own report per hostname. No series
//! carries a client address or one of mconnect's source ports (an nftables set in the
//! gateway records each port it used). Real eBPF, the namespace lab, root.
//!
//! Labs use the netns prefix `pm1-`.
mod support;

use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use lab::{Lab, LabSpec, Lb, Role, VIP4, VIP6, VIP_PORT};
use serde_json::Value;
use support::{http_get, root_or_skip, view_command, Tracer};

const PREFIX: &str = "pm1-";
const FRONTENDS: [Role; 2] = [Role::FrontendA, Role::FrontendB];
/// Connections per VIP.
const NCONN: u32 = 100;
const JOB: &str = "meridio-tracer";
/// The client: the lab's gateway, per family.
const CLIENTS: [&str; 2] = ["169.254.100.150", "100:100::150"];

/// A port nothing listens on now (the kernel's pick, released at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Prometheus as a child of the test, with its storage and config in a directory of its
/// own; killed and removed on drop, so a failing test leaves neither behind.
struct Prometheus {
    child: Child,
    dir: std::path::PathBuf,
    addr: String,
}

impl Prometheus {
    /// Starts `/usr/bin/prometheus` scraping `target` every second and waits (30 s at
    /// most) until it is ready.
    fn start(target: &str) -> Prometheus {
        let bin = "/usr/bin/prometheus";
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} (Debian package prometheus) is needed by this test"
        );
        let dir = std::env::temp_dir().join(format!("tracer-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{bin} does not start: {e}"));
        let mut p = Prometheus { child, dir, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited ({status}): {}", p.log());
            }
            let ready = std::net::TcpStream::connect(&p.addr).is_ok()
                && http_get(&p.addr, "/-/ready").0 == 200;
            if ready {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready in 30 s: {}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// `GET /api/v1/<endpoint>?<params>`: the answer's `data`; an error fails the test.
    fn api(&self, endpoint: &str, params: &[(&str, &str)]) -> Value {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let path = format!("/api/v1/{endpoint}?{}", query.join("&"));
        let (code, body) = http_get(&self.addr, &path);
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
        assert!(
            code == 200 && v["status"] == "success",
            "{path}: {code} {body}"
        );
        v["data"].clone()
    }

    /// An instant PromQL query now: each sample's labels and value.
    fn query(&self, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let data = self.api("query", &[("query", promql)]);
        assert_eq!(data["resultType"], "vector", "{promql}: {data}");
        data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels = serde_json::from_value(s["metric"].clone()).unwrap();
                let value = s["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect()
    }

    /// `sum by (<by>) (<expr>)` as label value -> integer count.
    fn sum_by(&self, by: &str, expr: &str) -> BTreeMap<String, u64> {
        self.query(&format!("sum by ({by}) ({expr})"))
            .into_iter()
            .map(|(l, v)| {
                assert_eq!(v.fract(), 0.0, "{expr}: a count that is not whole: {v}");
                (l.get(by).cloned().unwrap_or_default(), v as u64)
            })
            .collect()
    }

    /// The time of the latest scrape of the tracer (the timestamp of its `up` sample),
    /// once one succeeded.
    fn last_scrape(&self) -> Option<f64> {
        self.query(&format!("timestamp(up{{job=\"{JOB}\"}} == 1)"))
            .first()
            .map(|(_, t)| *t)
    }

    /// Waits (15 s at most) until Prometheus has scraped the tracer after `t`.
    fn scraped_after(&self, t: f64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let last = self.last_scrape();
            if last.is_some_and(|l| l > t) {
                return;
            }
            let up = self.query(&format!("up{{job=\"{JOB}\"}}"));
            assert!(
                Instant::now() < deadline,
                "no scrape of the tracer after {t} in 15 s: last {last:?}, up {up:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encoding of a query string's key or value (everything but the unreserved).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The container's `args` in deploy/daemonset.yaml, with this node's name for
/// `$(NODE_NAME)` and `metrics` for the port `--metrics` is given.
fn daemonset_args(node: &str, metrics: &str) -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/daemonset.yaml");
    let yaml = std::fs::read_to_string(path).unwrap();
    let args: Vec<String> = yaml
        .lines()
        .skip_while(|l| l.trim() != "args:")
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .map_while(|l| l.strip_prefix("- "))
        .map(|a| {
            a.replace("$(NODE_NAME)", node)
                .replace("--metrics=9464", &format!("--metrics={metrics}"))
        })
        .collect();
    assert!(
        args.contains(&"--json".to_string()) && args.contains(&format!("--metrics={metrics}")),
        "the DaemonSet's args in {path}: {args:?}"
    );
    args
}

/// Ground truth: in each frontend, counters of the replies the proxy sends it per VIP (the
/// proxy's ECMP next-hop) and of the SYNs at each target; in the gateway, the set of
/// source ports its connections to the VIPs used.
fn arm_truth(lab: &Lab) {
    for (i, vip) in [IpAddr::from(VIP4), IpAddr::from(VIP6)].iter().enumerate() {
        let family = if vip.is_ipv4() { "ip" } else { "ip6" };
        for fe in FRONTENDS {
            let conduit = if fe == Role::FrontendA {
                lab.names().fea_conduit
            } else {
                lab.names().feb_conduit
            };
            let m = format!("iifname \"{conduit}\" {family} saddr {vip} tcp sport {VIP_PORT}");
            lab.add_counter(&lab.ns(fe), &format!("r{i}"), &m).unwrap();
        }
        for t in lab.targets() {
            let m =
                format!("{family} daddr {vip} tcp dport {VIP_PORT} tcp flags & (syn | ack) == syn");
            lab.add_counter(&t.ns, &format!("s{i}"), &m).unwrap();
        }
    }
    let script = format!(
        "add table inet pm
add set inet pm ports {{ type inet_service; size 65535; flags dynamic; }}
add chain inet pm out {{ type filter hook output priority 0; policy accept; }}
add rule inet pm out ip daddr {VIP4} tcp dport {VIP_PORT} add @ports {{ tcp sport }}
add rule inet pm out ip6 daddr {VIP6} tcp dport {VIP_PORT} add @ports {{ tcp sport }}
"
    );
    let gw = lab.ns(Role::Gateway);
    lab::cmd::run_with_stdin(
        "ip",
        &["netns", "exec", &gw, "nft", "-f", "-"],
        Some(&script),
    )
    .unwrap();
}

/// The source ports the gateway's connections to the VIPs used.
fn client_ports(lab: &Lab) -> HashSet<u16> {
    let gw = lab.ns(Role::Gateway);
    let out = lab::cmd::run(
        "ip",
        &[
            "netns", "exec", &gw, "nft", "-j", "list", "set", "inet", "pm", "ports",
        ],
    )
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["set"]["elem"].as_array())
        .flatten()
        .map(|e| e.as_u64().unwrap_or_else(|| panic!("a port: {e}")) as u16)
        .collect()
}

/// Every counter of the truth, to tell that the traffic has ended.
fn truth_snapshot(lab: &Lab) -> Vec<u64> {
    let mut all = Vec::new();
    for i in 0..2 {
        for fe in FRONTENDS {
            all.push(lab.counter(&lab.ns(fe), &format!("r{i}")).unwrap());
        }
        for t in lab.targets() {
            all.push(lab.counter(&t.ns, &format!("s{i}")).unwrap());
        }
    }
    all
}

#[test]
fn prometheus_scrapes_exact_next_hops_and_targets_and_no_client() {
    let Some(_serial) =
        root_or_skip("prometheus_scrapes_exact_next_hops_and_targets_and_no_client")
    else {
        return;
    };
    let t0 = Instant::now();
    let lab = Lab::up(LabSpec {
        prefix: PREFIX.into(),
        lb: Lb::Nfqlb,
        targets: 3,
        ..Default::default()
    })
    .expect("the lab with nfqlb and three targets");
    let targets = lab.targets();
    arm_truth(&lab);

    // The DaemonSet's arguments, the metrics port on loopback.
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let args = daemonset_args(&format!("{PREFIX}node"), &metrics_addr);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tracer = Tracer::start_command(&mut view_command(PREFIX, false, &args));
    let prom = Prometheus::start(&metrics_addr);
    prom.scraped_after(now());
    eprintln!(
        "pm1: lab, tracer ({args:?}) and prometheus up in {:?}",
        t0.elapsed()
    );

    let mut reports = Vec::new();
    for vip in [IpAddr::from(VIP4), IpAddr::from(VIP6)] {
        let report = lab.mconnect(vip, NCONN).unwrap();
        assert_eq!(
            (report.connects, report.failed_connects),
            (u64::from(NCONN), 0),
            "{report:?}"
        );
        reports.push((vip, report));
    }
    // The traffic has ended when the truth stops moving (FINs and last ACKs land); the
    // tracer reads the kernel's totals every 500 ms, so a scrape 1.5 s later has them all.
    let mut truth = truth_snapshot(&lab);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let again = truth_snapshot(&lab);
        if again == truth {
            break;
        }
        truth = again;
    }
    prom.scraped_after(now() + 1.5);
    assert_eq!(truth_snapshot(&lab), truth, "the traffic went on");
    eprintln!("pm1: traffic done and scraped at {:?}", t0.elapsed());

    for (i, (vip, report)) in reports.iter().enumerate() {
        // TCP packets per next-hop of the proxy's routed hop: the frontends' counters, and
        // no other next-hop.
        let per_nexthop = prom.sum_by(
            "nexthop",
            &format!(
                "meridio_tracer_packets_total{{vip=\"{vip}\",role=\"proxy\",nexthop!=\"\",proto=\"tcp\"}}"
            ),
        );
        eprintln!("pm1: {vip} packets per proxy next-hop {per_nexthop:?}");
        let mut want = BTreeMap::new();
        for fe in FRONTENDS {
            let replies = lab.counter(&lab.ns(fe), &format!("r{i}")).unwrap();
            let nexthop = lab.frontend_conduit_ip(fe, vip.is_ipv6()).to_string();
            assert!(replies > 0, "{vip}: no reply reached {nexthop}");
            want.insert(nexthop, replies);
        }
        assert_eq!(
            per_nexthop, want,
            "{vip} packets per next-hop: PromQL, then the frontends' counters"
        );
        // Flows per target, against mconnect's own report per hostname.
        let per_target = prom.sum_by(
            "pod",
            &format!(
                "meridio_tracer_flows_total{{vip=\"{vip}\",role=\"target\",direction=\"ingress\",proto=\"tcp\"}}"
            ),
        );
        eprintln!(
            "pm1: {vip} flows per target {per_target:?}, mconnect {:?}",
            report.hosts
        );
        for t in &targets {
            let want = report.count(&t.hostname);
            assert!(
                want > 0,
                "{vip}: mconnect reached no {}: {report:?}",
                t.hostname
            );
            let syns = lab.counter(&t.ns, &format!("s{i}")).unwrap();
            assert_eq!(
                per_target.get(&t.ns).copied(),
                Some(want),
                "{vip} flows to {}: PromQL {per_target:?}, mconnect {report:?} (SYNs at the target: {syns})",
                t.ns
            );
        }
        let mut pods: Vec<&String> = per_target.keys().collect();
        pods.sort();
        let mut want: Vec<&String> = targets.iter().map(|t| &t.ns).collect();
        want.sort();
        assert_eq!(pods, want, "{vip}: flows at pods that are not targets");
    }

    // No series names a client. The gateway is the lab's client and also its router, which
    // a frontend's routed hop names as its next-hop, and nowhere else; `instance` is the
    // tracer's own metrics address, which Prometheus adds.
    let ports = client_ports(&lab);
    assert!(
        ports.len() >= NCONN as usize,
        "the gateway's set holds {} source ports",
        ports.len()
    );
    let series = prom.api(
        "series",
        &[
            ("match[]", "{__name__=~\"meridio_tracer_.+\"}"),
            ("start", &format!("{}", now() - 3600.0)),
        ],
    );
    let series: Vec<BTreeMap<String, String>> = serde_json::from_value(series).unwrap();
    let names: HashSet<&str> = series.iter().map(|s| s["__name__"].as_str()).collect();
    for want in [
        "meridio_tracer_packets_total",
        "meridio_tracer_flows_total",
        "meridio_tracer_hook",
    ] {
        assert!(names.contains(want), "no series of {want}: {names:?}");
    }
    eprintln!("pm1: {} series, {} client ports", series.len(), ports.len());
    for s in &series {
        for (k, v) in s {
            if k == "instance" {
                assert_eq!(v, &metrics_addr);
                continue;
            }
            assert!(!k.contains("port"), "a port label {k}: {s:?}");
            let router = k == "nexthop" && s.get("role").map(String::as_str) == Some("frontend");
            assert!(
                router || !CLIENTS.contains(&v.as_str()),
                "a client address in {k}: {s:?}"
            );
            for n in v
                .split(|c: char| !c.is_ascii_digit())
                .filter(|n| !n.is_empty())
            {
                let port = n.parse::<u32>().ok().and_then(|n| u16::try_from(n).ok());
                assert!(
                    !port.is_some_and(|p| ports.contains(&p)),
                    "a client port ({n}) in {k}: {s:?}"
                );
            }
        }
    }

    drop(prom);
    let f = tracer.stop(libc::SIGTERM);
    assert!(
        f.status.success(),
        "tracer exit {:?}: {}",
        f.status,
        f.stderr
    );
    eprintln!("pm1: done in {:?}", t0.elapsed());
}
