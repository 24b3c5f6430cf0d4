//! Safety end-to-end tests: the tracer is passive (other tc filters keep their effect on
//! packets and marks), honest under overload (it says what it lost, traffic is unharmed,
//! and it catches up), clear on input the CLI cannot check, and bounded over a long run.
//! Ground truth is taken outside the tracer: nftables counters in the frontends and the
//! gateway, the echo a client gets back, `tc` and `/proc`.
//!
//! Labs use the netns prefixes `s1-` ... `s7-`. Run alone with
//! `cargo test -p tracer-tests --test safety -- --test-threads=1`; `SOAK_SECONDS` sets the soak
//! length (default 600, 0 skips it).
mod support;

use support::lab_up;

use std::{
    ffi::CString,
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream, UdpSocket},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::ffi::OsStrExt,
    },
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use lab::{Lab, Role, VIP4, VIP_PORT};
use support::{
    our_program_ids, root_or_skip, rss_kib, run_tracer, tc_state, PipedTracer, Tracer, TRACER,
};
use tracer::records::{Flow, Hop, Line, Lost, Ready, Record};

const VIP: &str = "20.0.0.1";
/// The gateway's address; the lab's replies (and the UDP flood) go there.
const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 100, 150);

/// One echo exchange from the gateway; Ok(()) only when the echo is exact.
fn echo(lab: &Lab, port: u16) -> Result<(), String> {
    let payload = format!("safety {port}\n");
    match lab.connect(IpAddr::V4(VIP4), port, payload.as_bytes()) {
        Ok(back) if back == payload.as_bytes() => Ok(()),
        Ok(back) => Err(format!(
            "port {port}: echo {:?} instead of {payload:?}",
            String::from_utf8_lossy(&back)
        )),
        Err(e) => Err(format!("{e:#}")),
    }
}

fn assert_times_out(lab: &Lab, port: u16, when: &str) {
    let e = echo(lab, port).expect_err(&format!("port {port} got through the drop filter {when}"));
    assert!(
        e.contains("within 3 s"),
        "port {port} {when}: expected a connect timeout, got: {e}"
    );
}

/// Egress (reply) counters on both frontends for `port`: ground truth of which frontend
/// the proxy sent the replies to.
fn arm_egress_truth(lab: &Lab, port: u16) {
    for fe in [Role::FrontendA, Role::FrontendB] {
        lab.add_frontend_counter(fe, &format!("eg_{port}"), IpAddr::V4(VIP4), port)
            .unwrap();
    }
}

fn egress_truth(lab: &Lab, port: u16) -> (u64, u64) {
    let n = |fe| lab.frontend_counter(fe, &format!("eg_{port}")).unwrap();
    (n(Role::FrontendA), n(Role::FrontendB))
}

