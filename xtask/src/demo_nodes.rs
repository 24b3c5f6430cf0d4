//! `cargo xtask demo --nodes 2`: the two-node lab, one tracer per node (each seeing only
//! its node's pods, as the DaemonSet's pods would), one connection from the gateway, and
//! the two JSON streams put together by `tracer merge`. Owns the order of those steps; the
//! lab goes down on every path (Lab's Drop), the tracers too (OnNode's Drop).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::toolchain::{ensure_host_tools, ensure_tracefs, LAB_TOOLS};
use anyhow::{bail, Context, Result};
use lab::{vni, wait_ready, Lab, LabSpec, Node, Role, VIP4};

const CLIENT_PORT: u16 = 35000;

fn node_name(node: Node) -> &'static str {
    match node {
        Node::A => "worker-a",
        Node::B => "worker-b",
    }
}

pub fn demo(release: bool, prefix: &str) -> Result<()> {
    crate::require_root("demo")?;
    ensure_host_tools(LAB_TOOLS)?;
    ensure_tracefs()?;
    crate::build(release)?;
    let tracer = crate::tracer_path(release);

    let lab = Lab::up(LabSpec {
        prefix: prefix.to_string(),
        nodes: 2,
        ..LabSpec::default()
    })
    .context("could not bring the two-node lab up")?;
    let _listener = lab.listen()?;
    let vip = IpAddr::V4(VIP4);
    for fe in [Role::FrontendA, Role::FrontendB] {
        lab.add_tunnel_counter(fe, &format!("vni{}", vni(fe)), vip, CLIENT_PORT)?;
    }
    println!(
        "two-node lab up: {} holds {} and {}; {} holds {}, {} and {}; conduits over VXLAN",
        lab.node_ns(Node::A),
        lab.ns(Role::Proxy),
        lab.ns(Role::Target),
        lab.node_ns(Node::B),
        lab.ns(Role::FrontendA),
        lab.ns(Role::FrontendB),
        lab.ns(Role::Gateway)
    );

    let dir = crate::workspace_root().join("target").join("demo-nodes");
    std::fs::create_dir_all(&dir)?;
    let mut running = Vec::new();
    for node in Node::ALL {
        let out = dir.join(format!("{}.jsonl", node_name(node)));
        let err = dir.join(format!("{}.log", node_name(node)));
        let args = [
            "--json",
            "--node",
            node_name(node),
            "--port",
            &CLIENT_PORT.to_string(),
        ]
        .map(String::from);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut on = lab.spawn_on_node(
            node,
            &tracer,
            &args,
            std::fs::File::create(&out)?.into(),
            std::fs::File::create(&err)?.into(),
        )?;
        let traced: Vec<String> = lab
            .pods_on(node)
            .into_iter()
            .filter(|r| *r != Role::Gateway)
            .map(|r| lab.ns(r))
            .collect();
        wait_ready(&out, &traced, &mut on, Duration::from_secs(60)).with_context(|| {
            format!(
                "the tracer on {} ({}): {}",
                node_name(node),
                err.display(),
                std::fs::read_to_string(&err).unwrap_or_default()
            )
        })?;
        println!(
            "tracer on {} (netns {}) traces {}",
            node_name(node),
            lab.node_ns(node),
            traced.join(", ")
        );
        running.push((node, on, out));
    }

    println!(
        "connecting from {}: {vip} port 4000, client port {CLIENT_PORT}",
        lab.ns(Role::Gateway)
    );
    let payload = b"hello across two nodes\n";
    let echoed = lab.connect(vip, CLIENT_PORT, payload)?;
    if echoed != payload {
        bail!("the echo was {:?}", String::from_utf8_lossy(&echoed));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut files: Vec<PathBuf> = Vec::new();
    for (node, on, out) in &mut running {
        let status = on.interrupt(Duration::from_secs(15))?;
        if !status.success() {
            bail!("the tracer on {} failed ({status})", node_name(*node));
        }
        files.push(out.clone());
    }

    println!("\n$ tracer merge {}", files_text(&files));
    let status = Command::new(&tracer)
        .arg("merge")
        .args(&files)
        .stdout(Stdio::inherit())
        .status()
        .context("could not run tracer merge")?;
    if !status.success() {
        bail!("tracer merge failed ({status})");
    }
    println!();
    for fe in [Role::FrontendA, Role::FrontendB] {
        let n = lab.node_counter(Node::B, &format!("vni{}", vni(fe)))?;
        println!(
            "ground truth: VXLAN VNI {} (toward {}) carried {n} reply packet(s) of the flow into {}",
            vni(fe),
            lab.ns(fe),
            lab.node_ns(Node::B)
        );
    }
    drop(running);
    lab.down()?;
    println!("two-node lab down");
    Ok(())
}

fn files_text(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}
