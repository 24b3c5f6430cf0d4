use std::{net::IpAddr, time::Instant};

use super::classify::Iface;
use super::enumerate::parse_pod_uid;
use super::render::{interfaces_text, summary_sentence};
use super::rounds::inspection_due;
use super::*;
use crate::netns::kernel_state::host_len;
use crate::netns::kernel_state::{Link, NextHop, Route, Rule};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn link(index: u32, name: &str, master: Option<u32>, is_bridge: bool) -> (u32, Link) {
    (
        index,
        Link {
            index,
            name: name.into(),
            mac: None,
            master,
            is_bridge,
        },
    )
}

fn rule(src: Option<&str>, fwmark: Option<u32>, table: u32) -> Rule {
    let src = src.map(ip);
    Rule {
        priority: 100,
        src: src.map(|a| (a, host_len(a))),
        dst: None,
        fwmark,
        fwmask: None,
        iif: None,
        other_selectors: false,
        table: Some(table),
        v6: src.is_some_and(|a| a.is_ipv6()),
    }
}

fn default_route(table: u32, v6: bool, hops: &[(&str, u32)]) -> Route {
    Route {
        table,
        dst: None,
        v6,
        nexthops: hops
            .iter()
            .map(|(gw, ifindex)| NextHop {
                gw: Some(ip(gw)),
                ifindex: *ifindex,
                weight: 1,
                alive: true,
            })
            .collect(),
    }
}

fn addr(ifindex: u32, a: &str, prefix_len: u8) -> Address {
    Address {
        ifindex,
        ip: ip(a),
        prefix_len,
    }
}

/// The kernel's own rules, present in every namespace.
fn base_rules() -> Vec<Rule> {
    let mut v = Vec::new();
    for v6 in [false, true] {
        for t in [255, 254, 253] {
            v.push(Rule {
                priority: 0,
                src: None,
                dst: None,
                fwmark: None,
                fwmask: None,
                iif: None,
                other_selectors: false,
                table: Some(t),
                v6,
            });
        }
    }
    v
}

/// Names and tables unlike the tutorial's: classification must not care.
fn proxy() -> KernelState {
    let mut rules = base_rules();
    rules.push(rule(Some("10.9.9.9"), None, 31));
    rules.push(rule(Some("3000::9"), None, 31));
    KernelState {
        links: [
            link(1, "lo", None, false),
            link(7, "brx", None, true),
            link(8, "a", Some(7), false),
            link(9, "b", Some(7), false),
            link(10, "c", Some(7), false),
        ]
        .into_iter()
        .collect(),
        rules,
        routes: vec![
            default_route(31, false, &[("172.30.0.3", 7), ("172.30.0.5", 7)]),
            default_route(31, true, &[("fd30::3", 7)]),
            default_route(254, false, &[("172.30.0.254", 7)]),
        ],
        ..Default::default()
    }
}

fn frontend() -> KernelState {
    let mut rules = base_rules();
    rules.push(rule(None, Some(5003), 5003));
    rules.push(rule(Some("10.9.9.9"), None, 77));
    KernelState {
        links: [
            link(1, "lo", None, false),
            link(2, "up0", None, false),
            link(3, "toward-px", None, false),
        ]
        .into_iter()
        .collect(),
        rules,
        routes: vec![
            default_route(5003, false, &[("172.30.0.6", 3)]),
            default_route(77, false, &[("192.0.2.1", 2), ("192.0.2.2", 2)]),
        ],
        ..Default::default()
    }
}

fn target() -> (KernelState, Vec<Address>) {
    let mut rules = base_rules();
    rules.push(rule(Some("10.9.9.9"), None, 4));
    rules.push(rule(Some("3000::9"), None, 5));
    let state = KernelState {
        links: [link(1, "lo", None, false), link(5, "app0", None, false)]
            .into_iter()
            .collect(),
        rules,
        routes: vec![default_route(4, false, &[("172.30.0.1", 5)])],
        ..Default::default()
    };
    let addrs = vec![
        addr(1, "127.0.0.1", 8),
        addr(5, "172.30.0.6", 24),
        addr(5, "10.9.9.9", 32),
        addr(5, "3000::9", 128),
    ];
    (state, addrs)
}

#[test]
fn a_proxy_is_a_bridge_whose_vip_rules_route_through_it() {
    let c = classify(&proxy(), &[]);
    assert_eq!(c.role, Role::Proxy);
    assert_eq!(c.vips, vec![ip("10.9.9.9"), ip("3000::9")]);
    let names: Vec<(&str, IfaceKind)> = c
        .interfaces
        .iter()
        .map(|i| (i.name.as_str(), i.kind))
        .collect();
    assert_eq!(
        names,
        [
            ("brx", IfaceKind::Bridge),
            ("a", IfaceKind::Port),
            ("b", IfaceKind::Port),
            ("c", IfaceKind::Port)
        ]
    );
    assert_eq!(interfaces_text(&c), "bridge brx: a b c");
}