fn summary<'a>(records: &'a [Line], port: u16) -> &'a Flow<'a> {
    records
        .iter()
        .find_map(|r| match &r.record {
            Record::Flow(f) if f.flow.vip.to_string() == VIP && f.flow.client_port == port => {
                Some(f)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no flow summary for port {port}"))
}

/// Hops of the TCP flow of one client port.
fn hops_of<'a>(records: &'a [Line], port: u16) -> Vec<&'a Hop<'a>> {
    records
        .iter()
        .filter_map(|r| match &r.record {
            Record::Hop(h) if h.proto == "tcp" => Some(h),
            _ => None,
        })
        .filter(|h| {
            (h.path == "ingress" && h.sport == port) || (h.path == "egress" && h.dport == port)
        })
        .collect()
}

/// Whether the ready record names a hook containing `hook` (a hook's text goes on with
/// how it attached, e.g. " (tcx)").
fn has_hook(ready: &Ready, hook: &str) -> bool {
    ready.hooks.iter().any(|h| h.contains(hook))
}

// ---- passive ----
// This kernel has neither the flower classifier nor the gact / skbedit actions, so the
// drop is a u32 filter with a mirred action, and the mark comes from a cls_bpf program.
// Each is checked with the tracer attached both ways it can attach its TC programs: TCX
// links, and netlink filters added to the same clsact qdisc as the others.

/// `<cmdline>` (split on spaces) in the proxy netns.
fn in_proxy(lab: &Lab, cmdline: &str) {
    lab.sh(Role::Proxy, &cmdline.split_whitespace().collect::<Vec<_>>())
        .unwrap();
}

/// Passive, part 1: a classic tc filter on the proxy's conduit ports (u32 matching the
/// replies to client ports 35984-35999, action mirred redirect to a device that is down,
/// which the kernel turns into a drop) keeps dropping them while the tracer is attached to
/// the same ports, other ports keep working, and the filter is still there, unchanged,
/// after the tracer exits. Ground truth: the client's connection times out or echoes;
/// `tc` output.
#[test]
fn a_tc_drop_filter_keeps_dropping_while_traced() {
    let Some(_serial) = root_or_skip("a_tc_drop_filter_keeps_dropping_while_traced") else {
        return;
    };
    let lab = lab_up("s1-");
    let _listener = lab.listen().unwrap();
    let proxy = lab.ns(Role::Proxy);
    in_proxy(&lab, "ip link add sink type veth peer name sink-peer");
    // Replies leave the proxy by a conduit port toward a frontend: there the client port is
    // the TCP destination port.
    for fe in [Role::FrontendA, Role::FrontendB] {
        let dev = lab.proxy_port_towards(fe);
        in_proxy(&lab, &format!("tc qdisc add dev {dev} clsact"));
        in_proxy(
            &lab,
            &format!(
                "tc filter add dev {dev} egress protocol ip pref 10 u32 match ip protocol 6 0xff \
                 match ip dport 35984 0xfff0 action mirred egress redirect dev sink"
            ),
        );
    }
    // The filter works without the tracer.
    assert_times_out(&lab, 35990, "without the tracer");
    echo(&lab, 35980).expect("a port outside the filter works without the tracer");
    let tc_before = tc_state(&proxy);
    assert!(
        tc_before.contains("mirred"),
        "filter not listed: {tc_before}"
    );

    for (mode, dropped, open) in [("tcx", 35991, 35981), ("netlink", 35993, 35983)] {
        let when = format!("with the tracer attached (--attach {mode})");
        let tracer = Tracer::start(&["--netns", &proxy, "--vip", VIP, "--attach", mode]);
        assert_times_out(&lab, dropped, &when);
        echo(&lab, open).unwrap_or_else(|e| panic!("port {open} {when}: {e}"));
        std::thread::sleep(Duration::from_millis(300));
        let f = tracer.stop(libc::SIGINT);
        assert!(
            f.status.success(),
            "tracer exit {:?} ({mode}): {}",
            f.status,
            f.stderr
        );
        let hooks = &f.readies()[0].hooks;
        for fe in [Role::FrontendA, Role::FrontendB] {
            let hook = format!("tc:{}/egress", lab.proxy_port_towards(fe));
            assert!(
                hooks.iter().any(|h| h.contains(&hook)),
                "the tracer was not on {hook}: {hooks:?}"
            );
        }
        assert!(
            !hops_of(&f.lines, open).is_empty(),
            "the working flow was traced ({mode})"
        );
        // The tracer took nothing away: the same qdiscs and filters.
        assert_eq!(
            tc_state(&proxy),
            tc_before,
            "tc state changed by the tracer (--attach {mode})"
        );
        // Informational (reported): the dropped flow as the tracer saw it.
        let seen = f
            .flows()
            .into_iter()
            .find(|s| s.flow.client_port == dropped)
            .map(|s| format!("egress {} drops {:?}", s.egress.packets, s.drops));
        eprintln!("--attach {mode}: dropped flow {dropped} as traced: {seen:?}");
    }
    assert_times_out(&lab, 35992, "after the tracer exited");
}

/// One eBPF instruction, as the kernel reads it (little endian).
const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    code as u64
        | ((dst | (src << 4)) as u64) << 8
        | (off as u16 as u64) << 16
        | (imm as u32 as u64) << 32
}

/// A tc classifier (direct action) that sets mark 0x77 on IPv4 packets from 20.0.0.1 and
/// lets every packet go on (TC_ACT_UNSPEC).
const MARK_PROGRAM: [u64; 9] = [
    insn(0xbf, 6, 1, 0, 0),           // r6 = r1 (the skb, for LD_ABS)
    insn(0x28, 0, 0, 0, 12),          // r0 = ethertype
    insn(0x55, 0, 0, 4, 0x0800),      // if r0 != IPv4 goto out
    insn(0x20, 0, 0, 0, 26),          // r0 = IPv4 source
    insn(0x55, 0, 0, 2, 0x1400_0001), // if r0 != 20.0.0.1 goto out
    insn(0xb7, 1, 0, 0, 0x77),        // r1 = 0x77
    insn(0x63, 6, 1, 8, 0),           // skb->mark = r1
    insn(0xb7, 0, 0, 0, -1),          // out: r0 = TC_ACT_UNSPEC
    insn(0x95, 0, 0, 0, 0),           // exit
];

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;

/// The bpf(2) system call with one command's attributes.
fn sys_bpf<T>(cmd: libc::c_long, attr: &T) -> libc::c_long {
    // SAFETY: `attr` is a bpf_attr prefix of the right layout for `cmd`, alive for the call.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>(),
        )
    }
}

/// Loads MARK_PROGRAM as a BPF_PROG_TYPE_SCHED_CLS program named `safety_mark`.
fn load_mark_program() -> OwnedFd {
    #[repr(C)]
    #[derive(Default)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
    }
    let mut log = vec![0u8; 1 << 16];
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"safety_mark");
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_SCHED_CLS,
        insn_cnt: MARK_PROGRAM.len() as u32,
        insns: MARK_PROGRAM.as_ptr() as u64,
        license: c"GPL".as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    let fd = sys_bpf(BPF_PROG_LOAD, &attr);
    assert!(
        fd >= 0,
        "the kernel refused the mark program: {}\n{}",
        std::io::Error::last_os_error(),
        String::from_utf8_lossy(&log).trim_end_matches('\0')
    );
    // SAFETY: a new fd that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// Attaches `prog` with `tc` as a classic clsact filter (cls_bpf, direct action) on `dev`
/// `dir` in the proxy netns. `tc` takes eBPF programs only from a bpffs pin: the pin lives
/// in a bpffs mounted in the private mount namespace of a helper thread (and of the `tc` it
/// runs), so nothing is mounted on the machine and the pin goes away with the thread; the
/// filter keeps the program.
fn tc_attach_bpf(lab: &Lab, dev: &str, dir: &str, prog: &OwnedFd) {
    let mnt = std::env::temp_dir().join(format!("safety-bpffs-{}", std::process::id()));
    std::fs::create_dir_all(&mnt).unwrap();
    let ns = lab.ns(Role::Proxy);
    let result = std::thread::scope(|s| {
        s.spawn(|| -> Result<String, String> {
            let os_err = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
            let target = CString::new(mnt.as_os_str().as_bytes()).unwrap();
            // SAFETY: plain syscalls on this (new) thread's own mount namespace.
            unsafe {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(os_err("unshare(CLONE_NEWNS)"));
                }
                let none = std::ptr::null();
                if libc::mount(
                    none,
                    c"/".as_ptr(),
                    none,
                    libc::MS_REC | libc::MS_PRIVATE,
                    none as _,
                ) != 0
                {
                    return Err(os_err("making / private"));
                }
                if libc::mount(
                    c"bpf".as_ptr(),
                    target.as_ptr(),
                    c"bpf".as_ptr(),
                    0,
                    none as _,
                ) != 0
                {
                    return Err(os_err("mounting bpffs"));
                }
            }
            let pin = mnt.join("prog");
            let pin_c = CString::new(pin.as_os_str().as_bytes()).unwrap();
            #[repr(C)]
            struct ObjPin {
                pathname: u64,
                bpf_fd: u32,
                file_flags: u32,
            }
            let attr = ObjPin {
                pathname: pin_c.as_ptr() as u64,
                bpf_fd: prog.as_raw_fd() as u32,
                file_flags: 0,
            };
            if sys_bpf(BPF_OBJ_PIN, &attr) != 0 {
                return Err(os_err("pinning the program"));
            }
            let pin = pin.display();
            let tc = format!(
                "netns exec {ns} tc filter add dev {dev} {dir} pref 10 bpf da object-pinned {pin}"
            );
            lab::cmd::run("ip", &tc.split_whitespace().collect::<Vec<_>>())
                .map_err(|e| format!("{e:#}"))
        })
        .join()
        .unwrap()
    });
    let _ = std::fs::remove_dir(&mnt);
    result.unwrap();
}

