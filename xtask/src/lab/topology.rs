//! The lab's wiring, step by step as in shared/reference/meridio-lab-recipe.sh: namespaces,
//! sysctls, links, addresses, routes, rules and the frontends' nftables table. Owns the
//! names and addresses of the path; nothing here touches the host netns (veths are created
//! straight into their namespaces).

use anyhow::{Context, Result};

use super::{Lab, Role};
use crate::cmd;

// Interface names as NSM names them (service name cut to 10 chars, '-', connection id).
const GW_BRIDGE: &str = "vlan0";
const GW_PORT_FEA: &str = "vlan0-fe-a";
const GW_PORT_FEB: &str = "vlan0-fe-b";
const FE_EXT: &str = "ext-vlan0";
const FEA_CONDUIT: &str = "conduit-a.-b89d";
const FEB_CONDUIT: &str = "conduit-a.-b84a";
const PX_BRIDGE: &str = "bridge0";
pub(super) const PX_PORT_FEA: &str = "conduit-a.-3150";
pub(super) const PX_PORT_FEB: &str = "conduit-a.-6496";
pub(super) const PX_PORT_TG: &str = "proxy.cond-0a85";
const TG_IF: &str = "nsm-0";

/// Fwmark (and table) nfqlb would set for the one target: target id 1 + 5000.
const FWMARK: u32 = 5001;
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

/// The frontends' nfqlb stand-in: marks VIP traffic as nfqlb would after its Maglev pick.
fn nfqlb_table() -> String {
    format!(
        "table inet meridio-nfqlb {{
  set ipv4-vips {{ type ipv4_addr; flags interval; elements = {{ {v4}/32 }} }}
  set ipv6-vips {{ type ipv6_addr; flags interval; elements = {{ {v6}/128 }} }}
  chain nfqlb {{ type filter hook prerouting priority filter; policy accept;
    ip daddr @ipv4-vips meta mark set {FWMARK}
    ip6 daddr @ipv6-vips meta mark set {FWMARK}
  }}
}}
",
        v4 = super::VIP4,
        v6 = super::VIP6,
    )
}

