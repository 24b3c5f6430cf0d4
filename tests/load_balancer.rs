//! End-to-end tests of the load-balancer tier, against the lab as Meridio runs it: the real
//! nfqlb (Maglev over NFQUEUE) in both frontends, three targets each answering with its own
//! hostname (mconnect's server), the gateway's VIP route ECMP over the frontends. The
//! whole-path tracer (no --netns), real eBPF, root.
//!
//! Ground truth independent of the tracer: the hostname the target answered with (what `nc`
//! prints), what mconnect reports per hostname, nftables counters in the frontends (which
//! frontend a request entered by, how many replies the proxy sent to each), the lab's own
//! fwmark per target, and the target pod's own hops (which target a flow's packets
//! reached).
//!
//! Labs use the netns prefixes `lb1-` .. `lb5-`.
mod support;

use std::{collections::HashMap, net::IpAddr, time::Duration};

use lab::{Lab, LabSpec, Lb, Role, TargetInfo, VIP4, VIP6, VIP_PORT};
use support::{root_or_skip, view_command, Finished, Tracer};
use tracer::records::{self, Flow, FlowKey};

const FRONTENDS: [Role; 2] = [Role::FrontendA, Role::FrontendB];

fn lb_lab(prefix: &str) -> Lab {
    Lab::up(LabSpec {
        prefix: prefix.into(),
        lb: Lb::Nfqlb,
        targets: 3,
        ..Default::default()
    })
    .expect("the lab with nfqlb and three targets")
}

/// The tracer on the whole path of the lab, both VIPs.
fn whole_path(prefix: &str, extra: &[&str]) -> Tracer {
    let mut args = vec!["--json", "--vip", "20.0.0.1", "--vip", "2000::1"];
    args.extend_from_slice(extra);
    Tracer::start_command(&mut view_command(prefix, false, &args))
}

/// Stops the tracer (it must exit cleanly) and returns its records and the distribution of
/// `vip`.
fn stop_with_distribution(
    tracer: Tracer,
    vip: IpAddr,
) -> (Finished, records::Distribution<'static>) {
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "tracer failed: {}", f.stderr);
    let d = f
        .distributions()
        .into_iter()
        .find(|d| d.vip == vip)
        .unwrap_or_else(|| panic!("no distribution of {vip}"))
        .clone();
    (f, d)
}

fn is_flow(k: &FlowKey, vip: IpAddr, client_port: u16) -> bool {
    k.vip == vip && k.client_port == client_port && k.proto == "tcp"
}

/// What `nfqlb show` says of a frontend's table: its size and its active fwmarks.
fn nfqlb_show(lab: &Lab, fe: Role) -> (u32, Vec<u32>) {
    let out = lab.nfqlb(fe, &["show", "--shm=tshm-stream-a"]).unwrap();
    let m = out
        .split("M=")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or_else(|| panic!("no M= in `nfqlb show`: {out}"));
    let active = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Active:"))
        .unwrap_or_else(|| panic!("no Active: in `nfqlb show`: {out}"))
        .split_whitespace()
        .map(|a| a.split('(').next().unwrap().parse().unwrap())
        .collect();
    (m, active)
}