/// Passive, part 2: another TC program (a classic cls_bpf filter on the proxy.cond port's
/// ingress that marks the target's replies 0x77) keeps steering them, through a
/// `fwmark 0x77` policy rule, to frontend B only while the tracer is attached; the tracer
/// reads that mark on bridge0 and names frontend B as the next-hop. Ground truth: the
/// frontends' reply counters; `tc` output.
#[test]
fn a_tc_mark_program_keeps_steering_while_traced() {
    let Some(_serial) = root_or_skip("a_tc_mark_program_keeps_steering_while_traced") else {
        return;
    };
    let lab = lab_up("s2-");
    let _listener = lab.listen().unwrap();
    let proxy = lab.ns(Role::Proxy);
    let tg_port = lab.proxy_port_towards(Role::Target);
    let feb_ip = lab.frontend_conduit_ip(Role::FrontendB, false).to_string();
    in_proxy(&lab, &format!("tc qdisc add dev {tg_port} clsact"));
    tc_attach_bpf(&lab, tg_port, "ingress", &load_mark_program());
    // Before the VIP source rule (32765): marked replies use table 77, frontend B only.
    in_proxy(&lab, "ip rule add priority 100 fwmark 0x77 lookup 77");
    in_proxy(
        &lab,
        &format!("ip route add default via {feb_ip} dev bridge0 table 77"),
    );
    let all_to_b = |ports: &[u16], when: &str| {
        for &port in ports {
            let (a, b) = egress_truth(&lab, port);
            assert!(
                a == 0 && b > 0,
                "port {port} {when}: replies to frontend A {a}, B {b}; all should go to B"
            );
        }
    };
    // The steering works without the tracer (else the checks below would prove nothing).
    let untraced: Vec<u16> = (35900..35904).collect();
    for &port in &untraced {
        arm_egress_truth(&lab, port);
        echo(&lab, port).unwrap();
    }
    all_to_b(&untraced, "without the tracer");
    let tc_before = tc_state(&proxy);
    assert!(
        tc_before.contains("safety_mark"),
        "program not listed: {tc_before}"
    );

    for (mode, first_port) in [("tcx", 35910), ("netlink", 35920)] {
        let when = format!("with the tracer attached (--attach {mode})");
        let traced: Vec<u16> = (first_port..first_port + 8).collect();
        for &port in &traced {
            arm_egress_truth(&lab, port);
        }
        let tracer = Tracer::start(&["--netns", &proxy, "--vip", VIP, "--attach", mode]);
        for &port in &traced {
            echo(&lab, port).unwrap_or_else(|e| panic!("port {port} {when}: {e}"));
        }
        std::thread::sleep(Duration::from_millis(300));
        let f = tracer.stop(libc::SIGINT);
        assert!(
            f.status.success(),
            "tracer exit {:?} ({mode}): {}",
            f.status,
            f.stderr
        );
        all_to_b(&traced, &when);
        assert_eq!(
            tc_state(&proxy),
            tc_before,
            "tc state changed by the tracer (--attach {mode})"
        );

        for &port in &traced {
            let hops = hops_of(&f.lines, port);
            let at_bridge: Vec<_> = hops.iter().filter(|h| h.ifname == "bridge0").collect();
            assert!(
                at_bridge.len() >= 2,
                "port {port} ({mode}): no replies at bridge0 in {hops:#?}"
            );
            for h in at_bridge {
                assert_eq!(h.mark, 0x77, "port {port} ({mode}): mark at bridge0: {h:?}");
            }
            let s = summary(&f.lines, port);
            let (_, b) = egress_truth(&lab, port);
            let ctx = format!("port {port} ({mode}): {s:?}");
            assert_eq!(
                s.egress.nexthop.map(|n| n.to_string()).as_deref(),
                Some(feb_ip.as_str()),
                "{ctx}"
            );
            assert_eq!(
                s.egress.ifname.as_deref(),
                Some(lab.proxy_port_towards(Role::FrontendB)),
                "{ctx}"
            );
            assert_eq!(
                s.egress.packets, b,
                "routed packets vs packets frontend B got: {ctx}"
            );
        }
        // Informational (reported): the lookup the mark redirected, and the summary.
        let first = traced[0];
        let route = f
            .routes()
            .into_iter()
            .find(|r| r.flow.client_port == first && r.err == 0)
            .map(|r| format!("table {} rule {:?}", r.table, r.rule));
        let s = summary(&f.lines, first);
        eprintln!(
            "--attach {mode}: port {first}: fib lookup {route:?}; summary rule {:?} table {:?}",
            s.egress.rule, s.egress.table
        );
    }
}

// ---- overload ----

/// A UDP flood from the VIP (bound to 20.0.0.1 in the target netns, so it takes the VIP's
/// egress path through the proxy) to the gateway.
struct Flood {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<u64>>,
}

