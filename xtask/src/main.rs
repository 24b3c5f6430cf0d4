//! `cargo xtask`: developer tasks for the Meridio packet-path tracer. Owns the subcommands
//! and what each one runs in what order; the work itself lives in the `lab` crate (the
//! namespace lab, its echo server daemon), the `tracer-bench` crate (the measurements) and
//! in the modules:
//!
//! - `toolchain`: installing what building and testing need (nightly rust-src,
//!   bpf-linker, iproute2, nftables, tracefs);
//! - `deploy`: the offline validator of the deploy/ manifests;
//! - `deny`: the supply-chain check (cargo-deny, `deny.toml`);
//! - `fuzz`: the fuzz targets of `fuzz/`, built and run for a fixed time each;
//! - `dist`: the static tracer binary of `cargo xtask dist` and its container image;
//! - `demo`, `demo_nodes`, `bench`, `kernels`: those subcommands.

mod bench;
mod demo;
mod demo_nodes;
mod deny;
mod deploy;
mod dist;
mod fuzz;
mod kernels;
mod toolchain;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::toolchain::{
    ensure_ebpf_toolchain, ensure_host_tools, ensure_tracefs, LAB_TOOLS, NFQLB_TOOLS,
};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use lab::cmd::{self, is_root, run_visible};
use lab::{
    vni, Lab, LabNames, LabSpec, Lb, Node, Role, UNDERLAY_IF, VIP4, VIP6, VIP_PORT, VXLAN_PORT,
};

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Build, run, lab, demo, test and kernel-matrix tasks for the Meridio packet-path tracer"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the tracer (its build script builds the eBPF object with nightly).
    Build {
        /// Use the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Build, then run the tracer as root (through sudo -E when not root).
    Run {
        /// Use the release profile.
        #[arg(long)]
        release: bool,
        /// Arguments for the tracer, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Bring the namespace lab (the Meridio trench-a path) up or down.
    Lab {
        #[command(subcommand)]
        cmd: LabCmd,
    },
    /// Build the tracer, bring up the lab with Meridio's nfqlb and three targets, follow one
    /// connection per family (`nc <VIP> 4000 -p 35000`) through every pod, then show how
    /// `mconnect -nconn 400` spread over targets and next-hops beside mconnect's own report;
    /// tear down (with --nodes 2: one tracer per node, one connection, the streams merged).
    Demo {
        /// Use the release profile.
        #[arg(long)]
        release: bool,
        /// Netns name prefix of the demo's lab (default: none, the tutorial's names).
        #[arg(long, default_value = "")]
        prefix: String,
        /// 2: the two-node lab, one tracer per node, their streams merged.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
        nodes: u8,
    },
    /// One static x86_64 binary with the eBPF object embedded: target/dist/meridio-tracer.
    Dist,
    /// The container image (deploy/Containerfile: the dist binary alone, FROM scratch),
    /// built with podman or buildah (installed from Debian when no tool is found), or docker.
    Image,
    /// Install what tests need, then run the workspace tests (end-to-end ones need root).
    Test,
    /// The supply chain with cargo-deny (installed when missing): licences, bans and
    /// sources of both lock files, and advisories when their database can be fetched.
    Deny,
    /// Build the fuzz targets (fuzz/, with nightly and cargo-fuzz's flags) and run each for
    /// a fixed time from its corpus; a crash fails, naming the input it left.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only this target (repeatable; default all).
        #[arg(long = "target")]
        targets: Vec<String>,
    },
    /// Measure the tracer's cost in the lab (prefix `b-`): egress throughput against no
    /// tracer and tcpdump, on the proxy and on the whole path, per hook family, the time
    /// of each eBPF program per packet, the event pipeline, start/stop time and memory.
    /// Prints markdown tables and writes the same figures as JSON.
    Bench {
        /// Repetitions of each interleaved (baseline, variant) pair.
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Seconds per throughput measurement and per event-pipeline step.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Where to write the JSON figures (default: docs/bench/<UTC date and time>-<commit>.json,
        /// one data file per run: commit it with the change it measures).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run only these parts (comma list; default all).
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<tracer_bench::Part>,
    },
    /// The kernel matrix: boot Debian's 5.10, 6.1 and 6.12 kernels under virtme-ng (TCG),
    /// run the kernel-sensitive end-to-end tests inside, print what each kernel offers
    /// (TC attach mode, fib, drop and hash hooks) and which tests passed.
    Kernels {
        /// 5.10, 6.1, 6.12 or all (repeatable).
        #[arg(long = "kernel", default_value = "all")]
        kernels: Vec<String>,
        /// Run only the matrix tests whose name contains this.
        #[arg(long)]
        test: Option<String>,
        /// Minutes one machine may take, boot to power-off.
        #[arg(long, default_value_t = 40)]
        timeout_minutes: u64,
    },
}

/// The frontends' load balancer (`lab up --lb`).
#[derive(Clone, Copy, clap::ValueEnum)]
enum LbArg {
    /// A fixed nftables mark: every VIP connection goes to target 1.
    StandIn,
    /// Meridio's nfqlb (Maglev over NFQUEUE), built from its vendored source tarball.
    Nfqlb,
}

#[derive(Subcommand)]
enum LabCmd {
    /// Build the lab and leave an echo server on port 4000 in the target (with --lb nfqlb:
    /// mconnect on 4000 and an echo server on 4001 in every target).
    Up {
        /// Prepended to every netns name.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Proxy/target routing table for the IPv4 VIP.
        #[arg(long, default_value_t = 1)]
        table_v4: u32,
        /// Proxy/target routing table for the IPv6 VIP.
        #[arg(long, default_value_t = 2)]
        table_v6: u32,
        /// Other interface names than the tutorial's (bridge br-meridio, ports cdt-x.-aaaa,
        /// ..., target nsm-7): what reads the lab must go by structure.
        #[arg(long)]
        other_names: bool,
        /// A long-lived process in every namespace (so each is reachable through /proc, as
        /// pods' are), plus a second target whose namespace only a process holds.
        #[arg(long)]
        with_processes: bool,
        /// 2: proxy and target on node A, frontends and gateway on node B (a namespace
        /// each), the conduits over VXLAN between them.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
        nodes: u8,
        /// The frontends' load balancer: stand-in (an nft mark, every connection to the
        /// first target) or nfqlb (Meridio's, in a mount namespace of its own in each
        /// frontend; built from the vendored source tarballs, or $MERIDIO_VENDOR_DIR's, into
        /// target/vendor on first use).
        #[arg(long, value_enum, default_value = "stand-in")]
        lb: LbArg,
        /// Number of targets (netns <prefix>target-a-1 .. -N, each with its own hostname);
        /// use 3 with --lb nfqlb to see Maglev spread connections.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
        targets: u8,
    },
    /// Stop the lab's servers and processes and delete its namespaces.
    Down {
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Serve TCP echo on [::]:<port> in the current netns forever (the `lab up` daemon).
    #[command(hide = true)]
    Serve {
        #[arg(long, default_value_t = VIP_PORT)]
        port: u16,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Build { release } => build(release),
        Cmd::Run { release, args } => run(release, &args),
        Cmd::Lab {
            cmd:
                LabCmd::Up {
                    prefix,
                    table_v4,
                    table_v6,
                    other_names,
                    with_processes,
                    nodes,
                    lb,
                    targets,
                },
        } => lab_up(LabSpec {
            prefix,
            table_v4,
            table_v6,
            names: if other_names {
                LabNames::OTHER
            } else {
                LabNames::TUTORIAL
            },
            holders: with_processes,
            proc_only_target: with_processes,
            nodes,
            lb: match lb {
                LbArg::StandIn => Lb::StandIn,
                LbArg::Nfqlb => Lb::Nfqlb,
            },
            targets,
            ..LabSpec::default()
        }),
        Cmd::Lab {
            cmd: LabCmd::Down { prefix },
        } => lab_down(&prefix),
        Cmd::Lab {
            cmd: LabCmd::Serve { port },
        } => lab::echo::serve_forever(port),
        Cmd::Demo {
            release,
            prefix,
            nodes: 1,
        } => demo::demo(release, &prefix),
        Cmd::Demo {
            release, prefix, ..
        } => demo_nodes::demo(release, &prefix),
        Cmd::Dist => dist().map(|_| ()),
        Cmd::Image => image(),
        Cmd::Test => test(),
        Cmd::Deny => crate::deny::check(&workspace_root()),
        Cmd::Fuzz { seconds, targets } => crate::fuzz::fuzz(
            &workspace_root(),
            &target_dir(),
            crate::fuzz::Opts { seconds, targets },
        ),
        Cmd::Kernels {
            kernels,
            test,
            timeout_minutes,
        } => kernels::kernels(kernels::Opts {
            kernels,
            test,
            timeout: std::time::Duration::from_secs(60 * timeout_minutes),
        }),
        Cmd::Bench {
            reps,
            seconds,
            out,
            only,
        } => bench::bench(reps, seconds, out, only),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The workspace root: xtask sits one level below it.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Where cargo puts the tracer binary for this profile.
pub(crate) fn tracer_path(release: bool) -> PathBuf {
    target_dir()
        .join(if release { "release" } else { "debug" })
        .join("tracer")
}

pub(crate) fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!(
            "`cargo xtask {what}` needs root (network namespaces, nftables, eBPF); run it as root"
        );
    }
    Ok(())
}

/// Builds the tracer; its build.rs builds the eBPF object.
pub(crate) fn build(release: bool) -> Result<()> {
    ensure_ebpf_toolchain()?;
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root())
        .args(["build", "-p", "tracer"]);
    if release {
        c.arg("--release");
    }
    run_visible(c).context("building the tracer failed")
}

/// Builds, then replaces this process with the tracer (signals and exit code are then
/// the tracer's own).
fn run(release: bool, args: &[String]) -> Result<()> {
    build(release)?;
    let tracer = tracer_path(release);
    let err = if is_root() {
        Command::new(&tracer).args(args).exec()
    } else if let Some(sudo) = cmd::which("sudo") {
        Command::new(sudo).arg("-E").arg(&tracer).args(args).exec()
    } else {
        bail!("the tracer needs root and sudo is not installed; run `cargo xtask run` as root");
    };
    Err(err).with_context(|| format!("could not start {}", tracer.display()))
}

fn lab_up(spec: LabSpec) -> Result<()> {
    require_root("lab up")?;
    ensure_host_tools(LAB_TOOLS)?;
    if spec.lb == Lb::Nfqlb {
        ensure_host_tools(NFQLB_TOOLS)?;
    }
    let (prefix, table_v4, table_v6) = (spec.prefix.clone(), spec.table_v4, spec.table_v6);
    let started = std::time::Instant::now();
    let lab = Lab::up(spec).context("could not bring the lab up")?;
    let took = started.elapsed();
    let n = lab.names();
    let exe = std::env::current_exe().context("could not find the xtask executable")?;
    // If a daemon fails, `lab` is dropped and the namespaces go with it. With nfqlb every
    // target has one (on the echo port; mconnect holds 4000).
    let echo_port = lab.echo_port();
    let mut pids = Vec::new();
    for t in lab.targets() {
        if t.index == 1 || lab.spec.lb == Lb::Nfqlb {
            pids.push(lab::daemon::start(&prefix, &t.ns, &exe, echo_port)?);
        }
    }
    let pid = pids[0];
    let gw = lab.ns(Role::Gateway);
    let down = if prefix.is_empty() {
        String::new()
    } else {
        format!(" --prefix {prefix}")
    };
    println!("lab is up ({:.1} s):", took.as_secs_f64());
    println!(
        "  gateway    {gw}  ({}: 169.254.100.150/24, 100:100::150/64; ECMP routes to the VIPs)",
        n.gw_bridge
    );
    println!(
        "  frontends  {}, {}  (conduit 172.16.0.3 / fd00::3 and 172.16.0.5 / fd00::5)",
        lab.ns(Role::FrontendA),
        lab.ns(Role::FrontendB)
    );
    println!(
        "  proxy      {}  ({} 172.16.0.1 / fd00::1; VIP tables {table_v4} (v4), {table_v6} (v6))",
        lab.ns(Role::Proxy),
        n.px_bridge
    );
    if lab.spec.lb == Lb::Nfqlb {
        let queue = match lab.queue_rule() {
            Some(lab::QueueRule::Nft) => "nft `queue num 0-3`",
            _ => "iptables-legacy NFQUEUE --queue-balance 0:3 (this kernel has no nft queue)",
        };
        println!(
            "  nfqlb      flowlb pids {} and {} (queued by {queue}); fwmark 5000+i per target",
            lab.nfqlb_pid(Role::FrontendA).unwrap_or_default(),
            lab.nfqlb_pid(Role::FrontendB).unwrap_or_default(),
        );
        for (t, pid) in lab.targets().iter().zip(&pids) {
            println!(
                "  target {}   {}  ({} {} / {}, proxy port {}; VIPs; hostname {}; mconnect on {VIP_PORT}, echo on {echo_port} pid {pid}; fwmark {})",
                t.index, t.ns, t.interface, t.ipv4, t.ipv6, t.proxy_port, t.hostname, t.fwmark
            );
        }
    } else {
        println!("  target     {}  ({} 172.16.0.6 / fd00::6; VIPs {VIP4}, {VIP6}; echo server on port {VIP_PORT}, pid {pid})", lab.ns(Role::Target), n.tg_if);
        for t in lab.targets().iter().skip(1) {
            println!(
                "  target {}   {}  ({} {} / {}, proxy port {}; VIPs; no traffic with the stand-in lb)",
                t.index, t.ns, t.interface, t.ipv4, t.ipv6, t.proxy_port
            );
        }
    }
    if let Some(p) = lab.proc_only_target_pid() {
        println!("  target 2   /proc/{p}/ns/net only  ({} 172.16.0.7 / fd00::7; VIPs {VIP4}, {VIP6}; hostname {prefix}target-a-2)", n.tg2_if);
    }
    if lab.spec.nodes == 2 {
        println!(
            "  nodes      {} (proxy, target) and {} (frontends, gateway): {UNDERLAY_IF} {} and {}; \
             each conduit over VXLAN (VNI {} to {}, {} to {}, UDP {VXLAN_PORT})",
            lab.node_ns(Node::A),
            lab.node_ns(Node::B),
            Node::A.underlay_ip(),
            Node::B.underlay_ip(),
            vni(Role::FrontendA),
            lab.ns(Role::FrontendA),
            vni(Role::FrontendB),
            lab.ns(Role::FrontendB),
        );
    }
    if lab.holder_pid(Role::Proxy).is_some() {
        let pids: Vec<String> = Role::ALL
            .iter()
            .filter_map(|r| lab.holder_pid(*r))
            .map(|p| p.to_string())
            .collect();
        println!(
            "  processes  one `sleep infinity` per namespace: pids {}",
            pids.join(", ")
        );
    }
    // Different source ports: nc does not set SO_REUSEADDR, so a port in TIME_WAIT
    // cannot be bound again for 60 s.
    println!("connect with:");
    println!("  ip netns exec {gw} nc {VIP4} {VIP_PORT} -p 35000");
    println!("  ip netns exec {gw} nc {VIP6} {VIP_PORT} -p 35001");
    if lab.spec.lb == Lb::Nfqlb {
        let bin = lab::vendor::out_dir().join("bin");
        let mconnect = bin.join("mconnect");
        println!(
            "  ip netns exec {gw} {} -address {VIP4}:{VIP_PORT} -nconn 400 -timeout 2s -output json",
            mconnect.display()
        );
        println!(
            "  nsenter -t {} -m -n {} show --shm=tshm-stream-a   (frontend A's Maglev table)",
            lab.nfqlb_pid(Role::FrontendA).unwrap_or_default(),
            bin.join("nfqlb").display()
        );
    }
    println!("trace with:");
    println!(
        "  cargo xtask run -- --netns {} --vip {VIP4} --vip {VIP6}",
        lab.ns(Role::Proxy)
    );
    println!("find the Meridio namespaces with:");
    println!("  cargo xtask run -- discover");
    println!("tear down with:");
    println!("  cargo xtask lab down{down}");
    lab.keep();
    Ok(())
}

fn lab_down(prefix: &str) -> Result<()> {
    require_root("lab down")?;
    ensure_host_tools(LAB_TOOLS)?;
    lab::teardown(prefix)?;
    let name = if prefix.is_empty() { "default" } else { prefix };
    println!("lab `{name}` is down");
    Ok(())
}

/// Builds the static binary and says where it is.
fn dist() -> Result<PathBuf> {
    ensure_ebpf_toolchain()?;
    let (path, target) = crate::dist::build(&workspace_root(), &target_dir())?;
    let size = std::fs::metadata(&path)?.len();
    println!(
        "wrote {} ({target}, static, {:.1} MB, eBPF object embedded)",
        path.display(),
        size as f64 / 1e6
    );
    Ok(path)
}

/// Builds the dist binary, then the image with the container tool found (podman and runc
/// from Debian when there is none and we are root).
fn image() -> Result<()> {
    let dist = dist()?;
    let tool = crate::dist::ensure_container_tool()?;
    println!("building {} with {tool}", crate::dist::IMAGE);
    crate::dist::image(&workspace_root(), &dist, tool)?;
    println!("wrote image {} (with {tool})", crate::dist::IMAGE);
    Ok(())
}

fn test() -> Result<()> {
    if is_root() {
        ensure_host_tools(LAB_TOOLS)?;
        // Ground truth for what is loaded and attached, and a non-root run for the CLI test.
        ensure_host_tools(&[("bpftool", "bpftool"), ("setpriv", "util-linux")])?;
        // tests/image.rs builds the image and runs it with podman (runtime runc).
        ensure_host_tools(crate::dist::PODMAN_TOOLS)?;
        // Reads the --pcap file back (tests/pcap.rs); apt runs noninteractive, so
        // wireshark-common's question (non-root capture) takes its default, no.
        ensure_host_tools(&[("tshark", "tshark")])?;
        // Renders `tracer draw`'s pictures (tests/draw.rs).
        ensure_host_tools(&[("rsvg-convert", "librsvg2-bin")])?;
        // The SYN flood of tests/always_on.rs.
        ensure_host_tools(&[("hping3", "hping3")])?;
        // The Prometheus server of tests/prometheus.rs (the test runs it on a port of its own).
        ensure_host_tools(&[("prometheus", "prometheus")])?;
        ensure_tracefs()?;
    } else if std::env::var_os("CI").is_some() {
        bail!("end-to-end tests need root; run `cargo xtask test` as root in CI");
    } else {
        println!("not root: the end-to-end tests will skip themselves");
    }
    ensure_ebpf_toolchain()?;
    // tests/dist.rs runs the static binary from an empty root; tests/deploy.rs validates
    // the manifests offline.
    dist()?;
    crate::deploy::ensure_validator(&target_dir())?;
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root())
        // --no-fail-fast: every test file runs and every failure is listed, not only the first.
        .args([
            "test",
            "--workspace",
            "--no-fail-fast",
            "--",
            "--test-threads=1",
        ]);
    run_visible(c).context("the tests failed")
}