/// The tracer read each frontend's nfqlb table as `nfqlb show` has it, and set each active
/// target's flows beside its share.
/// `syns`: the counter of SYNs entering each frontend from the gateway (what each sent)
/// and the number of connections, when there is one.
fn tables_match_nfqlb(
    lab: &Lab,
    d: &records::Distribution,
    targets: &[TargetInfo],
    syns: Option<(&str, u64)>,
) {
    for fe in FRONTENDS {
        let (m, active) = nfqlb_show(lab, fe);
        let t = d
            .lb_tables
            .iter()
            .find(|t| t.netns == lab.ns(fe))
            .unwrap_or_else(|| panic!("no table of {}: {:?}", lab.ns(fe), d.lb_tables));
        let marks: Vec<u32> = t.active.iter().map(|s| s.mark).collect();
        assert_eq!((t.m, marks), (m, active), "{t:?}");
        assert_eq!(t.active.iter().map(|s| s.entries).sum::<u32>(), m, "{t:?}");
        assert!(t.not_in_table.is_empty(), "{t:?}");
        if let Some((counter, flows)) = syns {
            // One SYN per flow (no retransmission, which could take the other frontend):
            // each frontend sent exactly the flows whose SYN it saw.
            let seen: Vec<u64> = FRONTENDS
                .iter()
                .map(|f| lab.counter(&lab.ns(*f), counter).unwrap())
                .collect();
            if seen.iter().sum::<u64>() == flows {
                let sent: u64 = t.active.iter().map(|s| s.flows).sum();
                let mine = seen[FRONTENDS.iter().position(|f| *f == fe).unwrap()];
                assert_eq!(sent, mine, "{t:?}");
            } else {
                eprintln!(
                    "SYNs retransmitted ({seen:?} for {flows} flows): per-frontend check left out"
                );
            }
        }
    }
    // What each frontend sent to a target adds up to the flows the target got.
    for target in targets.iter().filter(|t| d.flows_to(&t.ns) > 0) {
        let sent: u64 = d
            .lb_tables
            .iter()
            .flat_map(|t| &t.active)
            .filter(|s| s.mark == target.fwmark)
            .map(|s| s.flows)
            .sum();
        assert_eq!(sent, d.flows_to(&target.ns), "{:?}", d.lb_tables);
    }
}

fn target_by_ns<'a>(targets: &'a [TargetInfo], ns: &str) -> &'a TargetInfo {
    targets
        .iter()
        .find(|t| t.ns == ns)
        .unwrap_or_else(|| panic!("{ns} is not a target of the lab"))
}

/// Every hop of the flow is timed from the flow's earliest packet, in whatever order the
/// pods' records came in.
fn timed_from_the_first(f: &Finished, flow_id: u32) {
    let hops: Vec<_> = f
        .hops()
        .into_iter()
        .filter(|h| h.flow_id == flow_id)
        .collect();
    let first = hops
        .iter()
        .map(|h| h.ts_ns)
        .min()
        .expect("hops of the flow");
    for h in &hops {
        assert_eq!(
            h.rel_ns,
            h.ts_ns - first,
            "hop at {} {} {}: rel_ns is not ts_ns minus the flow's first",
            h.netns,
            h.ifname,
            h.dir
        );
    }
    for r in f.routes().into_iter().filter(|r| r.flow_id == flow_id) {
        assert_eq!(r.rel_ns, r.ts_ns - first, "route lookup in {}", r.netns);
    }
}