impl Flood {
    fn start(lab: &Lab, dport: u16, threads: usize) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let ns = lab.ns(Role::Target);
                let stop = stop.clone();
                std::thread::spawn(move || {
                    lab::netns::in_netns(&ns, || {
                        let s = UdpSocket::bind((VIP4, 0)).expect("bind 20.0.0.1");
                        s.connect((GATEWAY, dport)).unwrap();
                        let mut sent = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            if s.send(&[0u8; 64]).is_ok() {
                                sent += 1;
                            }
                        }
                        sent
                    })
                    .unwrap()
                })
            })
            .collect();
        Flood { stop, threads }
    }

    /// Stops the senders; returns the datagrams they sent.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.into_iter().map(|t| t.join().unwrap()).sum()
    }
}

/// An nftables counter in the gateway that counts (and drops, so no ICMP comes back) the
/// flood datagrams arriving there on `dport`.
fn arm_gateway_counter(lab: &Lab, name: &str, dport: u16) {
    let script = format!(
        "add table inet safety
add chain inet safety pre {{ type filter hook prerouting priority -300; policy accept; }}
add counter inet safety {name}
add rule inet safety pre ip saddr {VIP} udp dport {dport} counter name \"{name}\" drop
"
    );
    let ns = lab.ns(Role::Gateway);
    lab::cmd::run_with_stdin(
        "ip",
        &["netns", "exec", &ns, "nft", "-f", "-"],
        Some(&script),
    )
    .unwrap();
}

fn gateway_counter(lab: &Lab, name: &str) -> u64 {
    support::nft_packets(&lab.ns(Role::Gateway), "safety", name)
}

const FLOOD_TIME: Duration = Duration::from_secs(2);
const FLOOD_THREADS: usize = 2;

/// Floods for FLOOD_TIME while making echo connections (client ports from `first_port`)
/// every 250 ms; returns (datagrams sent, datagrams counted at the gateway, echo results).
fn flood_with_echoes(
    lab: &Lab,
    counter: &str,
    dport: u16,
    first_port: u16,
) -> (u64, u64, Vec<Result<(), String>>) {
    arm_gateway_counter(lab, counter, dport);
    let flood = Flood::start(lab, dport, FLOOD_THREADS);
    let t0 = Instant::now();
    let mut echoes = Vec::new();
    let mut port = first_port;
    while t0.elapsed() < FLOOD_TIME {
        echoes.push(echo(lab, port));
        port += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let sent = flood.finish();
    std::thread::sleep(Duration::from_millis(200));
    (sent, gateway_counter(lab, counter), echoes)
}

/// Waits up to `secs` for `cond`.
fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// What the test keeps of a JSON run under flood: every record except the flood's own
/// per-packet ones (hops, lookups, decisions), which are only counted.
#[derive(Default)]
struct Kept {
    records: Vec<Line<'static>>,
    flood_records: u64,
    /// Lines that do not read as typed records.
    not_json: Vec<String>,
}

fn keep_json(kept: &Arc<Mutex<Kept>>) -> impl FnMut(&str) + Send + 'static {
    let kept = kept.clone();
    move |line| {
        let mut k = kept.lock().unwrap();
        // The flood's per-packet records, told by their text as the soak counts them: the
        // reader must keep up with the flood, and a typed parse of each would slow it.
        if line.contains(r#""proto":"udp""#) && !line.contains(r#""type":"flow""#) {
            k.flood_records += 1;
            return;
        }
        match serde_json::from_str::<Line>(line) {
            Ok(v) => k.records.push(v),
            Err(_) => k.not_json.push(line.to_string()),
        }
    }
}

