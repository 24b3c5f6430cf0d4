//! What a lab is asked to be ([`LabSpec`]): its load balancer, its targets, its interface
//! names and its roles, and the checks on a spec before anything is built.
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{bail, Result};

use super::{target_ns_name, FWMARK_OFFSET, MAX_TARGETS};

/// What to build. `Default` is the lab of the Meridio tutorial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    /// Prepended to every netns name.
    pub prefix: String,
    /// Proxy (and target) table for the IPv4 VIP source rule.
    pub table_v4: u32,
    /// Proxy (and target) table for the IPv6 VIP source rule.
    pub table_v6: u32,
    /// Proxy fib_multipath_hash_policy (v4 and v6); 3 also sets hash_fields 0x0037
    /// (src/dst IP, proto, src/dst port) so the 5-tuple is hashed even over veths.
    pub hash_policy: u8,
    /// Interface names: the tutorial's by default, [`LabNames::OTHER`] to show that what
    /// reads the lab goes by structure, not by name.
    pub names: LabNames,
    /// Gives every namespace a long-lived process (`sleep infinity`), so each is also
    /// reachable through /proc/<pid>/ns/net, as pods' namespaces are on a node.
    pub holders: bool,
    /// Adds a second target whose namespace only a process holds (no /var/run/netns name,
    /// reachable through /proc alone), on a third proxy bridge port; see
    /// [`Lab::proc_only_target_pid`].
    pub proc_only_target: bool,
    /// 1: every pod on one node, conduits are veths. 2: proxy and target on node A,
    /// frontends and gateway on node B, conduits over VXLAN between them (see `tunnel`).
    pub nodes: u8,
    /// What picks the target in the frontends: a fixed nftables mark (default) or nfqlb.
    pub lb: Lb,
    /// Number of targets, 1 to [`MAX_TARGETS`]; see [`Lab::targets`]. With the stand-in all
    /// traffic goes to target 1 (its mark is fixed).
    pub targets: u8,
}

/// The frontends' load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lb {
    /// An nftables rule marks VIP traffic 5001 (target 1), nfqlb's verdict without nfqlb.
    #[default]
    StandIn,
    /// Meridio's nfqlb (`nfqlb flowlb`, Maglev over NFQUEUE) in each frontend, built from
    /// their pinned upstream tarballs (see [`vendor`]); the targets run mconnect and echo servers.
    Nfqlb,
}

/// How VIP traffic reaches nfqlb's queues in the frontends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRule {
    /// Meridio's own: `queue num 0-3` in nft chain `inet meridio-nfqlb nfqlb`.
    Nft,
    /// The kernel lacks nft's queue expression: `iptables-legacy` / `ip6tables-legacy -t
    /// mangle -A PREROUTING -d <VIP> -j NFQUEUE --queue-balance 0:3` (the
    /// `inet meridio-nfqlb` table stays, with its VIP sets, without queue statements).
    IptablesLegacy,
}

/// One target of the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// 1-based; nfqlb's identifier (index - 1 in its Maglev table).
    pub index: u8,
    /// Netns name, prefix + "target-a-<index>".
    pub ns: String,
    /// UTS hostname of its servers (what mconnect answers): the netns name.
    pub hostname: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// Its interface holding the address and the VIPs.
    pub interface: String,
    /// The proxy's bridge port toward it.
    pub proxy_port: String,
    /// The fwmark nfqlb sets for it, also the frontends' routing table toward it.
    pub fwmark: u32,
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec {
            prefix: String::new(),
            table_v4: 1,
            table_v6: 2,
            hash_policy: 1,
            names: LabNames::TUTORIAL,
            holders: false,
            proc_only_target: false,
            nodes: 1,
            lb: Lb::StandIn,
            targets: 1,
        }
    }
}

/// The lab's interface names (each at most 15 characters, the kernel's limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabNames {
    /// Gateway: its bridge and its ports toward frontend A and B.
    pub gw_bridge: &'static str,
    pub gw_port_fea: &'static str,
    pub gw_port_feb: &'static str,
    /// Frontends: the external interface (both), the conduit of A and of B.
    pub fe_ext: &'static str,
    pub fea_conduit: &'static str,
    pub feb_conduit: &'static str,
    /// Proxy: the bridge and its ports toward frontend A, frontend B, the target and the
    /// proc-only target.
    pub px_bridge: &'static str,
    pub px_port_fea: &'static str,
    pub px_port_feb: &'static str,
    pub px_port_tg: &'static str,
    pub px_port_tg2: &'static str,
    /// The targets' interfaces holding the VIPs (target, proc-only target).
    pub tg_if: &'static str,
    pub tg2_if: &'static str,
}

impl LabNames {
    /// As NSM names them in the Meridio tutorial (service name cut to 10 chars, '-',
    /// connection id).
    pub const TUTORIAL: LabNames = LabNames {
        gw_bridge: "vlan0",
        gw_port_fea: "vlan0-fe-a",
        gw_port_feb: "vlan0-fe-b",
        fe_ext: "ext-vlan0",
        fea_conduit: "conduit-a.-b89d",
        feb_conduit: "conduit-a.-b84a",
        px_bridge: "bridge0",
        px_port_fea: "conduit-a.-3150",
        px_port_feb: "conduit-a.-6496",
        px_port_tg: "proxy.cond-0a85",
        px_port_tg2: "proxy.cond-1b2c",
        tg_if: "nsm-0",
        tg2_if: "nsm-0",
    };

