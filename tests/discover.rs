//! End-to-end: discovery against the lab, as root. The lab is built with other interface
//! names than the tutorial's, a long-lived process in every namespace (so each is reachable
//! through /proc as well as by name) and a second target whose namespace only a process
//! holds; `tracer discover` must find each namespace once and classify it by structure.
mod support;

use std::{os::unix::fs::MetadataExt, path::Path, process::ExitStatus};

use lab::{Lab, LabNames, LabSpec, Role};
use support::{root_or_skip, run_tracer, view_command, Tracer};
use tracer_records::{
    discover::{DiscoverLine, Namespace as Netns},
    Line, Ready, Record,
};

const VIPS: [&str; 2] = ["20.0.0.1", "2000::1"];

fn lab_up(prefix: &str, names: LabNames, processes: bool) -> Lab {
    Lab::up(LabSpec {
        prefix: prefix.into(),
        names,
        holders: processes,
        proc_only_target: processes,
        ..Default::default()
    })
    .expect("lab up")
}

/// `tracer discover --json --all`: every namespace record (the summary must come last).
fn discover_all() -> Vec<Netns<'static>> {
    let (status, out, err) = run_tracer(&["discover", "--json", "--all"]);
    assert!(status.success(), "tracer discover failed: {err}");
    let mut recs: Vec<DiscoverLine> = out
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a discover line ({e}): {l}"))
        })
        .collect();
    assert!(
        matches!(recs.pop(), Some(DiscoverLine::Summary(_))),
        "the summary is not last: {out}"
    );
    recs.into_iter()
        .map(|r| match r {
            DiscoverLine::Netns(n) => n,
            other => panic!("a second summary: {other:?}"),
        })
        .collect()
}

fn has_file(r: &Netns, ns_name: &str) -> bool {
    r.files
        .iter()
        .any(|f| *f == format!("/var/run/netns/{ns_name}") || *f == format!("/run/netns/{ns_name}"))
}

fn has_pid(r: &Netns, pid: u32) -> bool {
    r.pids.contains(&pid)
}

fn one<'a>(
    recs: &'a [Netns<'static>],
    what: &str,
    f: impl Fn(&Netns) -> bool,
) -> &'a Netns<'static> {
    let found: Vec<&Netns<'static>> = recs.iter().filter(|r| f(r)).collect();
    assert_eq!(
        found.len(),
        1,
        "{what}: expected one record, got {found:#?}"
    );
    found[0]
}

/// The ready records of a `tracer --json` run's output, every line read as a record.
fn readies(out: &str) -> Vec<Ready<'static>> {
    out.lines()
        .filter_map(|l| {
            let l: Line = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            match l.record {
                Record::Ready(r) => Some(r),
                _ => None,
            }
        })
        .collect()
}

fn vips(r: &Netns) -> Vec<String> {
    r.vips.iter().map(|v| v.to_string()).collect()
}

fn interfaces(r: &Netns) -> Vec<(String, String)> {
    r.interfaces
        .iter()
        .map(|i| (i.name.to_string(), i.kind.to_string()))
        .collect()
}

fn ifs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, k)| (n.to_string(), k.to_string()))
        .collect()
}

fn inode(path: &str) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