/// Honest under overload: while every VIP packet is traced and the tracer's stdout is not
/// read (so it blocks and its ring buffer fills), a UDP flood from the VIP makes it lose
/// records, and it says so (`lost` records with a count); the flood itself and TCP echoes
/// are not harmed (every datagram sent still arrives, echoes come back intact); once
/// reading resumes the tracer catches up and a new connection is traced completely again,
/// after the loss reports. Ground truth: the gateway's counter of flood datagrams against
/// the datagrams sent, with a run without the tracer alongside; the echoes; the frontends'
/// reply counters for the connection made afterwards.
#[test]
fn overload_is_reported_and_the_tracer_catches_up() {
    let Some(_serial) = root_or_skip("overload_is_reported_and_the_tracer_catches_up") else {
        return;
    };
    let lab = lab_up("s3-");
    let _listener = lab.listen().unwrap();
    let proxy = lab.ns(Role::Proxy);

    let (sent0, arrived0, echoes0) = flood_with_echoes(&lab, "untraced", 9000, 36000);
    eprintln!("without the tracer: {sent0} sent, {arrived0} at the gateway, echoes {echoes0:?}");
    assert!(arrived0 > 0, "the flood did not reach the gateway");

    let kept = Arc::new(Mutex::new(Kept::default()));
    let tracer = PipedTracer::start(
        // Every packet recorded: the flood must overrun the ring (the default budget would not).
        &[
            "--json",
            "--records",
            "all",
            "--netns",
            &proxy,
            "--vip",
            VIP,
        ],
        keep_json(&kept),
    );
    tracer.pause();
    let (sent1, arrived1, echoes1) = flood_with_echoes(&lab, "traced", 9001, 36050);
    eprintln!("with the tracer: {sent1} sent, {arrived1} at the gateway, echoes {echoes1:?}");
    tracer.resume();

    // Traffic is not harmed: the tracer drops nothing on the way (its programs only
    // observe), so the gateway gets as large a share of what was sent as without it. The
    // flood's *rate* is not compared with a bound: it swings 10x between runs with whatever
    // else loads this 2-core machine (seen: 30 000 to 357 000 datagrams in 2 s untraced),
    // and tracing every packet of it has a real per-packet cost (the traced rate was 41% to
    // 92% of the untraced one in our runs; printed below): a rate bound would test the
    // neighbours.
    let share = |arrived: u64, sent: u64| arrived as f64 / sent.max(1) as f64;
    assert!(
        share(arrived1, sent1) >= share(arrived0, sent0) - 0.01,
        "the gateway got {arrived1} of {sent1} datagrams with the tracer, {arrived0} of {sent0} without"
    );
    eprintln!(
        "flood rate with the tracer: {:.0}% of the rate without it",
        100.0 * arrived1 as f64 / arrived0.max(1) as f64
    );
    for e in echoes0.iter().chain(&echoes1) {
        if let Err(e) = e {
            // Under flood a SYN can be dropped by a full backlog (with or without the tracer):
            // a failed connection is not corruption, a wrong echo is.
            assert!(!e.contains("instead of"), "echo corrupted under flood: {e}");
        }
    }
    assert!(
        echoes1.iter().any(|e| e.is_ok()),
        "no echo got through during the traced flood: {echoes1:?}"
    );

    let lost_seen = || {
        kept.lock()
            .unwrap()
            .records
            .iter()
            .any(|r| matches!(r.record, Record::Lost(_)))
    };
    assert!(
        wait_for(30, lost_seen),
        "no `lost` record within 30 s of the flood; tracer stderr: {}",
        tracer.stderr()
    );
    // Caught up: a fresh connection is traced, after the loss reports.
    let port = 36200;
    arm_egress_truth(&lab, port);
    echo(&lab, port).expect("a connection after the flood");
    let traced = || !hops_of(&kept.lock().unwrap().records, port).is_empty();
    assert!(
        wait_for(30, traced),
        "the connection after the flood was not traced within 30 s"
    );
    std::thread::sleep(Duration::from_millis(500));
    let (status, stderr) = tracer.stop(libc::SIGINT, Duration::from_secs(60));
    assert!(status.success(), "tracer exit {status:?}: {stderr}");

    let k = kept.lock().unwrap();
    assert!(
        k.not_json.is_empty(),
        "lines that are not JSON: {:?}",
        k.not_json
    );
    let lost: Vec<&Lost> = k
        .records
        .iter()
        .filter_map(|r| match &r.record {
            Record::Lost(l) => Some(l),
            _ => None,
        })
        .collect();
    let counts: Vec<u64> = lost.iter().map(|r| r.count).collect();
    assert!(
        counts.iter().all(|&n| n > 0),
        "a lost record without loss: {lost:?}"
    );
    assert_eq!(
        counts.iter().sum::<u64>(),
        lost.last().unwrap().total,
        "the counts add up to the total: {lost:?}"
    );
    eprintln!(
        "lost records: {lost:?}; flood records printed: {}",
        k.flood_records
    );
    let pos = |pred: &dyn Fn(&Line) -> bool| k.records.iter().position(pred);
    let first_lost = pos(&|r| matches!(r.record, Record::Lost(_))).unwrap();
    let first_hop = pos(&|r| hops_of(std::slice::from_ref(r), port).len() == 1).unwrap();
    assert!(
        first_lost < first_hop,
        "the connection after the flood was printed before the loss report"
    );
    // Nothing of that connection is missing: every reply the frontends got was traced.
    let (a, b) = egress_truth(&lab, port);
    let s = summary(&k.records, port);
    assert_eq!(s.egress.packets, a + b, "after the flood: {s:?}");
}

/// The text view says `records lost` under the same overload.
#[test]
fn overload_in_text_mode_says_records_lost() {
    let Some(_serial) = root_or_skip("overload_in_text_mode_says_records_lost") else {
        return;
    };
    let lab = lab_up("s4-");
    let proxy = lab.ns(Role::Proxy);
    let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
    let w = warnings.clone();
    // Every packet recorded: the flood must overrun the ring (the default budget would not).
    let tracer = PipedTracer::start(
        &["--records", "all", "--netns", &proxy, "--vip", VIP],
        move |line| {
            if line.contains("lost") {
                w.lock().unwrap().push(line.to_string());
            }
        },
    );
    tracer.pause();
    arm_gateway_counter(&lab, "text", 9002);
    let flood = Flood::start(&lab, 9002, FLOOD_THREADS);
    std::thread::sleep(FLOOD_TIME);
    flood.finish();
    tracer.resume();
    let said = wait_for(30, || {
        warnings
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("records lost"))
    });
    let (status, stderr) = tracer.stop(libc::SIGINT, Duration::from_secs(60));
    assert!(said, "no `records lost` line; tracer stderr: {stderr}");
    assert!(status.success(), "tracer exit {status:?}: {stderr}");
    eprintln!("{:?}", warnings.lock().unwrap());
}

/// A connection to VIP port `SLOW_PORT` whose server answers `SLOW_REPLY` after the
/// client's FIN: the server (in the target netns) reads until EOF, waits, echoes, closes;
/// the client (in the gateway netns) sends, shuts down writing and reads the echo.
const SLOW_PORT: u16 = 4001;
const SLOW_REPLY: Duration = Duration::from_secs(1);

fn slow_connection(lab: &Lab) -> JoinHandle<Vec<u8>> {
    let listener = lab::netns::in_netns(&lab.ns(Role::Target), || {
        lab::echo::bind_dual_stack(SLOW_PORT)
    })
    .unwrap()
    .unwrap();
    std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        std::thread::sleep(SLOW_REPLY);
        c.write_all(&got).unwrap();
    });
    let gw = lab.ns(Role::Gateway);
    std::thread::spawn(move || {
        lab::netns::in_netns(&gw, || {
            let mut c = TcpStream::connect((VIP4, SLOW_PORT)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(b"slow\n").unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            let mut back = Vec::new();
            c.read_to_end(&mut back).unwrap();
            back
        })
        .unwrap()
    })
}