pub(super) fn build(lab: &Lab) -> Result<()> {
    let gw = lab.ns(Role::Gateway);
    let fea = lab.ns(Role::FrontendA);
    let feb = lab.ns(Role::FrontendB);
    let px = lab.ns(Role::Proxy);
    let tg = lab.ns(Role::Target);
    let (vip4, vip6) = (super::VIP4, super::VIP6);
    let (t4, t6) = (lab.spec.table_v4, lab.spec.table_v6);

    // ---- namespaces ----
    for ns in [&gw, &fea, &feb, &px, &tg] {
        ip(&format!("netns add {ns}"))
            .with_context(|| format!("could not create network namespace {ns}"))?;
        ip(&format!("-n {ns} link set lo up"))?;
    }

    // ---- sysctls ----
    // DAD off before any link exists: devices copy `default` when they are created, and
    // tentative addresses would make the first connections fail.
    for ns in [&gw, &fea, &feb, &px, &tg] {
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
    ip(&format!("-n {gw} link add {GW_BRIDGE} type bridge"))?;
    ip(&format!(
        "link add {GW_PORT_FEA} netns {gw} type veth peer name {FE_EXT} netns {fea}"
    ))?;
    ip(&format!(
        "link add {GW_PORT_FEB} netns {gw} type veth peer name {FE_EXT} netns {feb}"
    ))?;
    ip(&format!(
        "link add {FEA_CONDUIT} netns {fea} type veth peer name {PX_PORT_FEA} netns {px}"
    ))?;
    ip(&format!(
        "link add {FEB_CONDUIT} netns {feb} type veth peer name {PX_PORT_FEB} netns {px}"
    ))?;
    ip(&format!(
        "link add {TG_IF} netns {tg} type veth peer name {PX_PORT_TG} netns {px}"
    ))?;
    ip(&format!("-n {px} link add {PX_BRIDGE} type bridge"))?;
    for port in [GW_PORT_FEA, GW_PORT_FEB] {
        ip(&format!("-n {gw} link set {port} master {GW_BRIDGE} up"))?;
    }
    for port in [PX_PORT_FEA, PX_PORT_FEB, PX_PORT_TG] {
        ip(&format!("-n {px} link set {port} master {PX_BRIDGE} up"))?;
    }

    // ---- addresses ----
    for (ns, dev, addrs) in [
        (&gw, GW_BRIDGE, ["169.254.100.150/24", "100:100::150/64"]),
        (&fea, FE_EXT, ["169.254.100.1/24", "100:100::1/64"]),
        (&feb, FE_EXT, ["169.254.100.2/24", "100:100::2/64"]),
        (&fea, FEA_CONDUIT, ["172.16.0.3/24", "fd00::3/64"]),
        (&feb, FEB_CONDUIT, ["172.16.0.5/24", "fd00::5/64"]),
        (&px, PX_BRIDGE, ["172.16.0.1/24", "fd00::1/64"]),
        (&tg, TG_IF, ["172.16.0.6/24", "fd00::6/64"]),
        // The VIPs live on the target's interface, as TAPA puts them there.
        (&tg, TG_IF, ["20.0.0.1/32", "2000::1/128"]),
    ] {
        for a in addrs {
            ip(&format!("-n {ns} addr add {a} dev {dev}"))?;
        }
    }
    for (ns, dev) in [
        (&gw, GW_BRIDGE),
        (&px, PX_BRIDGE),
        (&fea, FE_EXT),
        (&feb, FE_EXT),
        (&fea, FEA_CONDUIT),
        (&feb, FEB_CONDUIT),
        (&tg, TG_IF),
    ] {
        ip(&format!("-n {ns} link set {dev} up"))?;
    }

    // ---- gateway: BGP-learned ECMP routes to the VIPs (BIRD "merge paths on") ----
    ip(&format!(
        "-n {gw} route add {vip4}/32 proto bird metric 32 \
         nexthop via 169.254.100.1 dev {GW_BRIDGE} weight 1 nexthop via 169.254.100.2 dev {GW_BRIDGE} weight 1"
    ))?;
    ip(&format!(
        "-n {gw} -6 route add {vip6}/128 proto bird metric 32 \
         nexthop via 100:100::1 dev {GW_BRIDGE} weight 1 nexthop via 100:100::2 dev {GW_BRIDGE} weight 1"
    ))?;

    // ---- stateless-lb frontends ----
    let script = nfqlb_table();
    for (ns, conduit) in [(&fea, FEA_CONDUIT), (&feb, FEB_CONDUIT)] {
        cmd::run_with_stdin(
            "ip",
            &["netns", "exec", ns, "nft", "-f", "-"],
            Some(&script),
        )
        .with_context(|| format!("could not load the meridio-nfqlb table in {ns}"))?;
        // Ingress: one fwmark rule + table per target.
        ip(&format!("-n {ns} rule add fwmark {FWMARK} lookup {FWMARK}"))?;
        ip(&format!(
            "-n {ns} route add default via 172.16.0.6 dev {conduit} table {FWMARK}"
        ))?;
        ip(&format!(
            "-n {ns} -6 rule add fwmark {FWMARK} lookup {FWMARK}"
        ))?;
        ip(&format!(
            "-n {ns} -6 route add default via fd00::6 dev {conduit} table {FWMARK}"
        ))?;
        // Egress: VIP source rule, priority 100, to the table BIRD fills with the gateway.
        let t = FE_EGRESS_TABLE;
        ip(&format!(
            "-n {ns} rule add priority 100 from {vip4} lookup {t}"
        ))?;
        ip(&format!("-n {ns} route add default via 169.254.100.150 dev {FE_EXT} proto bird metric 32 table {t}"))?;
        ip(&format!(
            "-n {ns} -6 rule add priority 100 from {vip6} lookup {t}"
        ))?;
        ip(&format!("-n {ns} -6 route add default via 100:100::150 dev {FE_EXT} proto bird metric 32 table {t}"))?;
    }

    // ---- proxy: a table per VIP, ECMP over the frontends' conduit addresses ----
    ip(&format!("-n {px} rule add from {vip4} lookup {t4}"))?;
    ip(&format!(
        "-n {px} route replace default table {t4} \
         nexthop via 172.16.0.3 dev {PX_BRIDGE} weight 1 nexthop via 172.16.0.5 dev {PX_BRIDGE} weight 1"
    ))?;
    ip(&format!("-n {px} -6 rule add from {vip6} lookup {t6}"))?;
    ip(&format!(
        "-n {px} -6 route replace default table {t6} \
         nexthop via fd00::3 dev {PX_BRIDGE} weight 1 nexthop via fd00::5 dev {PX_BRIDGE} weight 1"
    ))?;

    // ---- target: VIP source rules, default via the proxy's bridge0 (onlink) ----
    ip(&format!("-n {tg} rule add from {vip4} lookup {t4}"))?;
    ip(&format!(
        "-n {tg} route add default via 172.16.0.1 dev {TG_IF} onlink table {t4}"
    ))?;
    ip(&format!("-n {tg} -6 rule add from {vip6} lookup {t6}"))?;
    ip(&format!(
        "-n {tg} -6 route add default via fd00::1 dev {TG_IF} onlink table {t6}"
    ))?;
    Ok(())
}