/// One connection per family, as `nc <vip> 4000 -p <port>` from the gateway: the flow's
/// story names the target that answered, the frontend whose counter saw the request, and
/// that target's mark, fwmark rule and table, set after the ingress hook (NFQUEUE).
#[test]
fn one_connection_names_its_frontend_and_the_target_nfqlb_chose() {
    let Some(_serial) =
        root_or_skip("one_connection_names_its_frontend_and_the_target_nfqlb_chose")
    else {
        return;
    };
    let prefix = "lb1-";
    let lab = lb_lab(prefix);
    let targets = lab.targets();
    let conns: [(IpAddr, u16); 2] = [(VIP4.into(), 35000), (VIP6.into(), 35001)];
    for (vip, port) in conns {
        for fe in FRONTENDS {
            let family = if vip.is_ipv4() { "ip" } else { "ip6" };
            let syn = format!(
                "{family} daddr {vip} tcp dport {VIP_PORT} tcp sport {port} tcp flags & (syn | ack) == syn"
            );
            lab.add_counter(&lab.ns(fe), &format!("syn{port}"), &syn)
                .unwrap();
        }
    }
    let tracer = whole_path(prefix, &[]);
    let mut answered = HashMap::new();
    for (vip, port) in conns {
        let host = lab.ask_hostname(vip, port).unwrap();
        answered.insert(port, host);
    }
    // The flows' summaries come at the end; let the FINs and the reorder window pass.
    std::thread::sleep(Duration::from_millis(500));
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "tracer failed: {}", f.stderr);

    for (vip, port) in conns {
        let flow: &Flow = f
            .flows()
            .into_iter()
            .find(|s| is_flow(&s.flow, vip, port))
            .unwrap_or_else(|| panic!("no summary of the flow from port {port}"));
        let p = &flow.path;

        // The target: the pod that answered (its hostname is its netns name).
        let host = &answered[&port];
        let target = targets
            .iter()
            .find(|t| &t.hostname == host)
            .unwrap_or_else(|| panic!("{host} answered, not a target of the lab"));
        let seen = p.target.as_ref().expect("the flow's target pod");
        assert_eq!(
            seen.netns, target.ns,
            "{vip} port {port}: answered by {host}"
        );
        assert!(seen.packets > 0);

        // The frontend the request entered by: the one whose counter saw its SYN (a
        // retransmitted SYN may take the other frontend, the client re-hashing; then the
        // first one the tracer saw is one of the two).
        let entered: Vec<String> = FRONTENDS
            .iter()
            .filter(|fe| lab.counter(&lab.ns(**fe), &format!("syn{port}")).unwrap() > 0)
            .map(|fe| lab.ns(*fe))
            .collect();
        let fe_in = p.frontend_in.as_ref().expect("the frontend it entered by");
        assert!(
            entered.contains(&fe_in.netns.to_string()),
            "{entered:?} {fe_in:?}"
        );
        if entered.len() == 1 {
            assert_eq!(p.lb.len(), 1, "one choice for a short flow: {:?}", p.lb);
        }
        assert_eq!(fe_in.ifname, lab.names().fe_ext);

        // The load balancer's choice: the target's mark, rule and table, its address.
        let lb = p.lb.first().expect("the load balancer's choice");
        assert_eq!(lb.netns, fe_in.netns);
        // Both frontends' Maglev tables are the same: whichever frontend, the same target.
        assert!(p.lb.iter().all(|c| c.mark == target.fwmark), "{:?}", p.lb);
        assert_eq!((lb.mark, lb.table), (target.fwmark, target.fwmark));
        let rule = lb.rule.as_ref().expect("the fwmark rule");
        assert_eq!(rule.table, Some(target.fwmark));
        assert!(
            rule.selector
                .contains(&format!("fwmark {:#x}", target.fwmark)),
            "{rule:?}"
        );
        let target_ip: IpAddr = if vip.is_ipv4() {
            target.ipv4.into()
        } else {
            target.ipv6.into()
        };
        assert_eq!(lb.target_ip, target_ip);
        assert!(lb.marked_after_ingress, "nfqlb's verdict set the mark");
        assert!(lb.queued_ns.is_some_and(|q| q > 0), "{lb:?}");

        // Every frontend lookup of the flow names this target's table.
        let routes: Vec<_> = f
            .routes()
            .into_iter()
            .filter(|r| r.flow_id == flow.flow_id && r.role == "frontend" && r.path == "ingress")
            .collect();
        assert!(!routes.is_empty());
        assert!(
            routes
                .iter()
                .all(|r| r.mark == target.fwmark && r.table == target.fwmark),
            "{routes:#?}"
        );

        // The replies left by a frontend, toward the gateway.
        let out = p
            .frontend_out
            .as_ref()
            .expect("the frontend the replies left by");
        assert_eq!(
            out.nexthop,
            Some(if vip.is_ipv4() {
                "169.254.100.150".parse().unwrap()
            } else {
                "100:100::150".parse().unwrap()
            })
        );
        assert_eq!(p.asymmetric, out.netns != fe_in.netns);
        timed_from_the_first(&f, flow.flow_id);
    }
}

/// Counters in each frontend of every reply the proxy sends it (VIP port 4000 toward the
/// gateway, entering from the proxy): the ECMP next-hop's truth.
fn count_replies(lab: &Lab, name: &str, vip: IpAddr) {
    let family = if vip.is_ipv4() { "ip" } else { "ip6" };
    for fe in FRONTENDS {
        let m = format!(
            "iifname \"{}\" {family} saddr {vip} tcp sport {VIP_PORT}",
            if fe == Role::FrontendA {
                lab.names().fea_conduit
            } else {
                lab.names().feb_conduit
            }
        );
        lab.add_counter(&lab.ns(fe), name, &m).unwrap();
    }
}

