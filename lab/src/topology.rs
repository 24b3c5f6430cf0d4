//! The lab's wiring, step by step as Meridio's own lab recipe does it: namespaces,
//! sysctls, links, addresses, routes, rules and the frontends' nftables table. Owns the
//! addresses of the path (the interface names come from the spec's [`LabNames`]); nothing
//! here touches the host netns (veths are created straight into their namespaces).

use anyhow::{Context, Result};

use super::{Lab, LabNames, Role};
use crate::cmd;

/// Fwmark (and table) the stand-in sets, nfqlb's for target 1: target id 1 + 5000.
const FWMARK: u32 = super::FWMARK_OFFSET + 1;
/// Frontend egress table holding the BGP default route toward the gateway.
const FE_EGRESS_TABLE: u32 = 4096;

/// `ip <words>` (split on whitespace: no name here has spaces).
fn ip(words: &str) -> Result<()> {
    let args: Vec<&str> = words.split_whitespace().collect();
    cmd::run("ip", &args).map(|_| ())
}

/// `ip netns exec <ns> <words>`.
fn x(ns: &str, words: &str) -> Result<()> {
    ip(&format!("netns exec {ns} {words}"))
}

/// The frontends' table `inet meridio-nfqlb` with the VIP sets and chain `nfqlb` holding
/// `v4_stmt` and `v6_stmt` for traffic to the VIPs (none: the chain is left empty).
pub(super) fn nfqlb_table(v4_stmt: Option<&str>, v6_stmt: Option<&str>) -> String {
    let rule = |family: &str, set: &str, stmt: Option<&str>| match stmt {
        Some(stmt) => format!("    {family} daddr @{set} {stmt}\n"),
        None => String::new(),
    };
    format!(
        "table inet meridio-nfqlb {{
  set ipv4-vips {{ type ipv4_addr; flags interval; elements = {{ {v4}/32 }} }}
  set ipv6-vips {{ type ipv6_addr; flags interval; elements = {{ {v6}/128 }} }}
  chain nfqlb {{ type filter hook prerouting priority filter; policy accept;
{r4}{r6}  }}
}}
",
        v4 = super::VIP4,
        v6 = super::VIP6,
        r4 = rule("ip", "ipv4-vips", v4_stmt),
        r6 = rule("ip6", "ipv6-vips", v6_stmt),
    )
}

/// The nfqlb stand-in: marks VIP traffic as nfqlb would after picking target 1.
fn stand_in_table() -> String {
    let mark = format!("meta mark set {FWMARK}");
    nfqlb_table(Some(&mark), Some(&mark))
}

