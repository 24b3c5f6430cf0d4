//! What a session traces from a discovery: the namespaces that carry the VIPs, or, with no
//! `--vip`, the VIPs themselves; each with one sentence when there is none.
use std::net::IpAddr;

use anyhow::{bail, Result};

use super::{plural, Discovery, Namespace, Role};

fn ip_list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The namespaces the whole-path mode traces: the Meridio namespaces of `roles` that
/// carry one of `vips`, proxies first. With none, one sentence saying what was looked at.
pub fn to_trace(d: &Discovery, roles: &[Role], vips: &[IpAddr]) -> Result<Vec<Namespace>> {
    let mut found: Vec<Namespace> = d
        .meridio()
        .filter(|n| roles.contains(&n.class.role))
        .filter(|n| n.class.vips.iter().any(|v| vips.contains(v)))
        .cloned()
        .collect();
    found.sort_by_key(|n| n.class.role);
    if found.is_empty() {
        let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        bail!(
            "no Meridio {} on this node carries {} ({} looked at); `tracer discover` lists what was found",
            roles.join(", "),
            ip_list(vips),
            plural(d.namespaces.len(), "network namespace", "network namespaces")
        );
    }
    Ok(found)
}

/// The VIPs to trace when none is given: every VIP of the Meridio namespaces of `roles`
/// (the VIPS column of `tracer discover`), or of the one namespace with `inode` (--netns),
/// in the order first seen, IPv4 and IPv6 alike. With none, one sentence saying so.
pub fn vips_on_node(d: &Discovery, roles: &[Role], inode: Option<u64>) -> Result<Vec<IpAddr>> {
    let mut vips: Vec<IpAddr> = Vec::new();
    let carriers = d.meridio().filter(|n| match inode {
        Some(i) => n.inode == i,
        None => roles.contains(&n.class.role),
    });
    for v in carriers.flat_map(|n| n.class.vips.iter()) {
        if !vips.contains(v) {
            vips.push(*v);
        }
    }
    if vips.is_empty() {
        let looked = plural(
            d.namespaces.len(),
            "network namespace",
            "network namespaces",
        );
        match inode {
            Some(_) => bail!("discovery finds no VIP in the --netns namespace (it does not look like a Meridio proxy, frontend or target); give the VIPs with --vip"),
            None => bail!(
                "discovery finds no VIP on this node: no Meridio {} carries one ({looked} looked at); give the VIPs with --vip, or see `tracer discover`",
                roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    Ok(vips)
}
