//! What changed in the traced namespace between two snapshots: the VIP tables' next-hops,
//! policy rules, links and the neighbour entries of next-hops. The session takes a new
//! snapshot when netlink reports a change and prints what this module finds; neighbour
//! notifications are applied one by one ([`apply_neighbour`]).
use std::net::IpAddr;

use crate::{
    events::Mac,
    netns::kernel_state::{KernelState, NeighbourUpdate, NextHop, Rule},
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

/// Tables that matter: those the VIPs' source rules select in any of `states` (before and
/// after).
fn vip_tables(states: &[&KernelState], vips: &[IpAddr]) -> Vec<(u32, bool)> {
    let mut tables = Vec::new();
    for vip in vips {
        for state in states {
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
    let tables = vip_tables(&[old, new], vips);
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
    for ip in gateways(&[old, new], &tables) {
        let (before, after) = (mac_of(old, ip), mac_of(new, ip));
        if before != after {
            changes.push(Change::Neighbour { ip, before, after });
        }
    }
    changes
}

/// Applies one neighbour or FDB notification to `state` and says what it changed for the
/// VIPs: what [`diff`] of the states before and after would say, without copying the
/// state (notifications come in storms on a busy node; routes and rules stay as they were,
/// so only a VIP table's next-hop can matter, and FDB entries never do).
pub fn apply_neighbour(
    state: &mut KernelState,
    update: &NeighbourUpdate,
    vips: &[IpAddr],
) -> Option<Change> {
    let NeighbourUpdate::Neighbour { ip, .. } = *update else {
        state.apply(update);
        return None;
    };
    let before = mac_of(state, ip);
    state.apply(update);
    let after = mac_of(state, ip);
    if before == after {
        return None;
    }
    let tables = vip_tables(&[state], vips);
    gateways(&[state], &tables)
        .contains(&ip)
        .then_some(Change::Neighbour { ip, before, after })
}

/// Neighbours of the VIP tables' next-hops only: the rest is churn nobody asked about.
fn gateways(states: &[&KernelState], tables: &[(u32, bool)]) -> Vec<IpAddr> {
    let mut gateways: Vec<IpAddr> = tables
        .iter()
        .flat_map(|&(t, v6)| states.iter().flat_map(move |s| s.default_nexthops(t, v6)))
        .filter_map(|n| n.gw)
        .collect();
    gateways.sort();
    gateways.dedup();
    gateways
}

fn mac_of(state: &KernelState, ip: IpAddr) -> Option<Mac> {
    state.neighbours.iter().find(|n| n.ip == ip).map(|n| n.mac)
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

    /// The incremental path says what `diff` of a copy would say, for next-hop neighbours
    /// (changed, gone, back) and for neighbours nobody routes through.
    #[test]
    fn a_neighbour_update_changes_what_diff_would_say() {
        let vips = [ip("20.0.0.1")];
        let updates = [
            ("172.16.0.3", Some([2, 0, 0, 0, 0, 9])),
            ("172.16.0.3", None),
            ("172.16.0.3", Some([2, 0, 0, 0, 0, 3])),
            ("172.16.0.3", Some([2, 0, 0, 0, 0, 3])),
            ("172.16.0.77", Some([2, 0, 0, 0, 0, 7])),
        ];
        let mut state = state(&["172.16.0.3", "172.16.0.5"]);
        for (addr, mac) in updates {
            let update = NeighbourUpdate::Neighbour {
                ifindex: 2,
                ip: ip(addr),
                mac,
            };
            let old = state.clone();
            let change = apply_neighbour(&mut state, &update, &vips);
            assert_eq!(
                change.into_iter().collect::<Vec<_>>(),
                diff(&old, &state, &vips)
            );
        }
        assert!(state.neighbours.iter().any(|n| n.ip == ip("172.16.0.77")));
        let fdb = NeighbourUpdate::Fdb {
            ifindex: 2,
            mac: [2, 0, 0, 0, 0, 1],
            present: true,
        };
        assert_eq!(apply_neighbour(&mut state, &fdb, &vips), None);
        assert_eq!(state.fdb.len(), 1);
    }
}