pub(super) fn build(lab: &Lab) -> Result<()> {
    let gw = lab.ns(Role::Gateway);
    let fea = lab.ns(Role::FrontendA);
    let feb = lab.ns(Role::FrontendB);
    let px = lab.ns(Role::Proxy);
    let tg = lab.ns(Role::Target);
    let (vip4, vip6) = (super::VIP4, super::VIP6);
    let (t4, t6) = (lab.spec.table_v4, lab.spec.table_v6);
    let LabNames {
        gw_bridge,
        gw_port_fea,
        gw_port_feb,
        fe_ext,
        fea_conduit,
        feb_conduit,
        px_bridge,
        px_port_fea,
        px_port_feb,
        px_port_tg,
        tg_if,
        ..
    } = lab.names();

    // Targets 2.. (target 1 is `tg`).
    let extra: Vec<&super::TargetInfo> = lab.targets.iter().skip(1).collect();
    let extra_ns: Vec<&String> = extra.iter().map(|t| &t.ns).collect();

    // ---- namespaces ----
    for ns in [&gw, &fea, &feb, &px, &tg]
        .into_iter()
        .chain(extra_ns.iter().copied())
    {
        ip(&format!("netns add {ns}"))
            .with_context(|| format!("could not create network namespace {ns}"))?;
        ip(&format!("-n {ns} link set lo up"))?;
    }

    // ---- sysctls ----
    // DAD off before any link exists: devices copy `default` when they are created, and
    // tentative addresses would make the first connections fail.
    for ns in [&gw, &fea, &feb, &px, &tg]
        .into_iter()
        .chain(extra_ns.iter().copied())
    {
        x(
            ns,
            "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0",
        )?;
    }
    for ns in [&fea, &feb, &px] {
        x(
            ns,
            "sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1 \
             net.ipv4.fib_multipath_hash_policy=1 net.ipv6.fib_multipath_hash_policy=1 \
             net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0",
        )?;
    }
    let hp = lab.spec.hash_policy;
    x(&px, &format!("sysctl -qw net.ipv4.fib_multipath_hash_policy={hp} net.ipv6.fib_multipath_hash_policy={hp}"))?;
    if hp == 3 {
        // Policy 3 hashes the chosen fields even when the skb already carries the
        // sender's L4 hash (which veths pass on): src/dst IP, proto, src/dst port.
        x(&px, "sysctl -qw net.ipv4.fib_multipath_hash_fields=0x0037 net.ipv6.fib_multipath_hash_fields=0x0037")?;
    }
    x(
        &gw,
        "sysctl -qw net.ipv4.fib_multipath_hash_policy=1 net.ipv6.fib_multipath_hash_policy=1",
    )?;

    // ---- links ----
    // veth ends are created directly in their namespaces, so no host name can clash.
    ip(&format!("-n {gw} link add {gw_bridge} type bridge"))?;
    ip(&format!(
        "link add {gw_port_fea} netns {gw} type veth peer name {fe_ext} netns {fea}"
    ))?;
    ip(&format!(
        "link add {gw_port_feb} netns {gw} type veth peer name {fe_ext} netns {feb}"
    ))?;
    if lab.spec.nodes == 2 {
        // The same conduit ends, joined over VXLAN between two node namespaces.
        super::tunnel::build(lab)?;
    } else {
        ip(&format!(
            "link add {fea_conduit} netns {fea} type veth peer name {px_port_fea} netns {px}"
        ))?;
        ip(&format!(
            "link add {feb_conduit} netns {feb} type veth peer name {px_port_feb} netns {px}"
        ))?;
    }
    ip(&format!(
        "link add {tg_if} netns {tg} type veth peer name {px_port_tg} netns {px}"
    ))?;
    for t in &extra {
        ip(&format!(
            "link add {} netns {} type veth peer name {} netns {px}",
            t.interface, t.ns, t.proxy_port
        ))?;
    }
    // A fixed address: a bridge that has none takes its lowest port's, so a port added
    // later (a new frontend) could change it under the target's neighbour cache, and
    // the target's frames would then be dropped as not for this host.
    ip(&format!(
        "-n {px} link add {px_bridge} address 02:00:00:00:00:01 type bridge"
    ))?;
    for port in [gw_port_fea, gw_port_feb] {
        ip(&format!("-n {gw} link set {port} master {gw_bridge} up"))?;
    }
    for port in [px_port_fea, px_port_feb, px_port_tg]
        .into_iter()
        .chain(extra.iter().map(|t| t.proxy_port.as_str()))
    {
        ip(&format!("-n {px} link set {port} master {px_bridge} up"))?;
    }

    // ---- addresses ----
    for (ns, dev, addrs) in [
        (&gw, gw_bridge, ["169.254.100.150/24", "100:100::150/64"]),
        (&fea, fe_ext, ["169.254.100.1/24", "100:100::1/64"]),
        (&feb, fe_ext, ["169.254.100.2/24", "100:100::2/64"]),
        (&fea, fea_conduit, ["172.16.0.3/24", "fd00::3/64"]),
        (&feb, feb_conduit, ["172.16.0.5/24", "fd00::5/64"]),
        (&px, px_bridge, ["172.16.0.1/24", "fd00::1/64"]),
        (&tg, tg_if, ["172.16.0.6/24", "fd00::6/64"]),
        // The VIPs live on the target's interface, as TAPA puts them there.
        (&tg, tg_if, ["20.0.0.1/32", "2000::1/128"]),
    ] {
        for a in addrs {
            ip(&format!("-n {ns} addr add {a} dev {dev}"))?;
        }
    }
    for (ns, dev) in [
        (&gw, gw_bridge),
        (&px, px_bridge),
        (&fea, fe_ext),
        (&feb, fe_ext),
        (&fea, fea_conduit),
        (&feb, feb_conduit),
        (&tg, tg_if),
    ] {
        ip(&format!("-n {ns} link set {dev} up"))?;
    }
    for t in &extra {
        let (ns, dev) = (&t.ns, &t.interface);
        for a in [
            format!("{}/24", t.ipv4),
            format!("{}/64", t.ipv6),
            format!("{vip4}/32"),
            format!("{vip6}/128"),
        ] {
            ip(&format!("-n {ns} addr add {a} dev {dev}"))?;
        }
        ip(&format!("-n {ns} link set {dev} up"))?;
    }

    // ---- gateway: BGP-learned ECMP routes to the VIPs (BIRD "merge paths on") ----
    ip(&format!(
        "-n {gw} route add {vip4}/32 proto bird metric 32 \
         nexthop via 169.254.100.1 dev {gw_bridge} weight 1 nexthop via 169.254.100.2 dev {gw_bridge} weight 1"
    ))?;
    ip(&format!(
        "-n {gw} -6 route add {vip6}/128 proto bird metric 32 \
         nexthop via 100:100::1 dev {gw_bridge} weight 1 nexthop via 100:100::2 dev {gw_bridge} weight 1"
    ))?;

    // ---- stateless-lb frontends ----
    // With nfqlb, `nfqlb::setup` loads the table once nfqlb runs.
    let script = stand_in_table();
    for (ns, conduit) in [(&fea, fea_conduit), (&feb, feb_conduit)] {
        if lab.spec.lb == super::Lb::StandIn {
            cmd::run_with_stdin(
                "ip",
                &["netns", "exec", ns, "nft", "-f", "-"],
                Some(&script),
            )
            .with_context(|| format!("could not load the meridio-nfqlb table in {ns}"))?;
        }
        // Ingress: one fwmark rule + table per target.
        for t in &lab.targets {
            let (f, a4, a6) = (t.fwmark, t.ipv4, t.ipv6);
            ip(&format!("-n {ns} rule add fwmark {f} lookup {f}"))?;
            ip(&format!(
                "-n {ns} route add default via {a4} dev {conduit} table {f}"
            ))?;
            ip(&format!("-n {ns} -6 rule add fwmark {f} lookup {f}"))?;
            ip(&format!(
                "-n {ns} -6 route add default via {a6} dev {conduit} table {f}"
            ))?;
        }
        // Egress: VIP source rule, priority 100, to the table BIRD fills with the gateway.
        let t = FE_EGRESS_TABLE;
        ip(&format!(
            "-n {ns} rule add priority 100 from {vip4} lookup {t}"
        ))?;
        ip(&format!("-n {ns} route add default via 169.254.100.150 dev {fe_ext} proto bird metric 32 table {t}"))?;
        ip(&format!(
            "-n {ns} -6 rule add priority 100 from {vip6} lookup {t}"
        ))?;
        ip(&format!("-n {ns} -6 route add default via 100:100::150 dev {fe_ext} proto bird metric 32 table {t}"))?;
    }

    // ---- proxy: a table per VIP, ECMP over the frontends' conduit addresses ----
    ip(&format!("-n {px} rule add from {vip4} lookup {t4}"))?;
    ip(&format!(
        "-n {px} route replace default table {t4} \
         nexthop via 172.16.0.3 dev {px_bridge} weight 1 nexthop via 172.16.0.5 dev {px_bridge} weight 1"
    ))?;
    ip(&format!("-n {px} -6 rule add from {vip6} lookup {t6}"))?;
    ip(&format!(
        "-n {px} -6 route replace default table {t6} \
         nexthop via fd00::3 dev {px_bridge} weight 1 nexthop via fd00::5 dev {px_bridge} weight 1"
    ))?;

    // ---- target: VIP source rules, default via the proxy's bridge0 (onlink) ----
    ip(&format!("-n {tg} rule add from {vip4} lookup {t4}"))?;
    ip(&format!(
        "-n {tg} route add default via 172.16.0.1 dev {tg_if} onlink table {t4}"
    ))?;
    ip(&format!("-n {tg} -6 rule add from {vip6} lookup {t6}"))?;
    ip(&format!(
        "-n {tg} -6 route add default via fd00::1 dev {tg_if} onlink table {t6}"
    ))?;
    for t in &extra {
        let (ns, dev) = (&t.ns, &t.interface);
        ip(&format!("-n {ns} rule add from {vip4} lookup {t4}"))?;
        ip(&format!(
            "-n {ns} route add default via 172.16.0.1 dev {dev} onlink table {t4}"
        ))?;
        ip(&format!("-n {ns} -6 rule add from {vip6} lookup {t6}"))?;
        ip(&format!(
            "-n {ns} -6 route add default via fd00::1 dev {dev} onlink table {t6}"
        ))?;
    }
    Ok(())
}