#[test]
fn a_bridge_without_vip_rules_or_with_one_port_is_not_a_proxy() {
    // docker0-like: a bridge with ports, no source rules.
    let mut s = proxy();
    s.rules = base_rules();
    assert_eq!(classify(&s, &[]).role, Role::Other);
    // Source rules through a bridge of one port.
    let mut s = proxy();
    s.links.retain(|i, _| *i != 9 && *i != 10);
    assert_ne!(classify(&s, &[]).role, Role::Proxy);
    // A rule whose table's default route does not use the bridge.
    let mut s = proxy();
    s.routes = vec![
        default_route(31, false, &[("192.0.2.1", 8)]),
        default_route(31, true, &[("3000::1", 8)]),
    ];
    assert_ne!(classify(&s, &[]).role, Role::Proxy);
}

#[test]
fn a_proxy_whose_vip_tables_are_empty_is_a_proxy_with_no_next_hops() {
    let mut s = proxy();
    s.routes.retain(|r| r.table != 31);
    let c = classify(&s, &[]);
    assert_eq!(c.role, Role::Proxy);
    assert_eq!(c.vips, vec![ip("10.9.9.9"), ip("3000::9")]);
    assert_eq!(interfaces_text(&c), "bridge brx: a b c");
    let note = c.note.unwrap();
    assert!(
        note.starts_with("no next-hops: table 31 (from 10.9.9.9), table 31 (from 3000::9) empty"),
        "{note}"
    );
    // Only the IPv6 table emptied: a proxy by its IPv4 VIP, noted for the IPv6 one.
    let mut s = proxy();
    s.routes.retain(|r| !(r.table == 31 && r.v6));
    let c = classify(&s, &[]);
    assert_eq!(c.role, Role::Proxy);
    assert!(c.note.unwrap().contains("(from 3000::9)"));
    // Holding the VIP makes it a target's rule, not an emptied proxy table.
    let mut s = proxy();
    s.routes.retain(|r| r.table != 31);
    let addrs = [addr(7, "10.9.9.9", 32), addr(7, "3000::9", 128)];
    assert_ne!(classify(&s, &addrs).role, Role::Proxy);
}

#[test]
fn a_frontend_has_fwmark_tables_and_a_vip_rule_out_of_another_interface() {
    let c = classify(&frontend(), &[]);
    assert_eq!(c.role, Role::Frontend);
    assert_eq!(c.vips, vec![ip("10.9.9.9")]);
    assert_eq!(interfaces_text(&c), "external up0, conduit toward-px");
    assert_eq!(c.note, None);
    // Before any target connects there are no fwmark rules: still a frontend.
    let mut s = frontend();
    s.rules.retain(|r| r.fwmark.is_none());
    let c = classify(&s, &[]);
    assert_eq!(c.role, Role::Frontend);
    assert!(c.note.is_some());
    // A VIP rule whose table leaves by the conduit is not the egress rule.
    let mut s = frontend();
    s.routes[1] = default_route(77, false, &[("172.30.0.6", 3)]);
    assert_eq!(classify(&s, &[]).role, Role::Other);
}

#[test]
fn a_target_holds_its_vips_as_host_addresses_with_source_rules() {
    let (s, a) = target();
    let c = classify(&s, &a);
    assert_eq!(c.role, Role::Target);
    assert_eq!(c.vips, vec![ip("10.9.9.9"), ip("3000::9")]);
    assert_eq!(interfaces_text(&c), "app0");
    // Host addresses without rules (or only on lo) make no target.
    let mut s2 = s.clone();
    s2.rules = base_rules();
    assert_eq!(classify(&s2, &a).role, Role::Other);
    let on_lo: Vec<Address> = a
        .iter()
        .map(|x| Address {
            ifindex: 1,
            ..x.clone()
        })
        .collect();
    assert_eq!(classify(&s, &on_lo).role, Role::Other);
    // A /24 address with a source rule is host source routing, not a VIP.
    let mut s3 = s.clone();
    s3.rules.push(rule(Some("172.30.0.6"), None, 9));
    let c = classify(&s3, &a);
    assert_eq!(c.vips, vec![ip("10.9.9.9"), ip("3000::9")]);
}

#[test]
fn a_plain_namespace_is_other() {
    let s = KernelState {
        links: [link(1, "lo", None, false), link(2, "eth0", None, false)]
            .into_iter()
            .collect(),
        rules: base_rules(),
        routes: vec![default_route(254, false, &[("10.0.0.1", 2)])],
        ..Default::default()
    };
    let c = classify(&s, &[addr(2, "10.0.0.5", 24), addr(1, "127.0.0.1", 8)]);
    assert_eq!(c, Class::other());
    assert_eq!(classify(&KernelState::default(), &[]), Class::other());
}

