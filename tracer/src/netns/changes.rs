//! What changed in the traced namespace between two snapshots: the VIP tables' next-hops,
//! policy rules, links and the neighbour entries of next-hops. The session takes a new
//! snapshot when netlink reports a change and prints what this module finds.
use std::net::IpAddr;

use crate::{
    events::Mac,
    netns::kernel_state::{KernelState, NextHop, Rule},
};

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// The default route of a VIP table changed its next-hops (a frontend came or went).
    Route {
        table: u32,
        v6: bool,
        before: Vec<NextHop>,
        after: Vec<NextHop>,
    },
    Rule {
        added: bool,
        rule: Rule,
    },
    Link {
        added: bool,
        name: String,
    },
    /// The MAC a next-hop resolves to changed (or appeared / went away).
    Neighbour {
        ip: IpAddr,
        before: Option<Mac>,
        after: Option<Mac>,
    },
    /// The tracer attached to an interface that appeared, or let go of one that went.
    Attached {
        added: bool,
        ifname: String,
    },
    /// A traced namespace (pod) appeared or went away (whole-path mode).
    Netns {
        added: bool,
        role: &'static str,
        name: String,
    },
}

/// Tables that matter: those the VIPs' source rules select, before and after.
fn vip_tables(old: &KernelState, new: &KernelState, vips: &[IpAddr]) -> Vec<(u32, bool)> {
    let mut tables = Vec::new();
    for vip in vips {
        for state in [old, new] {
            if let Some(t) = state.source_rule(*vip).and_then(|r| r.table) {
                let key = (t, vip.is_ipv6());
                if !tables.contains(&key) {
                    tables.push(key);
                }
            }
        }
    }
    tables
}

pub fn diff(old: &KernelState, new: &KernelState, vips: &[IpAddr]) -> Vec<Change> {
    let mut changes = Vec::new();
    let tables = vip_tables(old, new, vips);
    for &(table, v6) in &tables {
        let before = old.default_nexthops(table, v6);
        let after = new.default_nexthops(table, v6);
        if before != after {
            changes.push(Change::Route {
                table,
                v6,
                before,
                after,
            });
        }
    }
    for rule in &old.rules {
        if !new.rules.contains(rule) {
            changes.push(Change::Rule {
                added: false,
                rule: rule.clone(),
            });
        }
    }
    for rule in &new.rules {
        if !old.rules.contains(rule) {
            changes.push(Change::Rule {
                added: true,
                rule: rule.clone(),
            });
        }
    }
    for (index, link) in &old.links {
        if new.link(*index).is_none_or(|l| l.name != link.name) {
            changes.push(Change::Link {
                added: false,
                name: link.name.clone(),
            });
        }
    }
    for (index, link) in &new.links {
        if old.link(*index).is_none_or(|l| l.name != link.name) {
            changes.push(Change::Link {
                added: true,
                name: link.name.clone(),
            });
        }
    }
    // Neighbours of the VIP tables' next-hops only: the rest is churn nobody asked about.
    let mut gateways: Vec<IpAddr> = tables
        .iter()
        .flat_map(|&(t, v6)| {
            let mut all = old.default_nexthops(t, v6);
            all.extend(new.default_nexthops(t, v6));
            all
        })
        .filter_map(|n| n.gw)
        .collect();
    gateways.sort();
    gateways.dedup();
    let mac_of =
        |s: &KernelState, ip: IpAddr| s.neighbours.iter().find(|n| n.ip == ip).map(|n| n.mac);
    for ip in gateways {
        let (before, after) = (mac_of(old, ip), mac_of(new, ip));
        if before != after {
            changes.push(Change::Neighbour { ip, before, after });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::kernel_state::{Neighbour, Route};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn state(gws: &[&str]) -> KernelState {
        KernelState {
            rules: vec![Rule {
                priority: 32765,
                src: Some((ip("20.0.0.1"), 32)),
                dst: None,
                fwmark: None,
                fwmask: None,
                iif: None,
                other_selectors: false,
                table: Some(1),
                v6: false,
            }],
            routes: vec![Route {
                table: 1,
                dst: None,
                v6: false,
                nexthops: gws
                    .iter()
                    .map(|g| NextHop {
                        gw: Some(ip(g)),
                        ifindex: 2,
                        weight: 1,
                        alive: true,
                    })
                    .collect(),
            }],
            neighbours: gws
                .iter()
                .map(|g| Neighbour {
                    ip: ip(g),
                    mac: [2, 0, 0, 0, 0, 3],
                    ifindex: 2,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_removed_next_hop_is_a_route_change() {
        let old = state(&["172.16.0.3", "172.16.0.5"]);
        let new = state(&["172.16.0.5"]);
        let changes = diff(&old, &new, &[ip("20.0.0.1")]);
        assert!(
            matches!(&changes[0], Change::Route { table: 1, before, after, .. } if before.len() == 2 && after.len() == 1)
        );
        assert!(changes
            .iter()
            .any(|c| matches!(c, Change::Neighbour { after: None, .. })));
        assert!(diff(&new, &new, &[ip("20.0.0.1")]).is_empty());
    }

    #[test]
    fn rule_changes_are_seen_both_ways() {
        let old = state(&["172.16.0.3"]);
        let mut new = old.clone();
        new.rules.clear();
        let changes = diff(&old, &new, &[ip("20.0.0.1")]);
        assert!(changes
            .iter()
            .any(|c| matches!(c, Change::Rule { added: false, .. })));
    }
}
