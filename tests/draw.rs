//! End-to-end tests of `tracer draw` on the lab's real traces (real eBPF, root): one node
//! with the real nfqlb and three targets, and the two-node lab's two tracers merged. The
//! SVG is read back as XML and set against the records it was drawn from and against the
//! lab (the target that answered, the pods each node holds); `rsvg-convert` renders it.
//!
//! Labs use the netns prefixes `dr1-` and `dr2-`.
mod support;

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use lab::{Lab, LabSpec, Lb, Node, VIP4};
use support::{root_or_skip, start_node_tracers, view_command, Tracer, TRACER};
use tracer::records::{Hop, Line, Record};

/// A scratch directory, removed also when the test fails.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = PathBuf::from(format!("/tmp/draw-test-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `tracer draw <args>`: it must succeed; returns its standard error.
fn draw(args: &[&str]) -> String {
    let out = Command::new(TRACER)
        .arg("draw")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "tracer draw {args:?}: {stderr}");
    stderr
}

/// The texts of the elements of `class` (a word of their class attribute), each its
/// descendants' text joined.
fn texts_of(doc: &roxmltree::Document, class: &str) -> Vec<Vec<String>> {
    doc.descendants()
        .filter(|n| {
            n.attribute("class")
                .is_some_and(|c| c.split(' ').any(|w| w == class))
        })
        .map(|n| {
            n.descendants()
                .filter(|t| t.has_tag_name("text"))
                .filter_map(|t| t.text().map(|s| s.trim().to_string()))
                .collect()
        })
        .collect()
}

