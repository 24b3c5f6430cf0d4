//! Files and pins a tracer running as root must not get wrong, against the lab: the pcap
//! size cap rotates to FILE.1 and the two files together hold every hop (tshark reads
//! them; the frontends' nftables counters confirm the routed hops); `--pcap` through a
//! symbolic link is refused with one sentence, its target untouched and nothing left
//! attached; two tracers in two pid namespaces (both pid 1) trace side by side, each in its
//! own pin directory, and neither removes the other's; a FIFO under /run/netns neither hangs
//! discovery nor passes for a namespace.
//!
//! Labs use the netns prefixes `h1-`, `h2-` and `h3-`.
mod support;

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, UdpSocket},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use lab::{Lab, Role, VIP4};
use support::{lab_up, orphaned_programs, root_or_skip, run_tracer, tc_state, view_command};
use support::{Finished, Tracer};

const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 100, 150);
/// The rotation test's datagrams: from VIP:4000 to the gateway's ROTATE_DPORT.
const ROTATE_DPORT: u16 = 9101;
const MIB: u64 = 1 << 20;
const BPFFS: &str = "/sys/fs/bpf";

/// A scratch directory of this test process, removed first if a run left it.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracer-hardening-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One packet of a pcapng file as tshark dissects it: its interface, comment and UDP
/// destination port (0 when not UDP).
#[derive(Debug)]
struct Packet {
    iface: String,
    comment: String,
    udp_dport: u16,
}

fn tshark(file: &Path) -> Vec<Packet> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"])
        .args(["-e", "frame.interface_name", "-e", "frame.comment"])
        .args(["-e", "udp.dstport"])
        .output()
        .expect("tshark runs (cargo xtask test installs it)");
    assert!(
        out.status.success(),
        "tshark could not read {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 3, "tshark line: {l}");
            Packet {
                iface: f[0].into(),
                comment: f[1].into(),
                udp_dport: f[2].parse().unwrap_or(0),
            }
        })
        .collect()
}

/// Counters, in each frontend, of the rotation test's datagrams arriving from the proxy;
/// the gateway drops them (no ICMP comes back to make other hops).
fn arm_rotation_truth(lab: &Lab) {
    let matches = format!("ip saddr {VIP4} udp sport 4000 udp dport {ROTATE_DPORT}");
    for fe in [Role::FrontendA, Role::FrontendB] {
        lab.add_counter(&lab.ns(fe), "rotate", &matches).unwrap();
    }
    let gw = lab.ns(Role::Gateway);
    let drop = format!(
        "add table inet rotate-drop
add chain inet rotate-drop pre {{ type filter hook prerouting priority -300; policy accept; }}
add rule inet rotate-drop pre {matches} drop
"
    );
    lab::cmd::run_with_stdin("ip", &["netns", "exec", &gw, "nft", "-f", "-"], Some(&drop)).unwrap();
}

