//! End-to-end test of the two-node lab (prefix `n1-`): one tracer per node, each seeing only
//! its node's pods (its node's netns, a netns directory of its own, its own pid namespace),
//! their JSON streams put together by `tracer merge`, from files and from `kubectl logs
//! --prefix`-style input. Real eBPF, root. Ground truth: the lab's placement of the pods,
//! nftables counters in the frontends and on the VXLAN payload in the nodes.
mod support;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use lab::{vni, Lab, LabSpec, Node, Role, VIP4, VIP6};
use support::{root_or_skip, start_node_tracers};
use tracer::records::{Hop, Line, Merged, Record};

/// The tracers' output files, removed also when the test fails.
struct OutputDir(PathBuf);

impl Drop for OutputDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const FRONTENDS: [Role; 2] = [Role::FrontendA, Role::FrontendB];

fn node_name(node: Node) -> &'static str {
    match node {
        Node::A => "n1-worker-a",
        Node::B => "n1-worker-b",
    }
}

/// The frontend whose counter `name` (read by `read`) saw packets; exactly one must have.
fn carried(name: &str, read: impl Fn(Role) -> u64) -> (Role, u64) {
    let used: Vec<(Role, u64)> = FRONTENDS
        .into_iter()
        .map(|fe| (fe, read(fe)))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(used.len(), 1, "counter {name}: {used:?}");
    used[0]
}

/// `tracer merge --json` of `inputs`, fed `stdin` (for `-`).
fn merge(inputs: &[&Path], stdin: Option<&str>) -> (Vec<Merged<'static>>, String) {
    let mut args = vec!["--json"];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    let out = support::tracer_merge(&args, stdin.map(str::as_bytes));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "tracer merge: {stderr}");
    let recs = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (recs, stderr)
}

/// The file's lines as `kubectl logs --prefix` shows a pod's log, with one line of the
/// tracer's stderr among them (a pod's log holds both).
fn as_kubectl_logs(file: &Path, pod: &str) -> Vec<String> {
    let prefix = format!("[pod/{pod}/tracer] ");
    let mut lines = vec![format!(
        "{prefix}warning: a line of stderr in the pod's log"
    )];
    for l in std::fs::read_to_string(file).unwrap().lines() {
        lines.push(format!("{prefix}{l}"));
    }
    lines
}

/// The merged record's hop, if it is one.
fn as_hop<'a>(r: &'a Merged) -> Option<&'a Hop<'a>> {
    match &r.line.record {
        Record::Hop(h) => Some(h),
        _ => None,
    }
}

/// Whether the record is of the flow of the client's `port`: a hop from or to it, or a
/// record carrying it as `client_port`.
fn of_port(r: &Merged, port: u16) -> bool {
    match &r.line.record {
        Record::Hop(h) => h.sport == port || h.dport == port,
        Record::Decision(d) => d.flow.client_port == port,
        Record::Route(l) => l.flow.client_port == port,
        Record::Drop(d) => d.flow.client_port == port,
        Record::Flow(f) => f.flow.client_port == port,
        Record::Ready(r) => r.client_port == Some(port),
        Record::Lost(_) | Record::Evicted(_) | Record::Change(_) | Record::Distribution(_) => false,
    }
}

/// (netns, ifname, dir) of the flow's hops carrying `flags` from `from_vip`'s side, in the
/// merged order, restricted to the netns in `path`.
fn hops(
    timeline: &[&Merged],
    flags: &str,
    from_vip: bool,
    path: &[String],
) -> Vec<(String, String, String)> {
    timeline
        .iter()
        .filter_map(|r| as_hop(r))
        .filter(|h| h.tcp_flags == flags)
        .filter(|h| (h.sport == 4000) == from_vip)
        .filter(|h| path.iter().any(|n| h.netns == n.as_str()))
        .map(|h| (h.netns.to_string(), h.ifname.to_string(), h.dir.to_string()))
        .collect()
}

fn hop(netns: &str, ifname: &str, dir: &str) -> (String, String, String) {
    (netns.into(), ifname.into(), dir.into())
}