/// What every picture must be: XML, every coordinate inside its view box, and a PNG of
/// exactly its size from `rsvg-convert` with nothing on its standard error.
fn well_formed(svg_path: &Path) -> String {
    let svg = std::fs::read_to_string(svg_path).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the SVG parses as XML");
    let root = doc.root_element();
    let view: Vec<f64> = root
        .attribute("viewBox")
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let (w, h) = (view[2], view[3]);
    for n in doc.descendants().filter(|n| n.is_element()) {
        for (a, max) in [
            ("x", w),
            ("x1", w),
            ("x2", w),
            ("y", h),
            ("y1", h),
            ("y2", h),
        ] {
            if let Some(v) = n.attribute(a).and_then(|v| v.parse::<f64>().ok()) {
                assert!(
                    (0.0..=max).contains(&v),
                    "{a}={v} outside the view box {w}x{h}"
                );
            }
        }
        if let (Some(x), Some(width)) = (n.attribute("x"), n.attribute("width")) {
            let right = x.parse::<f64>().unwrap() + width.parse::<f64>().unwrap();
            assert!(right <= w + 0.01, "a box ends at {right}, past {w}");
        }
    }
    let png = svg_path.with_extension("png");
    let out = Command::new("rsvg-convert")
        .arg("-o")
        .arg(&png)
        .arg(svg_path)
        .output()
        .expect("rsvg-convert (Debian's librsvg2-bin) is installed");
    assert!(out.status.success(), "rsvg-convert failed");
    assert!(
        out.stderr.is_empty(),
        "rsvg-convert warned: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The PNG's size is in its IHDR chunk: width and height, big-endian, at bytes 16..24.
    let bytes = std::fs::read(&png).unwrap();
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as f64;
    assert_eq!(
        (be(16), be(20)),
        (w.ceil(), h.ceil()),
        "PNG size vs view box"
    );
    svg
}

fn hops_of<'a>(lines: &'a [Line<'static>], client: SocketAddr) -> Vec<&'a Hop<'static>> {
    lines
        .iter()
        .filter_map(|l| match &l.record {
            Record::Hop(h)
                if (h.src == client.ip() && h.sport == client.port())
                    || (h.dst == client.ip() && h.dport == client.port()) =>
            {
                Some(h)
            }
            _ => None,
        })
        .collect()
}

/// Pods, ports and arrows of the picture against the hop records it was drawn from.
fn matches_its_hops(doc: &roxmltree::Document, hops: &[&Hop]) {
    let pods: BTreeSet<&str> = hops.iter().map(|h| &*h.netns).collect();
    let boxes = texts_of(doc, "pod");
    assert_eq!(boxes.len(), pods.len(), "one box per pod: {pods:?}");
    for pod in &pods {
        let b = boxes.iter().find(|t| t.iter().any(|s| s == pod));
        let b = b.unwrap_or_else(|| panic!("no box names {pod}"));
        let ports: BTreeSet<&str> = hops
            .iter()
            .filter(|h| h.netns == *pod)
            .map(|h| &*h.ifname)
            .collect();
        for port in &ports {
            assert!(b.iter().any(|s| s == port), "{pod}: no port {port}");
        }
    }
    let ports: usize = pods
        .iter()
        .map(|pod| {
            hops.iter()
                .filter(|h| h.netns == *pod)
                .map(|h| &h.ifname)
                .collect::<BTreeSet<_>>()
                .len()
        })
        .sum();
    assert_eq!(texts_of(doc, "port").len(), ports, "one port per interface");
    let numbers: Vec<String> = texts_of(doc, "number").into_iter().flatten().collect();
    let want: Vec<String> = (1..=hops.len()).map(|n| n.to_string()).collect();
    assert_eq!(numbers, want, "a numbered arrow per hop record");
}

/// One connection through the real nfqlb: the picture has the flow's pods, ports and hops,
/// the target that answered as the load balancer's choice and the proxy's next-hop; the
/// distribution picture has each target nfqlb sent flows to.
#[test]
fn one_flow_through_the_load_balancer_drawn() {
    let Some(_serial) = root_or_skip("one_flow_through_the_load_balancer_drawn") else {
        return;
    };
    let lab = Lab::up(LabSpec {
        prefix: "dr1-".into(),
        lb: Lb::Nfqlb,
        targets: 3,
        ..Default::default()
    })
    .expect("the lab with nfqlb and three targets");
    let targets = lab.targets();
    let tracer = Tracer::start_command(&mut view_command(
        "dr1-",
        false,
        &["--json", "--vip", "20.0.0.1", "--vip", "2000::1"],
    ));
    let host = lab.ask_hostname(IpAddr::V4(VIP4), 35010).unwrap();
    for port in [35011, 35012] {
        lab.ask_hostname(IpAddr::V4(VIP4), port).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "tracer failed: {}", f.stderr);
    let answered = targets
        .iter()
        .find(|t| t.hostname == host.trim())
        .unwrap_or_else(|| panic!("{host} is no target of the lab"));

    let dir = Scratch::new("one");
    let input = dir.0.join("trace.jsonl");
    // The records as the tracer wrote them (they read back and serialise to the same JSON).
    let text: Vec<String> = f
        .lines
        .iter()
        .map(|l| serde_json::to_string(l).unwrap())
        .collect();
    std::fs::write(&input, text.join("\n") + "\n").unwrap();
    let flow = f
        .flows()
        .into_iter()
        .find(|fl| fl.flow.client_port == 35010 && fl.flow.vip == IpAddr::V4(VIP4))
        .expect("the flow's summary")
        .clone();
    let client = SocketAddr::new(flow.flow.client, 35010);
    let svg_path = dir.0.join("flow.svg");
    draw(&[
        input.to_str().unwrap(),
        "--client",
        &client.to_string(),
        "-o",
        svg_path.to_str().unwrap(),
    ]);
    let svg = well_formed(&svg_path);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let hops = hops_of(&f.lines, client);
    matches_its_hops(&doc, &hops);
    assert!(
        hops.iter().any(|h| h.netns == answered.ns),
        "the target that answered is among the pods"
    );
    let decisions = texts_of(&doc, "decision").concat().join("\n");
    assert!(
        decisions.contains(&format!("target {}", answered.ipv4)),
        "the load balancer's choice names {}: {decisions}",
        answered.ipv4
    );
    let nexthop = flow.egress.nexthop.expect("the reply's next-hop");
    assert!(
        decisions.contains(&format!("taken {nexthop}")),
        "the proxy's choice names {nexthop}: {decisions}"
    );

    // The distribution picture: every target that got flows, with its count.
    let dist_path = dir.0.join("distribution.svg");
    draw(&[
        input.to_str().unwrap(),
        "--distribution",
        "-o",
        dist_path.to_str().unwrap(),
    ]);
    let svg = well_formed(&dist_path);
    let d = f
        .distributions()
        .into_iter()
        .find(|d| d.vip == IpAddr::V4(VIP4))
        .expect("the distribution of the VIP")
        .clone();
    assert_eq!(d.flows, 3);
    for t in targets.iter().filter(|t| d.flows_to(&t.ns) > 0) {
        let want = format!("target {} {}", t.ns, t.ipv4);
        assert!(svg.contains(&want), "{want}");
    }

    // Live: `--port P --svg FILE` draws the followed flow while the tracer runs.
    let live = dir.0.join("live.svg");
    let tracer = Tracer::start_command(&mut view_command(
        "dr1-",
        false,
        &[
            "--json",
            "--vip",
            "20.0.0.1",
            "--port",
            "35013",
            "--svg",
            live.to_str().unwrap(),
        ],
    ));
    lab.ask_hostname(IpAddr::V4(VIP4), 35013).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !live.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(live.exists(), "no picture while the tracer runs");
    std::thread::sleep(Duration::from_millis(500));
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "tracer failed: {}", f.stderr);
    let svg = well_formed(&live);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let client = SocketAddr::new(flow.flow.client, 35013);
    matches_its_hops(&doc, &hops_of(&f.lines, client));
}

