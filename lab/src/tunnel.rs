//! The two-node lab's nodes and the conduit's inter-node tunnel. Node A holds the proxy
//! and the target, node B the frontends and the gateway; each node is a namespace of its
//! own (`<prefix>node-a`, `<prefix>node-b`), joined by one veth, the "inter-node link".
//! Each frontend's conduit is one L2 segment: proxy bridge port -> veth -> bridge in node A
//! -> VXLAN (a VNI per frontend, as NSM's kernel forwarder gives each connection its own)
//! -> bridge in node B -> veth -> frontend conduit. One segment per frontend, not one
//! shared bridge: two proxy ports into one L2 domain would loop the proxy's bridge.
//! Owns the node namespaces, the underlay addresses, the VNIs and the nodes' device names.

use anyhow::{Context, Result};

use std::net::IpAddr;

use super::{Lab, LabNames, Role, VIP_PORT};
use crate::cmd;

/// The two nodes of the lab (a Kubernetes worker each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Node {
    A,
    B,
}

impl Node {
    pub const ALL: [Node; 2] = [Node::A, Node::B];

    fn base_name(self) -> &'static str {
        match self {
            Node::A => "node-a",
            Node::B => "node-b",
        }
    }

    /// The node's address on the inter-node link (VXLAN's underlay).
    pub fn underlay_ip(self) -> &'static str {
        match self {
            Node::A => "192.168.50.1",
            Node::B => "192.168.50.2",
        }
    }

    fn other(self) -> Node {
        match self {
            Node::A => Node::B,
            Node::B => Node::A,
        }
    }

    /// The node `role`'s pod runs on.
    pub fn of(role: Role) -> Node {
        match role {
            Role::Proxy | Role::Target => Node::A,
            Role::FrontendA | Role::FrontendB | Role::Gateway => Node::B,
        }
    }
}

/// The inter-node link's device in each node namespace.
pub const UNDERLAY_IF: &str = "eth0";
/// VXLAN's IANA port.
pub const VXLAN_PORT: u16 = 4789;
/// The underlay carries 50 bytes of VXLAN headers more than the conduits' 1500.
const UNDERLAY_MTU: u32 = 1550;

/// The VNI of the conduit segment toward `frontend`.
pub fn vni(frontend: Role) -> u32 {
    match frontend {
        Role::FrontendA => 101,
        Role::FrontendB => 102,
        other => panic!("no conduit tunnel leads to {other:?}"),
    }
}

/// Names in a node namespace of `frontend`'s segment: the VXLAN device and the bridge.
pub fn vxlan_dev(frontend: Role) -> String {
    format!("vxlan{}", vni(frontend))
}

fn bridge_dev(frontend: Role) -> String {
    format!("br{}", vni(frontend))
}

/// The veth end in the node namespace that leads to the pod.
fn pod_port(frontend: Role) -> String {
    format!("pod{}", vni(frontend))
}

/// Netns name of `node` in the lab with this prefix.
pub fn node_ns_name(prefix: &str, node: Node) -> String {
    format!("{prefix}{}", node.base_name())
}

fn ip(words: &str) -> Result<()> {
    let args: Vec<&str> = words.split_whitespace().collect();
    cmd::run("ip", &args).map(|_| ())
}