#[test]
fn the_pcap_size_cap_rotates_and_both_files_hold_every_hop() {
    let Some(_serial) = root_or_skip("the_pcap_size_cap_rotates_and_both_files_hold_every_hop")
    else {
        return;
    };
    let lab = lab_up("h1-");
    arm_rotation_truth(&lab);
    let dir = scratch("rotate");
    let file = dir.join("trace.pcapng");
    let rotated = dir.join("trace.pcapng.1");
    let proxy = lab.ns(Role::Proxy);
    // Every packet recorded (and captured), so both files add up to the frontends' counters.
    let tracer = Tracer::start(&[
        "--records",
        "all",
        "--netns",
        &proxy,
        "--vip",
        "20.0.0.1",
        "--pcap",
        file.to_str().unwrap(),
        "--snap-len",
        "2048",
        "--pcap-max-mb",
        "1",
    ]);
    // Paced datagrams of whole captured frames until the file has rotated, then a few
    // more so the new file holds some too (and the old one is not rotated away again).
    let sent = lab::netns::in_netns(&lab.ns(Role::Target), || {
        let s = UdpSocket::bind((VIP4, 4000)).expect("bind the VIP");
        s.connect((GATEWAY, ROTATE_DPORT)).unwrap();
        let (mut sent, mut after) = (0u32, 0u32);
        while after < 40 && sent < 3000 {
            s.send(&[0x5a; 1400]).unwrap();
            sent += 1;
            if sent % 10 == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
            if rotated.exists() {
                after += 1;
            }
        }
        sent
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);
    assert!(f.of_type("lost").is_empty(), "no record lost at this pace");
    let truth: u64 = [Role::FrontendA, Role::FrontendB]
        .iter()
        .map(|fe| lab.counter(&lab.ns(*fe), "rotate").unwrap())
        .sum();
    eprintln!("{sent} datagrams sent, {truth} reached the frontends");
    assert_eq!(u64::from(sent), truth, "every datagram reached a frontend");

    // The cap: the full file went to FILE.1 once it held 1 MiB (plus the block that
    // crossed it); the new one is under the cap. Both owner-only.
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(rotated.exists(), "no rotation after {sent} datagrams");
    assert!(
        (MIB..MIB + 16 * 1024).contains(&size(&rotated)),
        "FILE.1 holds {} bytes",
        size(&rotated)
    );
    assert!(size(&file) < MIB, "FILE holds {} bytes", size(&file));
    for p in [&file, &rotated] {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }

    // Both files read back; together, in order, one packet per hop record.
    let (old, new) = (tshark(&rotated), tshark(&file));
    assert!(
        !old.is_empty() && !new.is_empty(),
        "both files hold packets"
    );
    let packets: Vec<&Packet> = old.iter().chain(&new).collect();
    let hops: Vec<_> = f.hops();
    assert_eq!(
        packets.len(),
        hops.len(),
        "{} + {} packets for {} hop records",
        old.len(),
        new.len(),
        hops.len()
    );
    for (h, p) in hops.iter().zip(&packets) {
        assert_eq!(p.iface, format!("{}/{}", h.netns, h.ifname), "{h:?} {p:?}");
        assert_eq!(p.udp_dport, h.dport, "{h:?} {p:?}");
    }
    // Ground truth: every datagram the frontends counted left the proxy's bridge once.
    let routed_out = packets
        .iter()
        .filter(|p| p.udp_dport == ROTATE_DPORT && p.iface.ends_with("/bridge0"))
        .filter(|p| p.comment.contains(" bridge0 egress"))
        .count() as u64;
    assert_eq!(routed_out, truth, "bridge0 egress packets in both files");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pcap_through_a_symlink_or_onto_an_existing_file_is_refused() {
    let Some(_serial) = root_or_skip("pcap_through_a_symlink_or_onto_an_existing_file_is_refused")
    else {
        return;
    };
    let lab = lab_up("h2-");
    let proxy = lab.ns(Role::Proxy);
    let dir = scratch("symlink");
    let precious = dir.join("precious");
    std::fs::write(&precious, b"keep me").unwrap();
    let link = dir.join("trace.pcapng");
    std::os::unix::fs::symlink(&precious, &link).unwrap();
    let existing = dir.join("existing.pcapng");
    std::fs::write(&existing, b"an earlier capture").unwrap();

    let cases = [
        (&link, &["--pcap-overwrite"][..], "symbolic link"),
        (&link, &[][..], "symbolic link"),
        (&existing, &[][..], "--pcap-overwrite"),
    ];
    for (path, extra, says) in cases {
        let mut args = vec!["--json", "--netns", &proxy, "--vip", "20.0.0.1", "--pcap"];
        args.push(path.to_str().unwrap());
        args.extend_from_slice(extra);
        let (status, stdout, stderr) = run_tracer(&args);
        assert!(!status.success(), "{args:?} ran: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one sentence for {args:?}: {stderr}");
        assert!(
            lines[0].starts_with("tracer: ") && lines[0].contains(says),
            "{args:?}: {stderr}"
        );
        assert!(
            !stdout.contains(r#""type":"ready""#),
            "no ready record: {stdout}"
        );
        // Nothing attached behind, nothing loaded left.
        assert_eq!(tc_state(&proxy), "", "tc state left in {proxy}");
        assert!(orphaned_programs().is_empty(), "programs left loaded");
    }
    assert_eq!(std::fs::read(&precious).unwrap(), b"keep me");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&existing).unwrap(), b"an earlier capture");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Entries of bpffs that are ours (a run's pin directory or an older pid-named pin).
fn our_pins() -> BTreeSet<String> {
    std::fs::read_dir(BPFFS)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("meridio-tracer-"))
        .collect()
}

fn all_of_bpffs() -> BTreeSet<String> {
    std::fs::read_dir(BPFFS)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The tracer that `unshare --fork` started: its only child, the pid namespace's pid 1.
fn inner_pid(unshare: i32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let children = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
            .unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            return pid.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "unshare {unshare} has no child");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pid of `pid` in its own pid namespace (the last of `NSpid`).
fn pid_in_own_namespace(pid: i32) -> i32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no NSpid for {pid}"))
}

/// The run directory of ours that `pid` holds open (its lock), by inode.
fn pin_dir_of(pid: i32) -> String {
    let held: BTreeSet<(u64, u64)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::metadata(fd.path()).ok())
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    let mine: Vec<String> = our_pins()
        .into_iter()
        .filter(|n| {
            std::fs::metadata(Path::new(BPFFS).join(n))
                .is_ok_and(|m| held.contains(&(m.dev(), m.ino())))
        })
        .collect();
    assert_eq!(
        mine.len(),
        1,
        "tracer {pid} holds one pin directory: {mine:?}"
    );
    mine[0].clone()
}

/// A tracer run as pid 1 of a pid namespace of its own (and a mount namespace whose
/// /run/netns shows the lab's namespaces): the tracer's pid on this machine too.
fn start_in_own_pids(prefix: &str, args: &[&str]) -> (Tracer, i32) {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let t = Tracer::start_command(&mut view_command(prefix, true, &full));
    let inner = inner_pid(t.pid());
    assert_eq!(
        pid_in_own_namespace(inner),
        1,
        "the tracer is its namespace's pid 1"
    );
    (t, inner)
}

/// Stops a tracer started by [`start_in_own_pids`]: unshare does not pass SIGINT on, so the
/// tracer gets it itself; unshare then exits with its status.
fn stop_in_own_pids(t: Tracer, inner: i32) -> Finished {
    // SAFETY: signalling a tracer this test started.
    unsafe { libc::kill(inner, libc::SIGINT) };
    let f = t.stop(libc::SIGINT);
    assert!(
        f.status.success(),
        "tracer exit {:?}: {}",
        f.status,
        f.stderr
    );
    f
}

/// The frontend whose counter of `port`'s replies moved: the next-hop the proxy took.
fn replied_through(lab: &Lab, port: u16) -> IpAddr {
    let used: Vec<Role> = [Role::FrontendA, Role::FrontendB]
        .into_iter()
        .filter(|fe| lab.frontend_counter(*fe, &format!("pins_{port}")).unwrap() > 0)
        .collect();
    assert_eq!(used.len(), 1, "one frontend carried port {port}: {used:?}");
    lab.frontend_conduit_ip(used[0], false)
}

#[test]
fn tracers_in_two_pid_namespaces_keep_their_own_pins() {
    let Some(_serial) = root_or_skip("tracers_in_two_pid_namespaces_keep_their_own_pins") else {
        return;
    };
    let lab = lab_up("h3-");
    let _listener = lab.listen().unwrap();
    let (both, after) = (35501u16, 35502u16);
    let target = lab.ns(Role::Target);
    for port in [both, after] {
        for fe in [Role::FrontendA, Role::FrontendB] {
            lab.add_frontend_counter(fe, &format!("pins_{port}"), IpAddr::V4(VIP4), port)
                .unwrap();
        }
        let requests = format!("ip daddr {VIP4} tcp dport 4000 tcp sport {port}");
        lab.add_counter(&target, &format!("req_{port}"), &requests)
            .unwrap();
    }
    let before = all_of_bpffs();
    assert!(
        our_pins().is_empty(),
        "a tracer's pins are in bpffs already: {:?}",
        our_pins()
    );

    // Different namespaces (proxy, target): before TCX a second attach to the same
    // interface would replace the first's netlink filter.
    let proxy = lab.ns(Role::Proxy);
    let (a, a_pid) = start_in_own_pids("h3-", &["--netns", &proxy, "--vip", "20.0.0.1"]);
    let a_dir = pin_dir_of(a_pid);
    let (b, b_pid) = start_in_own_pids(
        "h3-",
        &["--netns", &target, "--role", "target", "--vip", "20.0.0.1"],
    );
    let b_dir = pin_dir_of(b_pid);
    assert_ne!(a_dir, b_dir, "each run its own pin directory");
    assert_eq!(
        our_pins(),
        BTreeSet::from([a_dir.clone(), b_dir.clone()]),
        "the second start removed nothing of the first's"
    );

    // Both trace: one connection, seen by each in its own namespace.
    assert_eq!(
        lab.connect(IpAddr::V4(VIP4), both, b"pins\n").unwrap(),
        b"pins\n"
    );
    std::thread::sleep(Duration::from_millis(300));
    let fb = stop_in_own_pids(b, b_pid);
    assert_eq!(
        our_pins(),
        BTreeSet::from([a_dir.clone()]),
        "the second's stop removed its own directory only"
    );

    // The first still traces after the second has gone.
    assert_eq!(
        lab.connect(IpAddr::V4(VIP4), after, b"pins\n").unwrap(),
        b"pins\n"
    );
    std::thread::sleep(Duration::from_millis(300));
    let fa = stop_in_own_pids(a, a_pid);

    // The proxy tracer: both connections, their routed hops to the next-hop the
    // frontends' counters name.
    for port in [both, after] {
        let nexthop = replied_through(&lab, port);
        let routed: Vec<_> = fa
            .hops()
            .into_iter()
            .filter(|h| h.dport == port && h.routed)
            .collect();
        assert!(!routed.is_empty(), "the proxy tracer routed port {port}");
        for h in routed {
            assert_eq!(h.nexthop, Some(nexthop), "{h:?}");
        }
    }
    // The target tracer: every request of the first connection as the target's counter
    // has it, and nothing of the second.
    let requests = |port: u16| {
        fb.hops()
            .into_iter()
            .filter(|h| h.sport == port && h.dir == "ingress" && h.path == "ingress")
            .count() as u64
    };
    let want = lab.counter(&target, &format!("req_{both}")).unwrap();
    assert!(want > 0, "the target counted port {both}");
    assert_eq!(
        requests(both),
        want,
        "the target tracer's requests of {both}"
    );
    assert_eq!(requests(after), 0, "the target tracer had stopped");

    // Nothing of either is left in bpffs.
    assert!(our_pins().is_empty(), "left in bpffs: {:?}", our_pins());
    assert_eq!(all_of_bpffs(), before, "bpffs as it was");
}

/// Runs `cmd` to its end within `limit`, or kills it and fails: a hang is the defect.
fn output_within(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: killing the child this test started (the reader thread reaps it).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{cmd:?} hung for {limit:?}");
        }
    }
}

#[test]
fn a_fifo_under_run_netns_neither_hangs_discovery_nor_passes_for_a_namespace() {
    let Some(_serial) = root_or_skip("a_fifo_under_run_netns_neither_hangs_discovery") else {
        return;
    };
    // A private mount namespace whose /run/netns holds one FIFO (a blocking open of it
    // waits for a writer that never comes).
    let in_view = |args: &[&str]| {
        let script = "set -e; mkdir -p /run/netns; mount -t tmpfs tmpfs /run/netns; mkfifo /run/netns/h4-fifo; exec \"$@\"";
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
            .arg(support::TRACER)
            .args(args);
        output_within(&mut cmd, Duration::from_secs(30))
    };
    let out = in_view(&["discover", "--json"]);
    assert!(
        out.status.success(),
        "discover: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(!listed.contains("h4-fifo"), "the FIFO listed: {listed}");

    let out = in_view(&["--netns", "h4-fifo", "--vip", "20.0.0.1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "traced a FIFO: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one sentence: {stderr}");
    assert!(
        stderr.contains("/run/netns/h4-fifo is not a network namespace file"),
        "{stderr}"
    );
}