/// Honest under back-pressure: when the tracer's output stalls (stdout not read for 3 s)
/// while connections run, no record is lost (the ring buffer holds them), and once reading
/// resumes every connection is still summarised as one flow, with all its packets.
/// The stall falls inside one connection on purpose: the client's FIN is printed before
/// it, the server's answer (1 s later) comes during it, so the flow's 2 s linger after a
/// FIN runs out, by the clock, before its last packets are read. Ground truth: one flow
/// per connection; for the echo connections, the frontends' packet counters.
#[test]
fn a_stalled_output_does_not_split_flows() {
    let Some(_serial) = root_or_skip("a_stalled_output_does_not_split_flows") else {
        return;
    };
    let lab = lab_up("s7-");
    let _listener = lab.listen().unwrap();
    let proxy = lab.ns(Role::Proxy);
    let ports: Vec<u16> = (36500..36510).collect();
    for &port in &ports {
        arm_egress_truth(&lab, port);
        for fe in [Role::FrontendA, Role::FrontendB] {
            lab.add_frontend_ingress_counter(fe, &format!("in_{port}"), IpAddr::V4(VIP4), port)
                .unwrap();
        }
    }
    let kept = Arc::new(Mutex::new(Kept::default()));
    let tracer = PipedTracer::start(
        &["--json", "--netns", &proxy, "--vip", VIP],
        keep_json(&kept),
    );
    let slow = slow_connection(&lab);
    let fin_printed = wait_for(10, || {
        kept.lock().unwrap().records.iter().any(|r| {
            matches!(&r.record, Record::Hop(h)
                if h.dport == SLOW_PORT && h.tcp_flags.contains("FIN"))
        })
    });
    assert!(fin_printed, "the slow connection's FIN was not traced");
    tracer.pause();
    // These print far more than a pipe holds: the tracer blocks on its stdout.
    for &port in &ports {
        echo(&lab, port).unwrap();
    }
    assert_eq!(slow.join().unwrap(), b"slow\n");
    std::thread::sleep(Duration::from_secs(3));
    tracer.resume();
    std::thread::sleep(Duration::from_secs(4));
    let (status, stderr) = tracer.stop(libc::SIGINT, Duration::from_secs(30));
    assert!(status.success(), "tracer exit {status:?}: {stderr}");

    let k = kept.lock().unwrap();
    let lost: Vec<_> = k
        .records
        .iter()
        .filter(|r| matches!(r.record, Record::Lost(_)))
        .collect();
    assert!(lost.is_empty(), "records lost: {lost:?}");
    let summaries = |pred: &dyn Fn(&Flow) -> bool| -> Vec<(u32, u64, u64)> {
        k.records
            .iter()
            .filter_map(|r| match &r.record {
                Record::Flow(f) if pred(f) => Some(f),
                _ => None,
            })
            .map(|r| (r.flow_id, r.ingress.packets, r.egress.packets))
            .collect()
    };
    for &port in &ports {
        let s = summaries(&|r| r.flow.vip_port == VIP_PORT && r.flow.client_port == port);
        let truth = |dir: &str| -> u64 {
            [Role::FrontendA, Role::FrontendB]
                .iter()
                .map(|fe| lab.frontend_counter(*fe, &format!("{dir}_{port}")).unwrap())
                .sum()
        };
        let (inp, eg) = (truth("in"), truth("eg"));
        assert_eq!(
            s.len(),
            1,
            "port {port}: summaries (flow id, ingress, egress packets) {s:?}; truth {inp} in, {eg} out"
        );
        assert_eq!((s[0].1, s[0].2), (inp, eg), "port {port}");
    }
    let slow = summaries(&|r| r.flow.vip_port == SLOW_PORT);
    assert_eq!(
        slow.len(),
        1,
        "the slow connection's summaries (flow id, ingress, egress packets): {slow:?}"
    );
}

// ---- input the CLI cannot check ----

/// A pid whose network namespace cannot be opened (a zombie: its namespaces are released
/// at exit, /proc/<pid>/ns/net is gone) gets one clear sentence, a failure exit and nothing
/// loaded. (A kernel thread such as kthreadd is no such pid: it lives in the host netns.)
#[test]
fn a_pid_without_netns_gets_one_sentence() {
    let Some(_serial) = root_or_skip("a_pid_without_netns_gets_one_sentence") else {
        return;
    };
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    let zombie = wait_for(5, || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    });
    assert!(zombie, "pid {pid} did not become a zombie");
    let before = our_program_ids();
    let (status, stdout, stderr) = run_tracer(&["--netns", &pid.to_string(), "--vip", VIP]);
    child.wait().unwrap();
    assert!(!status.success(), "a zombie's netns was accepted");
    assert!(stdout.is_empty(), "printed {stdout:?}");
    assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr}");
    assert!(
        stderr.contains(&format!("process {pid} has no network namespace")),
        "{stderr}"
    );
    let after = our_program_ids();
    assert!(
        after.iter().all(|id| before.contains(id)),
        "programs loaded: {after:?}"
    );
}