#[test]
fn every_lab_namespace_is_found_once_and_classified_by_structure() {
    let Some(_serial) =
        root_or_skip("every_lab_namespace_is_found_once_and_classified_by_structure")
    else {
        return;
    };
    let lab = lab_up("d1-", LabNames::OTHER, true);
    let n = lab.names();
    assert_ne!(n.px_bridge, LabNames::TUTORIAL.px_bridge);
    let recs = discover_all();

    let expected = [
        (Role::Gateway, "other", vec![]),
        (
            Role::FrontendA,
            "frontend",
            ifs(&[(n.fe_ext, "external"), (n.fea_conduit, "conduit")]),
        ),
        (
            Role::FrontendB,
            "frontend",
            ifs(&[(n.fe_ext, "external"), (n.feb_conduit, "conduit")]),
        ),
        (
            Role::Proxy,
            "proxy",
            ifs(&[
                (n.px_bridge, "bridge"),
                (n.px_port_fea, "port"),
                (n.px_port_feb, "port"),
                (n.px_port_tg, "port"),
                (n.px_port_tg2, "port"),
            ]),
        ),
        (Role::Target, "target", ifs(&[(n.tg_if, "vip")])),
    ];
    for (role, want_role, want_ifaces) in expected {
        let ns = lab.ns(role);
        let holder = lab
            .holder_pid(role)
            .expect("a long-lived process per namespace");
        // Found by its name and by its process, as one namespace.
        let r = one(&recs, &ns, |r| has_file(r, &ns));
        assert!(has_pid(r, holder), "{ns}: pid {holder} not listed: {r:?}");
        assert_eq!(
            r.inode,
            inode(&format!("/proc/{holder}/ns/net")),
            "{ns}: {r:?}"
        );
        one(&recs, &format!("{ns} by pid"), |r| has_pid(r, holder));
        assert_eq!(r.role, want_role, "{ns}: {r:?}");
        assert_eq!(r.name, ns.as_str(), "{ns}: {r:?}");
        assert_eq!(r.path, format!("/var/run/netns/{ns}"), "{ns}: {r:?}");
        if want_role == "other" {
            assert!(r.vips.is_empty(), "{ns}: {r:?}");
        } else {
            assert_eq!(vips(r), VIPS, "{ns}: {r:?}");
        }
        assert_eq!(interfaces(r), want_ifaces, "{ns}: {r:?}");
    }

    // The second target: no netns name, only /proc/<pid>/ns/net leads to it.
    let pid = lab.proc_only_target_pid().expect("the proc-only target");
    let path = format!("/proc/{pid}/ns/net");
    let r = one(&recs, "the proc-only target", |r| has_pid(r, pid));
    assert_eq!(r.path, path.as_str(), "{r:?}");
    assert!(r.files.is_empty(), "{r:?}");
    assert_eq!(r.inode, inode(&path), "{r:?}");
    assert_eq!(r.role, "target", "{r:?}");
    assert_eq!(vips(r), VIPS, "{r:?}");
    assert_eq!(interfaces(r), ifs(&[(n.tg2_if, "vip")]), "{r:?}");
    // Named by its hostname, as a pod's namespace is by the pod's.
    assert_eq!(r.name, "d1-target-a-2", "{r:?}");
    assert_eq!(r.hostname.as_deref(), Some("d1-target-a-2"), "{r:?}");

    // No namespace is listed twice.
    let mut inodes: Vec<u64> = recs.iter().map(|r| r.inode).collect();
    let all = inodes.len();
    inodes.sort_unstable();
    inodes.dedup();
    assert_eq!(inodes.len(), all, "a namespace is listed twice: {recs:#?}");

    // The table says the same.
    let (status, out, err) = run_tracer(&["discover"]);
    assert!(status.success(), "{err}");
    let line = |name: &str| -> String {
        out.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{out}"))
            .to_string()
    };
    assert!(out.lines().next().unwrap().starts_with("ROLE"), "{out}");
    let proxy = line("d1-proxy-a");
    assert!(
        proxy.starts_with("proxy ")
            && proxy.contains("/var/run/netns/d1-proxy-a")
            && proxy.contains("20.0.0.1,2000::1")
            && proxy.contains(&format!(
                "bridge {}: {} {} {} {}",
                n.px_bridge, n.px_port_fea, n.px_port_feb, n.px_port_tg, n.px_port_tg2
            )),
        "{out}"
    );
    assert!(line("d1-lbfe-a").starts_with("frontend "), "{out}");
    assert!(line("d1-target-a-2").contains(&path), "{out}");
    assert!(
        !out.contains("d1-trench-a"),
        "`other` is listed without --all: {out}"
    );
    assert!(
        out.lines().last().unwrap().contains("namespaces looked at"),
        "{out}"
    );

    // Teardown stops the processes, and the proc-only namespace goes with its process.
    let holders: Vec<u32> = Role::ALL
        .iter()
        .filter_map(|r| lab.holder_pid(*r))
        .collect();
    drop(lab);
    for p in holders.iter().chain([&pid]) {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists(),
            "process {p} outlived the lab"
        );
    }
}