/// The two-node lab, one tracer per node, merged: a box per pod with its node as the lab
/// placed it, a band per node, an arrow per hop record of the merged timeline.
#[test]
fn two_nodes_merged_drawn() {
    let Some(_serial) = root_or_skip("two_nodes_merged_drawn") else {
        return;
    };
    let lab = Lab::up(LabSpec {
        prefix: "dr2-".into(),
        nodes: 2,
        ..Default::default()
    })
    .expect("lab up");
    let _listener = lab.listen().unwrap();
    let dir = Scratch::new("two");
    let node_name = |n: Node| format!("dr2-{n:?}").to_lowercase();
    let mut tracers = start_node_tracers(&lab, &dir.0, node_name);
    let echoed = lab
        .connect(IpAddr::V4(VIP4), 35020, b"two nodes\n")
        .unwrap();
    assert_eq!(echoed, b"two nodes\n");
    std::thread::sleep(Duration::from_millis(300));
    for (_, on, _, _) in &mut tracers {
        assert!(on.interrupt(Duration::from_secs(10)).unwrap().success());
    }
    let merged = Command::new(TRACER)
        .args(["merge", "--json"])
        .args(tracers.iter().map(|(_, _, out, _)| out))
        .output()
        .unwrap();
    assert!(merged.status.success());
    let input = dir.0.join("merged.jsonl");
    std::fs::write(&input, &merged.stdout).unwrap();
    let lines: Vec<Line> = String::from_utf8(merged.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let client = lines
        .iter()
        .find_map(|l| match &l.record {
            Record::Flow(f) if f.flow.client_port == 35020 => {
                Some(SocketAddr::new(f.flow.client, 35020))
            }
            _ => None,
        })
        .expect("the flow's summary");
    let svg_path = dir.0.join("merged.svg");
    draw(&[
        input.to_str().unwrap(),
        "--client",
        &client.to_string(),
        "-o",
        svg_path.to_str().unwrap(),
    ]);
    let svg = well_formed(&svg_path);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let hops = hops_of(&lines, client);
    matches_its_hops(&doc, &hops);
    let nodes: BTreeSet<String> = hops
        .iter()
        .map(|h| {
            let node = Node::ALL
                .into_iter()
                .find(|n| lab.pods_on(*n).iter().any(|p| lab.ns(*p) == h.netns))
                .unwrap_or_else(|| panic!("{} is on no node of the lab", h.netns));
            let b = texts_of(&doc, "pod")
                .into_iter()
                .find(|t| t.contains(&h.netns.to_string()))
                .unwrap();
            let want = format!("node {}", node_name(node));
            assert!(b.contains(&want), "{}: {b:?}, not {want}", h.netns);
            node_name(node)
        })
        .collect();
    assert_eq!(nodes.len(), 2, "the flow crossed both nodes");
    let bands: Vec<String> = texts_of(&doc, "node").concat();
    for n in &nodes {
        assert!(bands.contains(&format!("node {n}")), "no band of {n}");
    }
}