/// Counters in each frontend of the SYNs entering it from the gateway: the flows it got.
fn count_syns(lab: &Lab, name: &str, vip: IpAddr) {
    let family = if vip.is_ipv4() { "ip" } else { "ip6" };
    for fe in FRONTENDS {
        let m = format!(
            "iifname \"{}\" {family} daddr {vip} tcp dport {VIP_PORT} tcp flags & (syn | ack) == syn",
            lab.names().fe_ext
        );
        lab.add_counter(&lab.ns(fe), name, &m).unwrap();
    }
}

/// `mconnect -nconn 400` per family, with every record and with none: the flows per target
/// pod are what mconnect reports per hostname, the packets per proxy next-hop what the
/// frontends counted; with records, no frontend lookup is filed under a flow whose packets
/// reached another target.
fn mconnect_run(prefix: &str, records: &[&str]) {
    let lab = lb_lab(prefix);
    let targets = lab.targets();
    for vip in [IpAddr::from(VIP4), IpAddr::from(VIP6)] {
        let counter = if vip.is_ipv4() { "r4" } else { "r6" };
        count_replies(&lab, counter, vip);
        let syns = if vip.is_ipv4() { "s4" } else { "s6" };
        count_syns(&lab, syns, vip);
        let tracer = whole_path(prefix, records);
        let report = lab.mconnect(vip, 400).unwrap();
        assert_eq!(
            (report.connects, report.failed_connects),
            (400, 0),
            "{report:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
        let (f, d) = stop_with_distribution(tracer, vip);

        // Flows per target: mconnect's own report per hostname (every target got some).
        for t in &targets {
            assert!(report.count(&t.hostname) > 0, "{report:?}");
            assert_eq!(
                d.flows_to(&t.ns),
                report.count(&t.hostname),
                "{vip} flows to {} ({records:?}): {:?} vs {report:?}",
                t.ns,
                d.targets
            );
        }
        tables_match_nfqlb(&lab, &d, &targets, Some((syns, report.connects)));
        // Packets per proxy next-hop: the frontends' counters.
        for fe in FRONTENDS {
            let truth = lab.counter(&lab.ns(fe), counter).unwrap();
            let nexthop = lab.frontend_conduit_ip(fe, vip.is_ipv6());
            let share = d.nexthops.iter().find(|s| s.nexthop == Some(nexthop));
            assert_eq!(
                share.map_or(0, |s| s.packets),
                truth,
                "{vip} packets via {nexthop} ({records:?}): {:?}",
                d.nexthops
            );
        }

        if records.is_empty() {
            // Every frontend lookup belongs to a flow whose packets reached that lookup's
            // target: the target pod's own hops say which one it was.
            let mut reached: HashMap<u32, &str> = HashMap::new();
            for h in f.hops() {
                if h.role == "target" && h.path == "ingress" {
                    reached.insert(h.flow_id, &h.netns);
                }
            }
            let lookups: Vec<_> = f
                .routes()
                .into_iter()
                .filter(|r| r.flow.vip == vip && r.role == "frontend" && r.path == "ingress")
                .collect();
            assert!(
                lookups.len() >= 400,
                "{} frontend lookups for 400 connections",
                lookups.len()
            );
            let unreached = lookups
                .iter()
                .filter(|r| !reached.contains_key(&r.flow_id))
                .count();
            assert_eq!(
                unreached, 0,
                "frontend lookups of flows that reached no target"
            );
            let misfiled: Vec<_> = lookups
                .iter()
                .filter(|r| target_by_ns(&targets, reached[&r.flow_id]).fwmark != r.mark)
                .collect();
            assert!(
                misfiled.is_empty(),
                "{} of {} frontend lookups name another target than their flow reached, the first: {:?}",
                misfiled.len(),
                lookups.len(),
                misfiled.first()
            );
        }
    }
}

#[test]
fn mconnect_flows_per_target_and_packets_per_next_hop_with_every_record() {
    let Some(_serial) =
        root_or_skip("mconnect_flows_per_target_and_packets_per_next_hop_with_every_record")
    else {
        return;
    };
    mconnect_run("lb2-", &[]);
}

#[test]
fn mconnect_flows_per_target_and_packets_per_next_hop_with_counts_only() {
    let Some(_serial) =
        root_or_skip("mconnect_flows_per_target_and_packets_per_next_hop_with_counts_only")
    else {
        return;
    };
    mconnect_run("lb3-", &["--records", "none"]);
}

/// A target leaves nfqlb's table: mconnect's next run and the tracer agree that it got no
/// flow, and the others share its flows.
#[test]
fn a_deactivated_target_gets_no_flow() {
    let Some(_serial) = root_or_skip("a_deactivated_target_gets_no_flow") else {
        return;
    };
    let prefix = "lb4-";
    let lab = lb_lab(prefix);
    let targets = lab.targets();
    lab.deactivate_target(2).unwrap();
    let tracer = whole_path(prefix, &["--records", "none"]);
    let report = lab.mconnect(VIP4.into(), 200).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (_, d) = stop_with_distribution(tracer, VIP4.into());
    assert_eq!(report.count(&targets[1].hostname), 0, "{report:?}");
    tables_match_nfqlb(&lab, &d, &targets, None);
    assert!(
        d.lb_tables
            .iter()
            .all(|t| t.active.iter().all(|s| s.mark != targets[1].fwmark)),
        "{:?}",
        d.lb_tables
    );
    assert_eq!(d.flows_to(&targets[1].ns), 0, "{:?}", d.targets);
    for t in [&targets[0], &targets[2]] {
        assert!(report.count(&t.hostname) > 0, "{report:?}");
        assert_eq!(
            d.flows_to(&t.ns),
            report.count(&t.hostname),
            "{:?}",
            d.targets
        );
    }
}

/// A target leaves nfqlb's table under a live connection: the connection's next request
/// goes to another target (which has no socket for it and resets it), and the flow's story
/// says it moved, from which target's mark to which, as the target pods' own counters and
/// the client's reset say.
#[test]
fn a_flow_whose_target_leaves_is_told_moved() {
    let Some(_serial) = root_or_skip("a_flow_whose_target_leaves_is_told_moved") else {
        return;
    };
    let prefix = "lb5-";
    let port = 35200;
    let lab = lb_lab(prefix);
    let targets = lab.targets();
    let tracer = whole_path(prefix, &[]);
    let mut conn = lab.open(VIP4.into(), port).unwrap();
    let first = lab::read_answer(&mut conn).unwrap();
    let before = targets.iter().find(|t| t.hostname == first).unwrap();
    for t in &targets {
        let m = format!("ip saddr 169.254.100.150 tcp sport {port}");
        lab.add_counter(&t.ns, "moved", &m).unwrap();
    }
    lab.deactivate_target(before.index).unwrap();
    std::io::Write::write_all(&mut conn, b"again").unwrap();
    // The new target has no socket for the flow: the client sees a reset, not a hostname.
    assert!(
        lab::read_answer(&mut conn).is_err(),
        "the moved flow was answered"
    );
    let moved_to: Vec<&TargetInfo> = targets
        .iter()
        .filter(|t| lab.counter(&t.ns, "moved").unwrap() > 0)
        .collect();
    assert_eq!(moved_to.len(), 1, "one target got the moved flow");
    let after = moved_to[0];
    assert_ne!(after.index, before.index);
    std::thread::sleep(Duration::from_millis(500));
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "tracer failed: {}", f.stderr);
    let flow = f
        .flows()
        .into_iter()
        .find(|s| is_flow(&s.flow, VIP4.into(), port))
        .expect("the flow's summary");
    let marks: Vec<u32> = flow.path.lb.iter().map(|c| c.mark).collect();
    assert_eq!(marks, [before.fwmark, after.fwmark], "{:?}", flow.path.lb);
    assert!(flow.path.lb[1].ts_ns > flow.path.lb[0].ts_ns);
    let target_ip: IpAddr = after.ipv4.into();
    assert_eq!(flow.path.lb[1].target_ip, target_ip);
}