/// One IPv4 and one IPv6 flow from the gateway (node B) to the target (node A): each
/// node's tracer sees only its own pods; merged, each flow is one timeline in which the
/// SYN goes gateway-side frontend -> tunnel -> proxy -> target and the SYN-ACK target ->
/// proxy -> tunnel -> frontend -> gateway, in wall-clock order, every record naming the
/// node its pod is on; the frontends the counters name, the VNIs whose tunnel counters
/// moved and the proxy's next-hop agree. `kubectl logs --prefix` input merges to the same.
#[test]
fn two_tracers_merged_show_each_flow_across_the_vxlan() {
    let Some(_serial) = root_or_skip("two_tracers_merged_show_each_flow_across_the_vxlan") else {
        return;
    };
    let lab = Lab::up(LabSpec {
        prefix: "n1-".into(),
        nodes: 2,
        ..Default::default()
    })
    .expect("lab up");
    let _listener = lab.listen().unwrap();
    let flows = [(IpAddr::V4(VIP4), 35991u16), (IpAddr::V6(VIP6), 35992u16)];
    for (vip, port) in flows {
        for fe in FRONTENDS {
            lab.add_frontend_counter(fe, &format!("eg{port}"), vip, port)
                .unwrap();
            lab.add_frontend_ingress_counter(fe, &format!("in{port}"), vip, port)
                .unwrap();
            lab.add_tunnel_counter(fe, &format!("vx_eg{port}_{}", vni(fe)), vip, port)
                .unwrap();
            lab.add_tunnel_ingress_counter(fe, &format!("vx_in{port}_{}", vni(fe)), vip, port)
                .unwrap();
        }
    }

    let dir = OutputDir(PathBuf::from(format!(
        "/tmp/two-node-test-{}",
        std::process::id()
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let dir = &dir.0;
    let mut tracers = start_node_tracers(&lab, dir, |n| node_name(n).to_string());
    for (vip, port) in flows {
        let echoed = lab.connect(vip, port, b"two nodes\n").unwrap();
        assert_eq!(echoed, b"two nodes\n");
    }
    std::thread::sleep(Duration::from_millis(300));
    for (node, on, _, err) in &mut tracers {
        let status = on.interrupt(Duration::from_secs(10)).unwrap();
        assert!(
            status.success(),
            "tracer on {node:?}: {status}\n{}",
            std::fs::read_to_string(&*err).unwrap_or_default()
        );
    }
    let files: Vec<&Path> = tracers.iter().map(|(_, _, out, _)| out.as_path()).collect();

    // Each node's tracer traced its own pods and no other.
    for (node, _, out, _) in &tracers {
        let text = std::fs::read_to_string(out).unwrap();
        for line in text.lines() {
            let r: Line = serde_json::from_str(line).unwrap();
            assert_eq!(r.stamp.node.as_deref(), Some(node_name(*node)), "{r:?}");
            // A flow summary of a node without the proxy names no netns ("").
            if let Some(ns) = r.record.netns().filter(|ns| !ns.is_empty()) {
                let on_node = lab.pods_on(*node).iter().any(|p| lab.ns(*p) == ns);
                assert!(on_node, "the tracer on {node:?} reports {ns}: {r:?}");
            }
        }
    }

    let (merged, _) = merge(&files, None);
    // The same streams as `kubectl logs --prefix -l app=meridio-tracer` gives them.
    let mut logs = as_kubectl_logs(files[0], "meridio-tracer-7xk2p");
    logs.extend(as_kubectl_logs(files[1], "meridio-tracer-q9z4d"));
    let (from_logs, stderr) = merge(&[Path::new("-")], Some(&(logs.join("\n") + "\n")));
    assert_eq!(merged, from_logs, "kubectl-style input merges differently");
    assert!(
        stderr.contains("skipped 2 line(s)"),
        "the two stderr lines: {stderr}"
    );

    let node_of_ns = |ns: &str| {
        Role::ALL
            .into_iter()
            .find(|r| lab.ns(*r) == ns)
            .map(Node::of)
    };
    let (px, tg) = (lab.ns(Role::Proxy), lab.ns(Role::Target));
    let names = lab.names();
    for (vip, port) in flows {
        let v6 = vip.is_ipv6();
        let timeline: Vec<&Merged> = merged.iter().filter(|r| of_port(r, port)).collect();
        let n = timeline[0].timeline;
        assert!(
            timeline.iter().all(|r| r.timeline == n),
            "flow {port} in several timelines"
        );
        for r in &timeline {
            if let Some(node) = r.line.record.netns().and_then(node_of_ns) {
                assert_eq!(r.line.stamp.node.as_deref(), Some(node_name(node)), "{r:?}");
            }
        }
        let walls: Vec<i64> = timeline
            .iter()
            .filter_map(|r| r.line.stamp.wall_ns)
            .collect();
        assert!(
            walls.windows(2).all(|w| w[0] <= w[1]),
            "flow {port}: not in wall-clock order"
        );

        // Every successful lookup is filed under a namespace that has its table (the
        // node-wide hooks see every namespace's lookups, node B's included): ground truth
        // is the namespace's own routing table, read with `ip`.
        for r in timeline.iter().filter_map(|r| match &r.line.record {
            Record::Route(l) if l.err == 0 => Some(l),
            _ => None,
        }) {
            let (ns, table) = (&*r.netns, r.table.to_string());
            let out = std::process::Command::new("ip")
                .args([
                    "-n",
                    ns,
                    if v6 { "-6" } else { "-4" },
                    "route",
                    "show",
                    "table",
                ])
                .arg(&table)
                .output()
                .unwrap();
            assert!(
                out.status.success() && !out.stdout.is_empty(),
                "flow {port}: a lookup in table {table} filed under {ns}, which has no such table: {r:?}"
            );
        }

        // Replies: which frontend got them (counters), which VNI carried them.
        let (fe, got) = carried(&format!("eg{port}"), |fe| {
            lab.frontend_counter(fe, &format!("eg{port}")).unwrap()
        });
        let (vx_fe, tunnelled) = carried(&format!("vx_eg{port}"), |fe| {
            lab.node_counter(Node::B, &format!("vx_eg{port}_{}", vni(fe)))
                .unwrap()
        });
        assert_eq!(
            (vx_fe, tunnelled),
            (fe, got),
            "flow {port}: tunnel and frontend disagree"
        );
        // Requests: likewise, the other way.
        let (fe_in, got_in) = carried(&format!("in{port}"), |fe| {
            lab.frontend_counter(fe, &format!("in{port}")).unwrap()
        });
        let (vx_in, tunnelled_in) = carried(&format!("vx_in{port}"), |fe| {
            lab.node_counter(Node::A, &format!("vx_in{port}_{}", vni(fe)))
                .unwrap()
        });
        assert_eq!(
            (vx_in, tunnelled_in),
            (fe_in, got_in),
            "flow {port}: requests"
        );

        // SYN: gateway -> frontend (node B) -> tunnel -> proxy -> target (node A).
        let fe_ns = lab.ns(fe_in);
        let conduit = if fe_in == Role::FrontendA {
            names.fea_conduit
        } else {
            names.feb_conduit
        };
        let path = [fe_ns.clone(), px.clone(), tg.clone()];
        assert_eq!(
            hops(&timeline, "SYN", false, &path),
            [
                hop(&fe_ns, names.fe_ext, "ingress"),
                hop(&fe_ns, conduit, "egress"),
                hop(&px, lab.proxy_port_towards(fe_in), "ingress"),
                hop(&px, names.px_port_tg, "egress"),
                hop(&tg, names.tg_if, "ingress"),
            ],
            "flow {port}: the SYN's path in the merged timeline"
        );
        // SYN-ACK: target -> proxy (node A) -> tunnel -> frontend -> gateway (node B).
        let fe_ns = lab.ns(fe);
        let conduit = if fe == Role::FrontendA {
            names.fea_conduit
        } else {
            names.feb_conduit
        };
        let path = [fe_ns.clone(), px.clone(), tg.clone()];
        assert_eq!(
            hops(&timeline, "SYN,ACK", true, &path),
            [
                hop(&tg, names.tg_if, "egress"),
                hop(&px, names.px_port_tg, "ingress"),
                hop(&px, names.px_bridge, "ingress"),
                hop(&px, names.px_bridge, "egress"),
                hop(&px, lab.proxy_port_towards(fe), "egress"),
                hop(&fe_ns, conduit, "ingress"),
                hop(&fe_ns, names.fe_ext, "egress"),
            ],
            "flow {port}: the SYN-ACK's path in the merged timeline"
        );
        // The proxy's next-hop is the frontend the counters name.
        let routed: Vec<String> = timeline
            .iter()
            .filter_map(|r| as_hop(r))
            .filter(|h| h.netns == px.as_str() && h.dir == "egress")
            .filter_map(|h| h.nexthop.map(|n| n.to_string()))
            .collect();
        let want = lab.frontend_conduit_ip(fe, v6).to_string();
        assert!(
            !routed.is_empty() && routed.iter().all(|n| *n == want),
            "flow {port}: next-hops {routed:?}, counters say {want}"
        );
        // Every reply the proxy sent toward the frontend crossed the tunnel.
        let sent = timeline
            .iter()
            .filter_map(|r| as_hop(r))
            .filter(|h| {
                h.netns == px.as_str()
                    && h.ifname == lab.proxy_port_towards(fe)
                    && h.dir == "egress"
            })
            .count() as u64;
        assert_eq!(
            sent,
            tunnelled,
            "flow {port}: replies on the proxy port vs VNI {}",
            vni(fe)
        );
        eprintln!(
            "flow {port}: SYN via {:?}, replies via {:?} (VNI {}, {tunnelled} packets), next-hop {want}",
            fe_in,
            fe,
            vni(fe)
        );
    }
}