/// Builds both nodes and the two conduits over VXLAN (the pods' namespaces exist already);
/// the conduit ends in the pods are then named and addressed as in the one-node lab.
pub(super) fn build(lab: &Lab) -> Result<()> {
    let prefix = &lab.built_prefix;
    let LabNames {
        fea_conduit,
        feb_conduit,
        px_port_fea,
        px_port_feb,
        ..
    } = lab.names();
    for node in Node::ALL {
        let ns = node_ns_name(prefix, node);
        ip(&format!("netns add {ns}"))
            .with_context(|| format!("could not create the node namespace {ns}"))?;
        ip(&format!("-n {ns} link set lo up"))?;
        // The nodes only switch frames: no IPv6 of their own (router solicitations, MLD)
        // leaking into the conduits.
        cmd::run(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        )?;
    }
    let (a, b) = (node_ns_name(prefix, Node::A), node_ns_name(prefix, Node::B));
    ip(&format!(
        "link add {UNDERLAY_IF} netns {a} mtu {UNDERLAY_MTU} type veth peer name {UNDERLAY_IF} netns {b} mtu {UNDERLAY_MTU}"
    ))?;
    for node in Node::ALL {
        let ns = node_ns_name(prefix, node);
        ip(&format!(
            "-n {ns} addr add {}/24 dev {UNDERLAY_IF}",
            node.underlay_ip()
        ))?;
        ip(&format!("-n {ns} link set {UNDERLAY_IF} up"))?;
    }
    for (fe, pod_ns, pod_if, node) in [
        (Role::FrontendA, lab.ns(Role::Proxy), px_port_fea, Node::A),
        (Role::FrontendB, lab.ns(Role::Proxy), px_port_feb, Node::A),
        (
            Role::FrontendA,
            lab.ns(Role::FrontendA),
            fea_conduit,
            Node::B,
        ),
        (
            Role::FrontendB,
            lab.ns(Role::FrontendB),
            feb_conduit,
            Node::B,
        ),
    ] {
        let ns = node_ns_name(prefix, node);
        let (vx, br, port) = (vxlan_dev(fe), bridge_dev(fe), pod_port(fe));
        // nolearning + a fixed remote: every frame of the segment goes to the other node.
        ip(&format!(
            "-n {ns} link add {vx} mtu 1500 type vxlan id {} local {} remote {} dstport {VXLAN_PORT} nolearning",
            vni(fe),
            node.underlay_ip(),
            node.other().underlay_ip()
        ))?;
        ip(&format!("-n {ns} link add {br} type bridge"))?;
        ip(&format!(
            "link add {pod_if} netns {pod_ns} type veth peer name {port} netns {ns}"
        ))?;
        for dev in [&vx, &port] {
            ip(&format!("-n {ns} link set {dev} master {br} up"))?;
        }
        ip(&format!("-n {ns} link set {br} up"))?;
    }
    Ok(())
}

/// Deletes the node namespaces of this prefix that exist; errors are collected.
pub(super) fn teardown(prefix: &str, errors: &mut Vec<String>) {
    for node in Node::ALL {
        let ns = node_ns_name(prefix, node);
        if crate::netns::netns_path(&ns).is_err() {
            continue;
        }
        if let Err(e) = cmd::run("ip", &["netns", "del", &ns]) {
            if crate::netns::netns_path(&ns).is_ok() {
                errors.push(format!("{e:#}"));
            }
        }
    }
}

/// Where the VXLAN payload sits in the outer UDP datagram (nft `@th`, in bits): UDP 8
/// bytes, VXLAN 8 (VNI at byte 12), inner Ethernet 14 (type at byte 28), inner IP from
/// byte 30; the lab's packets carry no IP options or extension headers.
fn vxlan_match(frontend: Role, vip: IpAddr, src_port: u16, dst_port: u16) -> String {
    let head = format!("udp dport {VXLAN_PORT} @th,96,24 {}", vni(frontend));
    if vip.is_ipv4() {
        // IPv4 of 20 bytes (0x45), TCP (6) at byte 50.
        format!("{head} @th,224,16 0x0800 @th,240,8 0x45 @th,312,8 6 @th,400,16 {src_port} @th,416,16 {dst_port}")
    } else {
        // IPv6 next header TCP at byte 36, TCP at byte 70.
        format!("{head} @th,224,16 0x86dd @th,288,8 6 @th,560,16 {src_port} @th,576,16 {dst_port}")
    }
}

impl Lab {
    /// Ground truth for the tunnel: counts, in node B, the VXLAN datagrams of `frontend`'s
    /// VNI that carry the replies of one flow (`vip` port 4000 -> `client_port`), into
    /// the named counter `name` of `inet tracer-truth`.
    pub fn add_tunnel_counter(
        &self,
        frontend: Role,
        name: &str,
        vip: IpAddr,
        client_port: u16,
    ) -> Result<()> {
        let m = vxlan_match(frontend, vip, VIP_PORT, client_port);
        super::truth::add_counter_in(&self.node_ns(Node::B), name, &m)
    }

    /// Like [`Lab::add_tunnel_counter`] for the requests (`client_port` -> `vip` port
    /// 4000), counted where they come out of the tunnel, in node A.
    pub fn add_tunnel_ingress_counter(
        &self,
        frontend: Role,
        name: &str,
        vip: IpAddr,
        client_port: u16,
    ) -> Result<()> {
        let m = vxlan_match(frontend, vip, client_port, VIP_PORT);
        super::truth::add_counter_in(&self.node_ns(Node::A), name, &m)
    }

    /// Packets counted so far by the named tunnel counter in `node`.
    pub fn node_counter(&self, node: Node, name: &str) -> Result<u64> {
        super::truth::counter_in(&self.node_ns(node), name)
    }
}
