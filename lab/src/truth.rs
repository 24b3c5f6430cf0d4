//! Ground truth for tests: nftables named counters in a frontend that count one flow's
//! packets entering it: replies (VIP:4000 -> client port) from the proxy, or requests
//! (client port -> VIP:4000) from the gateway. Which frontend's counter moved tells which
//! ECMP next-hop the proxy (or the gateway) really took, independently of the tracer.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};

use super::{Lab, Role, VIP_PORT};
use crate::cmd;

pub(super) const TABLE: &str = "tracer-truth";

fn check(role: Role, name: &str) -> Result<()> {
    if !matches!(role, Role::FrontendA | Role::FrontendB) {
        bail!("ground-truth counters live in the frontends, not in {role:?}");
    }
    check_name(name)
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("counter name `{name}` must be letters, digits, `_` or `-`");
    }
    Ok(())
}

impl Lab {
    /// Adds, in the frontend's netns, a rule to `inet tracer-truth` chain `pre` (prerouting,
    /// priority -300, before conntrack) counting the replies of one flow, packets from `vip`
    /// port 4000 to `client_port` (they enter the frontend from the proxy), into the named
    /// counter `name`.
    pub fn add_frontend_counter(
        &self,
        role: Role,
        name: &str,
        vip: IpAddr,
        client_port: u16,
    ) -> Result<()> {
        let family = if vip.is_ipv4() { "ip" } else { "ip6" };
        let matches = format!("{family} saddr {vip} tcp sport {VIP_PORT} tcp dport {client_port}");
        self.add_counter_rule(role, name, &matches)
    }

    /// Like [`Lab::add_frontend_counter`] for the other direction: packets from
    /// `client_port` to `vip` port 4000 (they enter the frontend from the gateway).
    pub fn add_frontend_ingress_counter(
        &self,
        role: Role,
        name: &str,
        vip: IpAddr,
        client_port: u16,
    ) -> Result<()> {
        let family = if vip.is_ipv4() { "ip" } else { "ip6" };
        let matches = format!("{family} daddr {vip} tcp dport {VIP_PORT} tcp sport {client_port}");
        self.add_counter_rule(role, name, &matches)
    }

    fn add_counter_rule(&self, role: Role, name: &str, matches: &str) -> Result<()> {
        check(role, name)?;
        add_counter_in(&self.ns(role), name, matches)
    }

    /// Packets counted so far by the named counter in that frontend.
    pub fn frontend_counter(&self, role: Role, name: &str) -> Result<u64> {
        check(role, name)?;
        counter_in(&self.ns(role), name)
    }

    /// Adds, in netns `ns` (any of the lab's: [`Lab::ns`], [`Lab::target_ns`]), a rule to
    /// `inet tracer-truth` chain `pre` (prerouting, priority -300) counting the packets
    /// that the nft match `nft_match` selects into counter `name`, e.g. in a frontend
    /// `ip saddr 20.0.0.1 tcp sport 4000` (replies entering from the proxy) or
    /// `iifname "ext-vlan0" tcp flags syn / syn,ack` (SYNs from the gateway).
    pub fn add_counter(&self, ns: &str, name: &str, nft_match: &str) -> Result<()> {
        self.check_ns(ns)?;
        check_name(name)?;
        add_counter_in(ns, name, nft_match)
    }

    /// Packets counted so far by counter `name` of [`Lab::add_counter`] in netns `ns`.
    pub fn counter(&self, ns: &str, name: &str) -> Result<u64> {
        self.check_ns(ns)?;
        check_name(name)?;
        counter_in(ns, name)
    }

    fn check_ns(&self, ns: &str) -> Result<()> {
        if !self.all_ns().iter().any(|n| n == ns) {
            bail!("`{ns}` is not a network namespace of this lab");
        }
        Ok(())
    }
}

/// Adds, in netns `ns`, a rule to `inet tracer-truth` chain `pre` (prerouting, priority
/// -300, before conntrack) counting the packets `matches` selects into the named counter.
pub(super) fn add_counter_in(ns: &str, name: &str, matches: &str) -> Result<()> {
    // `add` leaves an existing table, chain or counter as it is.
    let script = format!(
        "add table inet {TABLE}
add chain inet {TABLE} pre {{ type filter hook prerouting priority -300; policy accept; }}
add counter inet {TABLE} {name}
add rule inet {TABLE} pre {matches} counter name \"{name}\"
"
    );
    cmd::run_with_stdin(
        "ip",
        &["netns", "exec", ns, "nft", "-f", "-"],
        Some(&script),
    )
    .with_context(|| format!("could not add the ground-truth counter {name} in {ns}"))?;
    Ok(())
}

/// Packets counted so far by the named counter of `inet tracer-truth` in netns `ns`.
pub(super) fn counter_in(ns: &str, name: &str) -> Result<u64> {
    let args = [
        "netns", "exec", ns, "nft", "-j", "list", "counter", "inet", TABLE, name,
    ];
    let out = cmd::run("ip", &args)
        .with_context(|| format!("could not read the ground-truth counter {name} in {ns}"))?;
    parse_packets(&out)
        .with_context(|| format!("unexpected `nft -j list counter` output in {ns}: {out}"))
}

/// Packets of the first counter object in `nft -j` output.
pub(super) fn parse_packets(json: &str) -> Result<u64> {
    let v: serde_json::Value = serde_json::from_str(json)?;
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|item| item["counter"]["packets"].as_u64())
        .context("no counter in the output")
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_nft_json_counter() {
        let out = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, {"counter": {"family": "inet", "name": "c1", "table": "tracer-truth", "handle": 2, "packets": 7, "bytes": 420}}]}"#;
        assert_eq!(super::parse_packets(out).unwrap(), 7);
        assert!(super::parse_packets(r#"{"nftables": []}"#).is_err());
    }
}