/// tracefs missing, simulated for the tracer alone: it runs in a private mount namespace
/// where tracefs (and debugfs) are unmounted, so the machine's mounts are untouched.
/// 1. With `mount` at hand the tracer mounts tracefs itself (in that namespace), says so,
///    and attaches the fib hooks (raw tracepoints, which need no tracefs) and kfree_skb.
/// 2. Without a `mount` program (PATH leads nowhere) it cannot: the raw fib hooks still
///    attach, kfree_skb (a perf tracepoint, its offsets from tracefs) is refused with the
///    reason; with `--fib-hook tracepoint` the two perf fib tracepoints are refused with
///    the reason too. TC tracing still works, and the exit is clean.
///
/// (Hiding tracefs from the whole machine is not simulated: concurrent tracers and tests
/// need it.)
#[test]
fn without_tracefs_fib_hooks_are_refused_and_tc_still_traces() {
    let Some(_serial) = root_or_skip("without_tracefs_fib_hooks_are_refused_and_tc_still_traces")
    else {
        return;
    };
    let lab = lab_up("s5-");
    let _listener = lab.listen().unwrap();
    let proxy = lab.ns(Role::Proxy);
    // The machine's mounts under /sys/kernel (netns mounts of other labs come and go).
    let host_mounts = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(" /sys/kernel"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mounts_before = host_mounts();
    // `sh -c SCRIPT sh PATH TRACER ARGS...`: unmount, check, exec the tracer with PATH.
    let script = r#"umount -l /sys/kernel/tracing 2>/dev/null
umount -l /sys/kernel/debug 2>/dev/null
if [ -d /sys/kernel/tracing/events ] || [ -d /sys/kernel/debug/tracing/events ]; then
  echo "tracefs is still there" >&2; exit 97
fi
p=$1; shift; PATH=$p exec "$@""#;
    let run = |path: &str, port: u16, extra: &[&str]| {
        let kept = Arc::new(Mutex::new(Kept::default()));
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .args([path, TRACER, "--json", "--netns", &proxy, "--vip", VIP])
        .args(extra);
        let tracer = PipedTracer::start_command(&mut cmd, keep_json(&kept));
        echo(&lab, port).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let (status, stderr) = tracer.stop(libc::SIGINT, Duration::from_secs(10));
        assert!(status.success(), "tracer exit {status:?}: {stderr}");
        let records = std::mem::take(&mut kept.lock().unwrap().records);
        assert!(
            !hops_of(&records, port).is_empty(),
            "nothing traced (PATH={path}): {stderr}"
        );
        let ready = records
            .iter()
            .find_map(|r| match &r.record {
                Record::Ready(r) => Some(r.clone()),
                _ => None,
            })
            .unwrap();
        (ready, stderr)
    };

    let (ready, stderr) = run("/usr/sbin:/usr/bin:/sbin:/bin", 36300, &[]);
    assert!(stderr.contains("mounted tracefs"), "{stderr}");
    assert!(
        has_hook(&ready, "raw_tracepoint:fib_table_lookup")
            && has_hook(&ready, "raw_tracepoint:fib6_table_lookup")
            && has_hook(&ready, "tracepoint:skb/kfree_skb"),
        "{ready:?}"
    );

    let (ready, stderr) = run("/nonexistent", 36301, &[]);
    assert!(
        has_hook(&ready, "raw_tracepoint:fib_table_lookup")
            && has_hook(&ready, "raw_tracepoint:fib6_table_lookup"),
        "the raw fib hooks need no tracefs: {ready:?}\n{stderr}"
    );
    let drop = ready
        .refused
        .iter()
        .find(|r| r.hook == "tracepoint:skb/kfree_skb")
        .unwrap_or_else(|| panic!("kfree_skb not refused: {ready:?}\n{stderr}"));
    assert!(
        drop.reason.contains("tracefs"),
        "reason names tracefs: {drop:?}"
    );

    let (ready, stderr) = run("/nonexistent", 36302, &["--fib-hook", "tracepoint"]);
    for tp in [
        "tracepoint:fib/fib_table_lookup",
        "tracepoint:fib6/fib6_table_lookup",
    ] {
        let r = ready
            .refused
            .iter()
            .find(|r| r.hook == tp)
            .unwrap_or_else(|| panic!("{tp} not refused: {ready:?}\n{stderr}"));
        assert!(r.reason.contains("tracefs"), "reason names tracefs: {r:?}");
    }
    assert!(has_hook(&ready, "tc:bridge0/egress"), "{ready:?}");
    assert_eq!(host_mounts(), mounts_before, "the machine's mounts changed");
}

// ---- bounded ----

/// Extra gateway addresses the soak's clients use, so that client (address, port) pairs
/// do not repeat within a 10-minute run: a flow table keyed on them that never forgets
/// would otherwise stop growing when the ports wrap, and hide the growth.
const SOAK_CLIENTS: [Ipv4Addr; 8] = [
    Ipv4Addr::new(169, 254, 100, 160),
    Ipv4Addr::new(169, 254, 100, 161),
    Ipv4Addr::new(169, 254, 100, 162),
    Ipv4Addr::new(169, 254, 100, 163),
    Ipv4Addr::new(169, 254, 100, 164),
    Ipv4Addr::new(169, 254, 100, 165),
    Ipv4Addr::new(169, 254, 100, 166),
    Ipv4Addr::new(169, 254, 100, 167),
];
const SOAK_PORTS: std::ops::Range<u16> = 36400..64400;
const SOAK_RATE: u64 = 200;

/// Connection `i` of the soak: its client address and port; pairs repeat after 224 000
/// connections (over 18 minutes at 200/s), and a port is reused only after 140 s on the
/// same address, well after its TIME_WAIT.
fn soak_client(i: u64) -> (Ipv4Addr, u16) {
    let n = SOAK_PORTS.len() as u64;
    let port = SOAK_PORTS.start + (i % n) as u16;
    let addr = SOAK_CLIENTS[((i / n) % SOAK_CLIENTS.len() as u64) as usize];
    (addr, port)
}

/// One echo exchange from (`src`, `port`) to the VIP; runs in the gateway netns.
fn exchange_from(src: Ipv4Addr, port: u16) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::from((src, port)).into())?;
    s.connect_timeout(
        &SocketAddr::from((VIP4, VIP_PORT)).into(),
        Duration::from_secs(3),
    )?;
    let mut stream: TcpStream = s.into();
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let payload = format!("soak {src} {port}\n");
    stream.write_all(payload.as_bytes())?;
    stream.shutdown(Shutdown::Write)?;
    let mut back = Vec::new();
    stream.read_to_end(&mut back)?;
    if back != payload.as_bytes() {
        return Err(std::io::Error::other("wrong echo"));
    }
    Ok(())
}

/// What the soak counts in the tracer's output without keeping it.
#[derive(Default, Debug)]
struct SoakCount {
    hops: u64,
    /// Flow summaries by client address and port: (flow id, ingress, egress packets).
    flows: std::collections::HashMap<String, Vec<(u32, u64, u64)>>,
    lost: Vec<String>,
    other: u64,
}

impl SoakCount {
    fn flow(&mut self, line: &str) {
        let v: Line = serde_json::from_str(line).expect("a flow summary is a typed record");
        let Record::Flow(v) = v.record else {
            panic!("not a flow summary: {line}")
        };
        let key = format!("{}:{}", v.flow.client, v.flow.client_port);
        let seen = (v.flow_id, v.ingress.packets, v.egress.packets);
        self.flows.entry(key).or_default().push(seen);
    }
}