    /// Other names for every interface: another conduit and bridge, other NSM ids.
    pub const OTHER: LabNames = LabNames {
        gw_bridge: "uplink0",
        gw_port_fea: "uplink0-1",
        gw_port_feb: "uplink0-2",
        fe_ext: "eth-ext",
        fea_conduit: "cdt-x.-cccc",
        feb_conduit: "cdt-x.-dddd",
        px_bridge: "br-meridio",
        px_port_fea: "cdt-x.-aaaa",
        px_port_feb: "cdt-x.-bbbb",
        px_port_tg: "prx.cnd-1234",
        px_port_tg2: "prx.cnd-5678",
        tg_if: "nsm-7",
        tg2_if: "nsm-8",
    };

    fn all(&self) -> [&'static str; 13] {
        [
            self.gw_bridge,
            self.gw_port_fea,
            self.gw_port_feb,
            self.fe_ext,
            self.fea_conduit,
            self.feb_conduit,
            self.px_bridge,
            self.px_port_fea,
            self.px_port_feb,
            self.px_port_tg,
            self.px_port_tg2,
            self.tg_if,
            self.tg2_if,
        ]
    }
}

impl Default for LabNames {
    fn default() -> Self {
        LabNames::TUTORIAL
    }
}

/// The pods of the path (the gateway is a container in the tutorial).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Gateway,
    FrontendA,
    FrontendB,
    Proxy,
    Target,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Gateway,
        Role::FrontendA,
        Role::FrontendB,
        Role::Proxy,
        Role::Target,
    ];

    /// Netns name without the prefix.
    pub(crate) fn base_name(self) -> &'static str {
        match self {
            Role::Gateway => "trench-a",
            Role::FrontendA => "lbfe-a",
            Role::FrontendB => "lbfe-b",
            Role::Proxy => "proxy-a",
            Role::Target => "target-a-1",
        }
    }
}

pub(super) fn target_infos(prefix: &str, names: &LabNames, n: u8) -> Vec<TargetInfo> {
    (1..=n)
        .map(|i| {
            let host = if i == 1 { 6 } else { 7 + i };
            let proxy_port = if i == 1 {
                names.px_port_tg.to_string()
            } else {
                let base = names.px_port_tg;
                let cut = base.len().saturating_sub(2);
                format!("{}f{i}", &base[..cut])
            };
            let ns = target_ns_name(prefix, i);
            TargetInfo {
                index: i,
                hostname: ns.clone(),
                ns,
                ipv4: Ipv4Addr::new(172, 16, 0, host),
                ipv6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, host as u16),
                interface: names.tg_if.to_string(),
                proxy_port,
                fwmark: FWMARK_OFFSET + i as u32,
            }
        })
        .collect()
}

pub(super) fn validate(spec: &LabSpec) -> Result<()> {
    if spec
        .prefix
        .contains(|c: char| c == '/' || c.is_whitespace())
    {
        bail!(
            "lab prefix `{}` must not contain `/` or spaces",
            spec.prefix
        );
    }
    for (what, t) in [("table-v4", spec.table_v4), ("table-v6", spec.table_v6)] {
        // 0 is not a table; 253-255 are the kernel's default, main and local tables.
        if t == 0 || (253..=255).contains(&t) {
            bail!("{what} {t} is not usable: pick a routing table other than 0 and 253-255");
        }
    }
    let names = spec.names.all();
    if let Some(bad) = names.iter().find(|n| {
        n.is_empty() || n.len() > 15 || n.contains(|c: char| c == '/' || c.is_whitespace())
    }) {
        bail!("interface name `{bad}` is not usable: 1 to 15 characters, no `/` or spaces");
    }
    if !(1..=2).contains(&spec.nodes) {
        bail!("a lab has 1 or 2 nodes, not {}", spec.nodes);
    }
    if spec.hash_policy > 3 {
        bail!("hash policy {} is not one of 0, 1, 2, 3", spec.hash_policy);
    }
    if !(1..=MAX_TARGETS).contains(&spec.targets) {
        bail!("a lab has 1 to {MAX_TARGETS} targets, not {}", spec.targets);
    }
    if spec.proc_only_target && spec.targets > 1 {
        bail!("the proc-only target (hostname target-a-2) cannot be combined with more than one target: choose one of them");
    }
    if spec.targets > 1 && spec.names.px_port_tg.len() < 3 {
        bail!(
            "proxy port name `{}` is too short to derive the other targets' port names from",
            spec.names.px_port_tg
        );
    }
    let ports: Vec<TargetInfo> = target_infos(&spec.prefix, &spec.names, spec.targets);
    if let Some(clash) = ports
        .iter()
        .skip(1)
        .find(|t| names.contains(&t.proxy_port.as_str()))
    {
        bail!(
            "target {}'s proxy port name `{}` clashes with another interface name of the lab",
            clash.index,
            clash.proxy_port
        );
    }
    if spec.nodes == 2 && spec.targets > 1 {
        bail!("a two-node lab has one target");
    }
    Ok(())
}