#[test]
fn pod_uids_from_both_cgroup_drivers() {
    let systemd = "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice/cri-containerd-1234.scope\n";
    assert_eq!(
        parse_pod_uid(systemd).as_deref(),
        Some("0a1b2c3d-4e5f-6789-abcd-ef0123456789")
    );
    let cgroupfs =
        "12:memory:/kubepods/burstable/pod0a1b2c3d-4e5f-6789-abcd-ef0123456789/0123abcd\n0::/\n";
    assert_eq!(
        parse_pod_uid(cgroupfs).as_deref(),
        Some("0a1b2c3d-4e5f-6789-abcd-ef0123456789")
    );
    assert_eq!(parse_pod_uid("0::/system.slice/ssh.service\n"), None);
    assert_eq!(parse_pod_uid("0::/kubepods/podnotauid/x\n"), None);
}

fn ns(name: &str, class: Class) -> Namespace {
    Namespace {
        path: PathBuf::from(format!("/var/run/netns/{name}")),
        inode: 4026530000,
        files: vec![],
        pids: vec![],
        pid_count: 0,
        host: false,
        name: name.into(),
        pod: None,
        pod_uid: None,
        hostname: None,
        class,
        error: None,
    }
}

#[test]
fn nothing_meridio_like_gets_one_clear_sentence() {
    let d = Discovery {
        namespaces: vec![ns("host", Class::other()), ns("x", Class::other())],
    };
    let text = render_text(&d, false);
    assert_eq!(
        text,
        "no Meridio proxy, frontend or target namespace found on this node (2 namespaces looked at)\n"
    );
    let json = render_json(&d, false);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["type"], "summary");
    assert_eq!(v["proxies"], 0);
    let all = [Role::Proxy, Role::Frontend, Role::Target];
    let e = to_trace(&d, &all, &[ip("20.0.0.1")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "no Meridio proxy, frontend, target on this node carries 20.0.0.1 (2 network namespaces looked at); `tracer discover` lists what was found"
    );
}

#[test]
fn the_whole_path_is_every_namespace_carrying_a_vip_proxies_first() {
    let p1 = ns("p1", classify(&proxy(), &[]));
    let mut other_vips = proxy();
    for r in &mut other_vips.rules {
        if let Some((a, len)) = r.src {
            let moved = if a.is_ipv6() { "3000::8" } else { "10.8.8.8" };
            r.src = Some((ip(moved), len));
        }
    }
    let p2 = ns("p2", classify(&other_vips, &[]));
    let fe = ns("fe", classify(&frontend(), &[]));
    let d = Discovery {
        namespaces: vec![fe.clone(), p1.clone(), p2.clone()],
    };
    let all = [Role::Proxy, Role::Frontend, Role::Target];
    let names = |v: Vec<Namespace>| v.into_iter().map(|n| n.name).collect::<Vec<_>>();
    assert_eq!(
        names(to_trace(&d, &all, &[ip("10.9.9.9")]).unwrap()),
        ["p1", "fe"]
    );
    assert_eq!(
        names(to_trace(&d, &all, &[ip("10.8.8.8")]).unwrap()),
        ["p2"]
    );
    assert_eq!(
        names(to_trace(&d, &all, &[ip("10.9.9.9"), ip("10.8.8.8")]).unwrap()),
        ["p1", "p2", "fe"]
    );
    assert_eq!(
        names(to_trace(&d, &[Role::Frontend], &[ip("10.9.9.9")]).unwrap()),
        ["fe"]
    );
    let e = to_trace(&d, &all, &[ip("10.7.7.7")])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("no Meridio proxy, frontend, target on this node carries 10.7.7.7"),
        "{e}"
    );
}

#[test]
fn without_vips_every_vip_discovery_found_is_traced() {
    let mut moved = proxy();
    for r in &mut moved.rules {
        if let Some((a, len)) = r.src {
            let to = if a.is_ipv6() { "3000::8" } else { "10.8.8.8" };
            r.src = Some((ip(to), len));
        }
    }
    let mut p2 = ns("p2", classify(&moved, &[]));
    p2.inode += 1;
    let d = Discovery {
        namespaces: vec![
            ns("p1", classify(&proxy(), &[])),
            p2,
            ns("fe", classify(&frontend(), &[])),
            ns("gw", Class::other()),
        ],
    };
    let all = [Role::Proxy, Role::Frontend, Role::Target];
    assert_eq!(
        vips_on_node(&d, &all, None).unwrap(),
        [ip("10.9.9.9"), ip("3000::9"), ip("10.8.8.8"), ip("3000::8")]
    );
    assert_eq!(
        vips_on_node(&d, &all, Some(4026530001)).unwrap(),
        [ip("10.8.8.8"), ip("3000::8")]
    );
    let none = Discovery {
        namespaces: vec![ns("gw", Class::other())],
    };
    let e = vips_on_node(&none, &all, None).unwrap_err().to_string();
    assert!(e.starts_with("discovery finds no VIP on this node"), "{e}");
    assert!(e.contains("(1 network namespace looked at)"), "{e}");
    let e = vips_on_node(&d, &all, Some(1)).unwrap_err().to_string();
    assert!(e.contains("--netns"), "{e}");
}