fn run_tracer_in_view(prefix: &str, own_pids: bool, args: &[&str]) -> (ExitStatus, String, String) {
    let out = view_command(prefix, own_pids, args)
        .output()
        .expect("unshare (util-linux)");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Without --netns the whole path is traced: every proxy, frontend and target carrying
/// the VIPs (here seen with only this lab's netns files in view, as on a CI node).
#[test]
fn without_netns_the_whole_path_carrying_the_vip_is_traced() {
    let Some(_serial) = root_or_skip("without_netns_the_whole_path_carrying_the_vip_is_traced")
    else {
        return;
    };
    let _lab = lab_up("d1-", LabNames::OTHER, true);
    let args = [
        "--json",
        "--duration",
        "1",
        "--vip",
        "20.0.0.1",
        "--vip",
        "2000::1",
    ];
    let (status, out, err) = run_tracer_in_view("d1-", false, &args);
    assert!(status.success(), "tracer failed: {err}");
    let ready = readies(&out);
    let names: Vec<&str> = ready.iter().map(|r| r.netns.as_ref()).collect();
    for want in [
        "d1-proxy-a",
        "d1-lbfe-a",
        "d1-lbfe-b",
        "d1-target-a-1",
        "d1-target-a-2",
    ] {
        assert!(names.contains(&want), "{want} not traced: {names:?}");
    }
}

/// Several proxies carrying the VIP are all traced; a VIP nothing carries gets one sentence.
#[test]
fn several_proxies_are_traced_and_an_unknown_vip_gets_one_sentence() {
    let Some(_serial) =
        root_or_skip("several_proxies_are_traced_and_an_unknown_vip_gets_one_sentence")
    else {
        return;
    };
    let (status, out, err) = run_tracer(&["--vip", "198.51.100.77", "--duration", "1"]);
    assert!(!status.success(), "{out}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("no Meridio proxy, frontend, target on this node carries 198.51.100.77")
            && err.contains("`tracer discover` lists what was found"),
        "{err}"
    );

    let _a = lab_up("d1-", LabNames::TUTORIAL, false);
    let _b = lab_up("d2-", LabNames::OTHER, false);
    let (status, out, err) = run_tracer(&[
        "--vip",
        "20.0.0.1",
        "--role",
        "proxy",
        "--duration",
        "1",
        "--json",
    ]);
    assert!(status.success(), "{err}");
    let ready = readies(&out);
    for want in ["d1-proxy-a", "d2-proxy-a"] {
        assert!(ready.iter().any(|r| r.netns == want), "{want}: {out}");
    }
    assert!(
        ready.iter().all(|r| r.role == "proxy"),
        "--role proxy traces proxies only: {out}"
    );
    // With --netns only that namespace is traced (its role is discovery's: a proxy).
    let (status, out, err) = run_tracer(&[
        "--netns",
        "d2-proxy-a",
        "--vip",
        "20.0.0.1",
        "--duration",
        "1",
        "--json",
    ]);
    assert!(status.success(), "{err}");
    assert_eq!(readies(&out).len(), 1, "{out}");
    // An unknown role is refused by name.
    let (status, _, err) = run_tracer(&["--vip", "20.0.0.1", "--role", "gateway"]);
    assert!(!status.success());
    assert!(
        err.contains("invalid value 'gateway'") && err.contains("proxy"),
        "{err}"
    );
}

#[test]
fn a_node_without_meridio_pods_gets_clear_messages() {
    let Some(_serial) = root_or_skip("a_node_without_meridio_pods_gets_clear_messages") else {
        return;
    };
    // No netns file and no other process in view: only the host's namespace is left.
    let (status, out, err) = run_tracer_in_view("no-such-lab-", true, &["discover"]);
    assert!(status.success(), "{err}");
    assert_eq!(
        out,
        "no Meridio proxy, frontend or target namespace found on this node (1 namespace looked at)\n"
    );
    let (status, out, err) = run_tracer_in_view("no-such-lab-", true, &["discover", "--json"]);
    assert!(status.success(), "{err}");
    let v: DiscoverLine = serde_json::from_str(out.trim()).expect("one summary line");
    assert!(
        matches!(&v, DiscoverLine::Summary(s) if s.proxies == 0 && s.namespaces == 1),
        "{out}"
    );
    let (status, out, err) = run_tracer_in_view("no-such-lab-", true, &["--vip", "20.0.0.1"]);
    assert!(!status.success(), "{out}");
    assert_eq!(
        err.trim(),
        "tracer: no Meridio proxy, frontend, target on this node carries 20.0.0.1 (1 network namespace looked at); `tracer discover` lists what was found"
    );
}

/// `--netns` without `--role`: the namespace's role is the one discovery finds, and the
/// ready record says so. A frontend is traced as one (its two interfaces, hops of the
/// connections that crossed it, by its own nftables counters); a target as one; `--role`
/// against discovery is followed, with one warning line.
#[test]
fn netns_without_role_takes_the_role_discovery_finds() {
    let Some(_serial) = root_or_skip("netns_without_role_takes_the_role_discovery_finds") else {
        return;
    };
    let lab = lab_up("d3-", LabNames::TUTORIAL, false);
    let _listener = lab.listen().unwrap();
    let n = lab.names();
    let vip: std::net::IpAddr = "20.0.0.1".parse().unwrap();
    let ports: Vec<u16> = (35971..35977).collect();
    let fe = lab.ns(Role::FrontendA);
    // The SYNs and SYN-ACKs of each connection that enter frontend A: a retransmission may
    // take the other frontend (the sender re-hashes), so each kind is counted on its own.
    for p in &ports {
        let syn =
            format!("ip daddr {vip} tcp dport 4000 tcp sport {p} tcp flags & (syn | ack) == syn");
        let syn_ack = format!(
            "ip saddr {vip} tcp sport 4000 tcp dport {p} tcp flags & (syn | ack) == syn | ack"
        );
        lab.add_counter(&fe, &format!("syn{p}"), &syn).unwrap();
        lab.add_counter(&fe, &format!("sa{p}"), &syn_ack).unwrap();
    }

    let tracer = Tracer::start(&["--netns", &fe, "--vip", "20.0.0.1"]);
    for p in &ports {
        lab.connect(vip, *p, b"role from discovery\n").unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    let ready = f.readies();
    assert_eq!(ready.len(), 1, "{ready:#?}");
    let r = ready[0];
    assert_eq!(
        (r.netns.as_ref(), r.role.as_ref()),
        (fe.as_str(), "frontend")
    );
    let mut ifaces = r.interfaces.to_vec();
    ifaces.sort();
    let mut want = vec![n.fe_ext.to_string(), n.fea_conduit.to_string()];
    want.sort();
    assert_eq!(ifaces, want, "{r:#?}");
    for iface in &want {
        for dir in ["ingress", "egress"] {
            assert!(
                r.hooks
                    .iter()
                    .any(|h| h.starts_with(&format!("tc:{iface}/{dir}"))),
                "{iface} {dir} not attached: {r:#?}"
            );
        }
    }
    assert!(
        r.notes.iter().any(|n| n == "role frontend, from discovery"),
        "{r:#?}"
    );
    let mut crossed = 0;
    for p in &ports {
        let hops = |ifname: &str, dir: &str, flags: &str| {
            f.hops()
                .iter()
                .filter(|h| {
                    h.netns == fe
                        && h.role == "frontend"
                        && h.ifname == ifname
                        && h.dir == dir
                        && h.tcp_flags == flags
                        && (h.sport == *p || h.dport == *p)
                })
                .count()
        };
        let syns = lab.counter(&fe, &format!("syn{p}")).unwrap() as usize;
        let syn_acks = lab.counter(&fe, &format!("sa{p}")).unwrap() as usize;
        crossed += syns + syn_acks;
        assert_eq!(hops(n.fe_ext, "ingress", "SYN"), syns, "port {p}");
        assert_eq!(hops(n.fea_conduit, "egress", "SYN"), syns, "port {p}");
        assert_eq!(
            hops(n.fea_conduit, "ingress", "SYN,ACK"),
            syn_acks,
            "port {p}"
        );
        assert_eq!(hops(n.fe_ext, "egress", "SYN,ACK"), syn_acks, "port {p}");
    }
    assert!(
        crossed > 0,
        "no connection crossed {fe}: the test proves nothing"
    );

    // A target: ready as one, on its interface.
    let tg = lab.ns(Role::Target);
    let tracer = Tracer::start(&["--netns", &tg, "--vip", "20.0.0.1"]);
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    let r = f.readies()[0].clone();
    assert_eq!((r.netns.as_ref(), r.role.as_ref()), (tg.as_str(), "target"));
    assert!(r.interfaces.iter().any(|i| i == n.tg_if), "{r:#?}");
    assert!(
        r.notes.iter().any(|n| n == "role target, from discovery"),
        "{r:#?}"
    );

    // --role against discovery: followed, with one warning line.
    let tracer = Tracer::start(&["--netns", &tg, "--role", "frontend", "--vip", "20.0.0.1"]);
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    let r = f.readies()[0].clone();
    assert_eq!(r.role, "frontend");
    let warnings: Vec<&String> = r
        .notes
        .iter()
        .filter(|n| n.starts_with("warning:"))
        .collect();
    assert_eq!(
        warnings,
        [&format!("warning: --role frontend given, but discovery classifies netns {tg} as a target; traced as a frontend, as --role says")],
        "{r:#?}"
    );
    // ... and when following it fails, the error carries the disagreement.
    let (status, out, err) = run_tracer(&[
        "--netns",
        &fe,
        "--role",
        "proxy",
        "--vip",
        "20.0.0.1",
        "--duration",
        "5",
    ]);
    assert!(!status.success(), "{out}");
    assert!(
        err.contains("has no bridge")
            && err.contains("discovery classifies")
            && err.contains("as a frontend"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Nothing Meridio-like but a bridge (the gateway): a proxy, as before, and noted.
    let gw = lab.ns(Role::Gateway);
    let tracer = Tracer::start(&["--netns", &gw, "--vip", "20.0.0.1"]);
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    let r = f.readies()[0].clone();
    assert_eq!(r.role, "proxy");
    assert!(
        r.notes.iter().any(|n| n.starts_with(&format!(
            "discovery does not classify netns {gw} as a proxy, frontend or target"
        ))),
        "{r:#?}"
    );

    // Nothing Meridio-like and no bridge (a bare namespace): today's sentence.
    let bare = "d3-bare";
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", bare])
        .output(); // left by an earlier, failed run
    support::ip(&["netns", "add", bare]);
    let (status, out, err) = run_tracer(&["--netns", bare, "--vip", "20.0.0.1", "--duration", "5"]);
    support::ip(&["netns", "del", bare]);
    assert!(!status.success(), "{out}");
    assert!(
        err.contains("has no bridge, so it does not look like a Meridio proxy"),
        "{err}"
    );
}
