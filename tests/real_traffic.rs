//! End-to-end: what real nodes send and the states operators meet (issue 10), against
//! labs of their own, as root. Ground truth comes from the kernel, never from the tracer:
//! the proxy's no-route counters (`/proc/net/netstat`, `/proc/net/snmp6`), the frontends'
//! nftables counters, and the frames a test writes itself.
//!
//! Labs use netns prefixes beginning with `f`.
mod support;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket},
    time::Duration,
};

use serde_json::Value;
use support::{lab, root_or_skip, view_command, Tracer};
use xtask::{
    lab::{Lab, Role, VIP4, VIP6},
    netns::in_netns,
};

const GATEWAY4: Ipv4Addr = Ipv4Addr::new(169, 254, 100, 150);
const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0x100, 0x100, 0, 0, 0, 0, 0, 0x150);

/// One `/proc/net/*` statistic of `ns`: `netstat`/`snmp` style (a header line, then a value
/// line, both starting with `group:`) or `snmp6` style (`name value` per line).
fn proc_stat(ns: &str, file: &str, group: &str, name: &str) -> u64 {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "cat", &format!("/proc/net/{file}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    if group.is_empty() {
        return text
            .lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(name)).then(|| w.next().unwrap().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no {name} in {file} of {ns}"));
    }
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{group}:")))
        .collect();
    let names: Vec<&str> = lines[0].split_whitespace().collect();
    let values: Vec<&str> = lines[1].split_whitespace().collect();
    let i = names.iter().position(|n| *n == name).unwrap();
    values[i].parse().unwrap()
}

/// Packets the proxy dropped for want of a route: (IPv4, IPv6).
fn no_route_drops(lab: &Lab) -> (u64, u64) {
    let px = lab.ns(Role::Proxy);
    (
        proc_stat(&px, "netstat", "IpExt", "InNoRoutes"),
        proc_stat(&px, "snmp6", "", "Ip6InNoRoutes"),
    )
}

/// Sends `n` UDP datagrams of `size` bytes from the target's VIP `vip:sport` to `to:dport`.
fn send_from_vip(lab: &Lab, vip: IpAddr, sport: u16, to: IpAddr, dport: u16, n: u32, size: usize) {
    in_netns(&lab.ns(Role::Target), || {
        let s = UdpSocket::bind((vip, sport)).expect("bind the VIP");
        s.connect((to, dport)).unwrap();
        let payload = vec![0x5au8; size];
        for _ in 0..n {
            // An ICMP error from the proxy may fail one send with ECONNREFUSED/ENETUNREACH;
            // the datagram itself still left.
            let _ = s.send(&payload);
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .unwrap();
}

fn discover_json(prefix: &str) -> Vec<Value> {
    let out = view_command(prefix, true, &["discover", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every frontend gone: the proxy's VIP tables are empty. Discovery still calls it a proxy
/// (bridge, ports, `from <VIP>` rules) and notes "no next-hops"; the whole-path tracer,
/// which goes by discovery, traces it and names each dropped egress datagram with the
/// kernel's reason, as many as the proxy's own no-route counters counted.
#[test]
fn a_proxy_with_empty_vip_tables_is_found_and_its_drops_named() {
    let Some(_serial) = root_or_skip("a_proxy_with_empty_vip_tables_is_found_and_its_drops_named")
    else {
        return;
    };
    let lab = lab("f1-");
    let px = lab.ns(Role::Proxy);
    for (fam, table) in [("-4", "1"), ("-6", "2")] {
        let out = std::process::Command::new("ip")
            .args([fam, "-n", &px, "route", "flush", "table", table])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    let recs = discover_json("f1-");
    let proxy: Vec<&Value> = recs.iter().filter(|r| r["role"] == "proxy").collect();
    assert_eq!(proxy.len(), 1, "{recs:#?}");
    let proxy = proxy[0];
    assert_eq!(proxy["name"], px.as_str(), "{proxy}");
    assert_eq!(proxy["vips"], serde_json::json!(["20.0.0.1", "2000::1"]));
    assert_eq!(proxy["interfaces"][0]["kind"], "bridge", "{proxy}");
    let note = proxy["note"].as_str().unwrap_or_default();
    assert!(note.starts_with("no next-hops"), "{proxy}");
    assert!(note.contains("table 1 (from 20.0.0.1)") && note.contains("table 2 (from 2000::1)"));

    // Whole path, proxies only: the tracer finds the proxy through discovery.
    // (own_pids false: the shell execs the tracer, so the signal reaches it.)
    let tracer = Tracer::start_command(&mut view_command(
        "f1-",
        false,
        &[
            "--json", "--vip", "20.0.0.1", "--vip", "2000::1", "--role", "proxy",
        ],
    ));
    let before = no_route_drops(&lab);
    const N: u32 = 20;
    send_from_vip(
        &lab,
        IpAddr::V4(VIP4),
        4000,
        IpAddr::V4(GATEWAY4),
        9301,
        N,
        100,
    );
    send_from_vip(
        &lab,
        IpAddr::V6(VIP6),
        4000,
        IpAddr::V6(GATEWAY6),
        9302,
        N,
        100,
    );
    std::thread::sleep(Duration::from_millis(500));
    let after = no_route_drops(&lab);
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    let ready = f.of_type("ready");
    assert!(
        ready.iter().any(|r| r["netns"] == px.as_str()),
        "the proxy was not traced: {ready:#?}"
    );
    let want = (after.0 - before.0, after.1 - before.1);
    eprintln!("proxy no-route drops (v4, v6): {want:?}");
    assert!(want.0 >= u64::from(N) && want.1 >= u64::from(N), "{want:?}");

    let no_reasons = ready[0]["unavailable"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["hook"] == "drop reasons");
    let reason = if no_reasons {
        "unknown (this kernel has no drop reasons)"
    } else {
        "IP_INNOROUTES"
    };
    for (port, expected) in [(9301u16, want.0), (9302, want.1)] {
        let drops: Vec<&Value> = f
            .of_type("drop")
            .into_iter()
            .filter(|d| d["client_port"] == port)
            .collect();
        assert_eq!(drops.len() as u64, expected, "drop records of :{port}");
        for d in &drops {
            assert_eq!(d["ifname"], "bridge0", "{d}");
            assert_eq!(d["path"], "egress", "{d}");
            assert_eq!(d["reason"], reason, "{d}");
        }
        let flows: Vec<&Value> = f
            .of_type("flow")
            .into_iter()
            .filter(|s| s["client_port"] == port)
            .collect();
        assert_eq!(flows.len(), 1, "{flows:#?}");
        assert_eq!(flows[0]["drops"]["packets"], expected, "{}", flows[0]);
        assert_eq!(flows[0]["egress"]["packets"], 0, "{}", flows[0]);
    }
}