#[test]
fn the_table_is_aligned_and_hides_other_unless_asked() {
    let (t, a) = target();
    let d = Discovery {
        namespaces: vec![
            ns("proxy-x", classify(&proxy(), &[])),
            ns("fe-x", classify(&frontend(), &[])),
            ns("tg-x", classify(&t, &a)),
            ns("gw", Class::other()),
        ],
    };
    let text = render_text(&d, false);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    let col = |l: &str| l.find("/var/run").unwrap();
    assert!(lines[0].starts_with("ROLE"));
    assert_eq!(col(lines[1]), lines[0].find("NETNS").unwrap());
    assert_eq!(col(lines[1]), col(lines[3]));
    assert!(lines[1].contains("10.9.9.9,3000::9") && lines[1].contains("bridge brx: a b c"));
    assert!(!text.contains(" gw "));
    assert!(lines[4].contains("4 namespaces looked at: 1 proxy, 1 frontend, 1 target, 1 other (`tracer discover --all` lists them)"), "{text}");
    assert!(render_text(&d, true).contains("other     gw"));
}

#[test]
fn a_namespace_is_inspected_while_young_then_every_recheck() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    // Young: every round, however recently inspected.
    assert!(inspection_due(t0, at(5), at(6)));
    // Settled: not until RECHECK has passed since the last inspection.
    assert!(!inspection_due(t0, at(31), at(32)));
    assert!(!inspection_due(t0, at(31), at(40)));
    assert!(inspection_due(t0, at(31), at(41)));
}

/// The typed lines write the same bytes the hand-built `json!` objects did (sorted keys,
/// `null` for what is absent), and read back as the same records.
#[test]
fn json_lines_keep_their_bytes_and_read_back_typed() {
    use tracer_records::discover::DiscoverLine;
    let mut n = ns(
        "proxy-a",
        Class {
            role: Role::Proxy,
            vips: vec![ip("20.0.0.1"), ip("2000::1")],
            interfaces: vec![
                Iface {
                    name: "bridge0".into(),
                    kind: IfaceKind::Bridge,
                },
                Iface {
                    name: "pa-1".into(),
                    kind: IfaceKind::Port,
                },
            ],
            note: Some("no next-hops".into()),
        },
    );
    n.files = vec![PathBuf::from("/var/run/netns/proxy-a")];
    n.pids = vec![7, 9];
    n.pid_count = 2;
    n.pod = Some("red/proxy-a".into());
    n.hostname = Some("proxy-a".into());
    let other = ns("x", Class::other());
    let d = Discovery {
        namespaces: vec![n.clone(), other],
    };
    let old = serde_json::json!({
        "type": "netns",
        "role": "proxy",
        "name": n.name,
        "path": n.path.display().to_string(),
        "inode": n.inode,
        "files": ["/var/run/netns/proxy-a"],
        "pids": [7, 9],
        "pid_count": 2,
        "host": false,
        "pod": "red/proxy-a",
        "pod_uid": null,
        "hostname": "proxy-a",
        "vips": ["20.0.0.1", "2000::1"],
        "interfaces": [{"name": "bridge0", "kind": "bridge"}, {"name": "pa-1", "kind": "port"}],
        "note": "no next-hops",
        "error": null,
    });
    let summary = serde_json::json!({
        "type": "summary",
        "namespaces": 2,
        "proxies": 1,
        "frontends": 0,
        "targets": 0,
        "other": 1,
        "message": summary_sentence(&d, false),
    });
    assert_eq!(render_json(&d, false), format!("{old}\n{summary}\n"));

    let typed: Vec<DiscoverLine> = render_json(&d, true)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        typed.len(),
        3,
        "two namespaces with --all, then the summary"
    );
    let DiscoverLine::Netns(p) = &typed[0] else {
        panic!("{typed:?}")
    };
    assert_eq!((p.role.as_ref(), p.pid_count), ("proxy", 2));
    assert_eq!(p.interfaces[1].kind, "port");
    assert!(matches!(&typed[2], DiscoverLine::Summary(s) if s.other == 1));
}