/// Bounded: a soak (`SOAK_SECONDS`, default 600) of 200 short TCP connections per second,
/// every VIP flow traced in JSON, keeps the tracer's memory flat and loses nothing: no
/// `lost` record, every connection succeeds and is summarised exactly once. Ground truth:
/// VmRSS of the tracer process, sampled every 10 s; the connections made.
///
/// The bound: RSS in the last third of the run may not exceed 1.2 x the RSS at the end of
/// the first third + 2 MiB. The first third covers start-up and warm-up (runtime, kernel
/// state snapshots, buffers and the flow table reaching their working size with flow
/// expiry; one step of ~11 MiB in the first 100 s was seen). After that a bounded tracer
/// only wobbles (allocator fragmentation), which 20% + 2 MiB covers. A flow table that
/// keeps every flow grows by a few hundred bytes per connection (measured before expiry
/// existed: ~70 KiB/s at this rate plus the hash table's doublings, 36 -> 103 MiB over
/// 600 s), far past the bound. Runs much shorter than 10 minutes tell little: warm-up
/// steps are as large as minutes of such growth.
#[test]
fn soak_keeps_memory_flat_and_loses_nothing() {
    let secs: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .map(|s| s.parse().expect("SOAK_SECONDS must be a number of seconds"))
        .unwrap_or(600);
    if secs == 0 {
        eprintln!("SKIPPED soak_keeps_memory_flat_and_loses_nothing: SOAK_SECONDS=0");
        return;
    }
    let Some(_serial) = root_or_skip("soak_keeps_memory_flat_and_loses_nothing") else {
        return;
    };
    let lab = lab_up("s6-");
    let _listener = lab.listen().unwrap();
    let proxy = lab.ns(Role::Proxy);
    for a in SOAK_CLIENTS {
        lab.sh(
            Role::Gateway,
            &["ip", "addr", "add", &format!("{a}/24"), "dev", "vlan0"],
        )
        .unwrap();
    }

    let count = Arc::new(Mutex::new(SoakCount::default()));
    let c = count.clone();
    let tracer = PipedTracer::start(&["--json", "--netns", &proxy, "--vip", VIP], move |line| {
        let mut c = c.lock().unwrap();
        if line.contains(r#""type":"hop""#) {
            c.hops += 1;
        } else if line.contains(r#""type":"lost""#) {
            c.lost.push(line.to_string());
        } else if line.contains(r#""type":"flow""#) {
            c.flow(line);
        } else {
            c.other += 1;
        }
    });

    // Two paced clients, each at half the rate, so one slow exchange does not stall the rate.
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<JoinHandle<()>> = (0..2)
        .map(|_| {
            let (next, failures, ns) = (next.clone(), failures.clone(), lab.ns(Role::Gateway));
            std::thread::spawn(move || {
                lab::netns::enter(&ns).unwrap();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let due = start + Duration::from_micros(i * 1_000_000 / SOAK_RATE);
                    if due >= end {
                        break;
                    }
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let (addr, port) = soak_client(i);
                    if let Err(e) = exchange_from(addr, port) {
                        failures.lock().unwrap().push(format!("{addr}:{port}: {e}"));
                    }
                }
            })
        })
        .collect();

    let every = Duration::from_secs((secs / 6).clamp(1, 10));
    let mut samples: Vec<(f64, u64)> = vec![(0.0, rss_kib(tracer.pid()))];
    while Instant::now() < end {
        std::thread::sleep(every.min(end.saturating_duration_since(Instant::now())));
        samples.push((start.elapsed().as_secs_f64(), rss_kib(tracer.pid())));
    }
    for c in clients {
        c.join().unwrap();
    }
    let made = next.load(Ordering::Relaxed).min(secs * SOAK_RATE);
    std::thread::sleep(Duration::from_secs(1));
    let (status, stderr) = tracer.stop(libc::SIGINT, Duration::from_secs(120));
    assert!(status.success(), "tracer exit {status:?}: {stderr}");

    let c = count.lock().unwrap();
    let failures = failures.lock().unwrap();
    eprintln!(
        "soak {secs} s: {made} connections, {} failed; tracer printed {} hops, {} flow summaries, {} lost records\n  RSS (s, KiB): {samples:?}",
        failures.len(),
        c.hops,
        c.flows.values().map(Vec::len).sum::<usize>(),
        c.lost.len()
    );
    assert!(
        c.lost.is_empty(),
        "records lost at {SOAK_RATE}/s: {:?}",
        c.lost
    );
    assert!(
        failures.is_empty(),
        "connections failed while traced: {:?}",
        &failures[..failures.len().min(10)]
    );
    let split: Vec<_> = c.flows.iter().filter(|(_, f)| f.len() > 1).collect();
    assert!(
        split.is_empty(),
        "connections summarised as more than one flow (flow id, ingress, egress packets): {:?}",
        &split[..split.len().min(5)]
    );
    let strangers: Vec<_> = c
        .flows
        .keys()
        .filter(|k| !SOAK_CLIENTS.iter().any(|a| k.starts_with(&format!("{a}:"))))
        .collect();
    assert!(
        strangers.is_empty(),
        "flows of no soak client: {strangers:?}"
    );
    assert_eq!(
        c.flows.len() as u64,
        made,
        "one flow summary per connection"
    );

    let third = secs as f64 / 3.0;
    let reference = samples
        .iter()
        .rfind(|(t, _)| *t <= third + 0.5)
        .map(|s| s.1)
        .expect("a sample in the first third");
    let limit = reference * 12 / 10 + 2048;
    let late_max = samples
        .iter()
        .filter(|(t, _)| *t >= 2.0 * third)
        .map(|s| s.1)
        .max()
        .expect("a sample in the last third");
    assert!(
        late_max <= limit,
        "tracer RSS grew: {late_max} KiB in the last third, limit {limit} KiB (1.2 x {reference} KiB + 2 MiB): {samples:?}"
    );
}