/// The second target, in the namespace that process `pid` alone holds (no /var/run/netns
/// name): a veth from the proxy's bridge into it, configured through `nsenter`, with the same
/// VIPs and source rules as the first target (every target of a conduit holds the VIPs).
/// Traffic keeps going to the first target: the frontends' fwmark table names only it.
pub(super) fn build_proc_only_target(lab: &Lab, pid: u32) -> Result<()> {
    let px = lab.ns(Role::Proxy);
    let LabNames {
        px_bridge,
        px_port_tg2,
        tg2_if,
        ..
    } = lab.names();
    let (vip4, vip6) = (super::VIP4, super::VIP6);
    let (t4, t6) = (lab.spec.table_v4, lab.spec.table_v6);
    let pid_arg = pid.to_string();
    let inside = |words: &str| -> Result<()> {
        let mut args = vec!["-t", pid_arg.as_str(), "-n"];
        args.extend(words.split_whitespace());
        cmd::run("nsenter", &args).map(|_| ())
    };
    inside("sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0")?;
    inside("ip link set lo up")?;
    ip(&format!(
        "-n {px} link add {px_port_tg2} type veth peer name {tg2_if} netns {pid}"
    ))?;
    ip(&format!(
        "-n {px} link set {px_port_tg2} master {px_bridge} up"
    ))?;
    for a in [
        "172.16.0.7/24".to_string(),
        "fd00::7/64".to_string(),
        format!("{vip4}/32"),
        format!("{vip6}/128"),
    ] {
        inside(&format!("ip addr add {a} dev {tg2_if}"))?;
    }
    inside(&format!("ip link set {tg2_if} up"))?;
    inside(&format!("ip rule add from {vip4} lookup {t4}"))?;
    inside(&format!(
        "ip route add default via 172.16.0.1 dev {tg2_if} onlink table {t4}"
    ))?;
    inside(&format!("ip -6 rule add from {vip6} lookup {t6}"))?;
    inside(&format!(
        "ip -6 route add default via fd00::1 dev {tg2_if} onlink table {t6}"
    ))?;
    Ok(())
}
