//! What the tracer costs on the Meridio path, measured in the `b-` lab (`cargo xtask bench`,
//! which checks root, installs the tools and builds the release tracer before it calls
//! [`bench`]). Owns the run's order: lab up, interleaved throughput slots (baseline,
//! variant, baseline, variant, ...), the per-program attribution, the event-pipeline rate
//! ladder, then the report. Traffic, process handling, arithmetic, the attribution, the
//! ladder and the report live in the submodules.

mod attribution;
mod machine;
mod observer;
mod pipeline;
mod report;
mod startup;
mod stats;
mod traffic;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lab::{Lab, LabSpec, Role, VIP4, VIP6};

use observer::{Exited, MapInfo, Observer, ReadyOn};
use traffic::{measure, Load, Sinks};

/// Netns prefix of the benchmark's lab: other prefixes belong to other people's labs.
const PREFIX: &str = "b-";
/// A VIP nothing in the lab sends to or from.
const NO_MATCH_VIP: &str = "20.0.0.99";
/// A client port the benchmark's traffic never uses (it uses 5201/5202 and 41000).
const OTHER_PORT: u16 = 35000;
/// TCP slow start and thread start-up are outside the measured window.
const WARMUP: Duration = Duration::from_millis(500);
/// The tracer has worked off its ring once stdout is quiet this long.
const SETTLE_QUIET: Duration = Duration::from_millis(300);
const SETTLE_MAX: Duration = Duration::from_secs(10);

pub struct Opts {
    pub reps: usize,
    pub seconds: f64,
    pub out: PathBuf,
    /// The parts to run (all when empty).
    pub only: Vec<Part>,
    /// The release tracer binary, built.
    pub tracer: PathBuf,
    /// The workspace (its commit goes into the report).
    pub workspace: PathBuf,
}

/// The parts of the bench, for `--only`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Throughput with the tracer on the proxy (`--netns`) and with tcpdump.
    Observers,
    /// Throughput with the tracer on the whole path (no `--netns`).
    WholePath,
    /// Throughput with each hook family alone (`--hooks`).
    Hooks,
    /// Per-program run time and count (`kernel.bpf_stats_enabled`) over a fixed flood.
    Attribution,
    /// The event pipeline's rate ladder.
    Pipeline,
    /// Start-up of a whole path of 20 namespaces (five labs).
    Startup,
}

impl Part {
    /// The part's `--only` name.
    pub fn name(self) -> &'static str {
        match self {
            Part::Observers => "observers",
            Part::WholePath => "whole-path",
            Part::Hooks => "hooks",
            Part::Attribution => "attribution",
            Part::Pipeline => "pipeline",
            Part::Startup => "startup",
        }
    }
}

/// The DaemonSet's arguments besides `--json` (deploy/daemonset.yaml; the node name and the
/// metrics port are the bench's).
pub const DAEMONSET_ARGS: [&str; 2] = ["--node=bench-node", "--metrics=127.0.0.1:19465"];

/// What observes the path during a throughput slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Baseline,
    NoMatch,
    OtherFlow,
    AllVip,
    Tcpdump,
    WholeNoMatch,
    WholeOtherFlow,
    /// The DaemonSet's arguments: whole path, discovery's VIPs, the default record budget.
    DaemonSet,
    /// tcpdump on every interface of the whole path the tracer attaches to.
    TcpdumpWholePath,
    HooksTc,
    HooksTcFib,
    HooksTcDrop,
    HooksTcHash,
}

/// The variants compared with the baseline, in their first repetition's order.
pub const VARIANTS: [Variant; 12] = [
    Variant::NoMatch,
    Variant::OtherFlow,
    Variant::AllVip,
    Variant::Tcpdump,
    Variant::WholeNoMatch,
    Variant::WholeOtherFlow,
    Variant::DaemonSet,
    Variant::TcpdumpWholePath,
    Variant::HooksTc,
    Variant::HooksTcFib,
    Variant::HooksTcDrop,
    Variant::HooksTcHash,
];

/// Where a tracer variant runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `--netns` the proxy.
    Proxy,
    /// No `--netns`: every namespace of the lab that carries the VIP, found by discovery.
    WholePath,
    /// No `--netns`, with four more labs beside the bench's (the start-up part).
    ManyLabs,
}

impl Variant {
    pub fn key(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline",
            Variant::NoMatch => "no_match",
            Variant::OtherFlow => "other_flow",
            Variant::AllVip => "all_vip",
            Variant::Tcpdump => "tcpdump",
            Variant::WholeNoMatch => "whole_path_no_match",
            Variant::WholeOtherFlow => "whole_path_other_flow",
            Variant::DaemonSet => "daemonset",
            Variant::TcpdumpWholePath => "tcpdump_whole_path",
            Variant::HooksTc => "hooks_tc",
            Variant::HooksTcFib => "hooks_tc_fib",
            Variant::HooksTcDrop => "hooks_tc_drop",
            Variant::HooksTcHash => "hooks_tc_hash",
        }
    }

    pub fn label(self) -> String {
        match self {
            Variant::Baseline => "no tracer (baseline)".into(),
            Variant::NoMatch => format!("tracer, VIP matches nothing (`--vip {NO_MATCH_VIP}`)"),
            Variant::OtherFlow => {
                format!("tracer, follows another flow (`--vip {VIP4} --port {OTHER_PORT}`)")
            }
            Variant::AllVip => {
                format!("tracer, every VIP packet a record (`--vip {VIP4} --records all`)")
            }
            Variant::Tcpdump => "tcpdump on the same 4 interfaces (`host 20.0.0.1`)".into(),
            Variant::TcpdumpWholePath => {
                "tcpdump on the whole path's 9 interfaces, one process each (`host 20.0.0.1`)".into()
            }
            Variant::WholeNoMatch => format!(
                "tracer, whole path, matching nothing (no `--netns`, `--vip {VIP6}`: IPv4 traffic)"
            ),
            Variant::WholeOtherFlow => format!(
                "tracer, whole path, follows another flow (no `--netns`, `--vip {VIP4} --port {OTHER_PORT}`)"
            ),
            Variant::DaemonSet => format!(
                "tracer, whole path, the DaemonSet's arguments (no `--vip`, `{}`): the default record budget",
                DAEMONSET_ARGS.join(" ")
            ),
            Variant::HooksTc
            | Variant::HooksTcFib
            | Variant::HooksTcDrop
            | Variant::HooksTcHash => format!(
                "tracer, VIP matches nothing, `--hooks {}`",
                self.hooks().unwrap_or_default()
            ),
        }
    }

    /// The part of the bench that measures this variant.
    pub fn part(self) -> Part {
        match self {
            Variant::Baseline
            | Variant::NoMatch
            | Variant::OtherFlow
            | Variant::AllVip
            | Variant::Tcpdump => Part::Observers,
            Variant::WholeNoMatch
            | Variant::WholeOtherFlow
            | Variant::DaemonSet
            | Variant::TcpdumpWholePath => Part::WholePath,
            Variant::HooksTc
            | Variant::HooksTcFib
            | Variant::HooksTcDrop
            | Variant::HooksTcHash => Part::Hooks,
        }
    }

    /// The `--hooks` list of a hook-family variant.
    pub fn hooks(self) -> Option<&'static str> {
        Some(match self {
            Variant::HooksTc => "tc",
            Variant::HooksTcFib => "tc,fib",
            Variant::HooksTcDrop => "tc,drop",
            Variant::HooksTcHash => "tc,hash",
            _ => return None,
        })
    }

    /// How a tracer variant runs: where, and its arguments (besides --json, --netns).
    pub fn tracer(self) -> Option<(Mode, Vec<String>)> {
        let (vip4, vip6, port) = (VIP4.to_string(), VIP6.to_string(), OTHER_PORT.to_string());
        let args: Vec<&str> = match self {
            Variant::Baseline | Variant::Tcpdump | Variant::TcpdumpWholePath => return None,
            Variant::NoMatch => vec!["--vip", NO_MATCH_VIP],
            Variant::OtherFlow => vec!["--vip", &vip4, "--port", &port],
            Variant::AllVip => vec!["--vip", &vip4, "--records", "all"],
            // The lab's IPv6 VIP: every namespace of the path carries it (so discovery
            // finds them all) and the bench's traffic is IPv4 (so nothing matches); a VIP
            // no namespace carries would leave a whole-path tracer nothing to trace.
            Variant::WholeNoMatch => vec!["--vip", &vip6],
            Variant::WholeOtherFlow => vec!["--vip", &vip4, "--port", &port],
            Variant::DaemonSet => DAEMONSET_ARGS.to_vec(),
            _ => vec!["--vip", NO_MATCH_VIP, "--hooks", self.hooks()?],
        };
        let mode = match self {
            Variant::WholeNoMatch | Variant::WholeOtherFlow | Variant::DaemonSet => Mode::WholePath,
            _ => Mode::Proxy,
        };
        Some((mode, args.into_iter().map(String::from).collect()))
    }
}

/// What the benchmark works with once the lab is up.
pub struct Ctx {
    pub lab: Lab,
    pub sinks: Sinks,
    pub tracer: PathBuf,
    pub window: Duration,
    /// An empty directory: a whole-path tracer mounts its private view of /run/netns here.
    pub view: PathBuf,
}

impl Ctx {
    pub fn proxy(&self) -> String {
        self.lab.ns(Role::Proxy)
    }

    pub fn target(&self) -> String {
        self.lab.ns(Role::Target)
    }

    /// The proxy's interfaces the tracer attaches to by default: the bridge and its ports.
    pub fn proxy_ifaces(&self) -> [&'static str; 4] {
        let n = self.lab.names();
        [n.px_port_fea, n.px_port_feb, n.px_port_tg, n.px_bridge]
    }

    /// The interfaces the whole-path tracer attaches to, by namespace: the proxy's bridge
    /// and ports, each frontend's external and conduit interfaces, the target's VIP one.
    pub fn whole_path_ifaces(&self) -> Vec<(String, &'static str)> {
        let n = self.lab.names();
        let mut all: Vec<(String, &str)> = self
            .proxy_ifaces()
            .into_iter()
            .map(|i| (self.proxy(), i))
            .collect();
        for (role, conduit) in [
            (Role::FrontendA, n.fea_conduit),
            (Role::FrontendB, n.feb_conduit),
        ] {
            all.push((self.lab.ns(role), n.fe_ext));
            all.push((self.lab.ns(role), conduit));
        }
        all.push((self.lab.ns(Role::Target), n.tg_if));
        all
    }

    /// Starts the tracer in --json mode on the proxy, its stdout read (counted and
    /// discarded) by this process; returns once its ready record is out.
    pub fn start_tracer(&self, label: &str, args: &[&str]) -> Result<Observer> {
        let mut c = Command::new(&self.tracer);
        c.args(["--netns", &self.proxy(), "--json"]).args(args);
        Observer::start(label, c, ReadyOn::StdoutType("ready"))
    }

    /// Starts the tracer in --json mode without --netns (the whole path: it discovers the
    /// namespaces that carry its VIP), seeing only this lab. Other labs on the machine
    /// carry the same VIPs, so it runs in a private mount namespace whose /run/netns holds
    /// only the `b-` netns files, and in a new pid namespace whose /proc shows none of the
    /// machine's processes (others' labs keep namespaces held by processes only). As the
    /// tests' `view_command` does; `--kill-child` takes the tracer down with `unshare`.
    /// Returns once its first ready record is out (it attaches everywhere before any).
    pub fn start_whole_path(&self, label: &str, args: &[&str]) -> Result<Observer> {
        const VIEW: &str = r#"set -e
view=$1; prefix=$2; shift 2
mount -t tmpfs tmpfs "$view"
for f in /run/netns/"$prefix"*; do
  [ -e "$f" ] || continue
  b=$(basename "$f"); : > "$view/$b"; mount --bind "$f" "$view/$b"
done
mount --rbind "$view" /run/netns
exec "$@""#;
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private"])
            .args(["-p", "-f", "--mount-proc", "--kill-child"])
            .args(["sh", "-c", VIEW, "sh"])
            .arg(&self.view)
            .arg(PREFIX)
            .arg(&self.tracer)
            .arg("--json")
            .args(args);
        let mut o = Observer::start(label, c, ReadyOn::StdoutType("ready"))?;
        o.follow_child()?;
        Ok(o)
    }

    /// Starts a tracer variant where it runs.
    pub fn start_variant(&self, v: Variant) -> Result<Observer> {
        let Some((mode, args)) = v.tracer() else {
            bail!("{} is not a tracer variant", v.key());
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match mode {
            Mode::Proxy => self.start_tracer("tracer", &args),
            Mode::WholePath | Mode::ManyLabs => self.start_whole_path("tracer (whole path)", &args),
        }
    }
}

/// One tracer run, for the start/stop/memory figures.
pub struct TracerRun {
    pub context: String,
    pub mode: Mode,
    pub exited: Exited,
    pub hwm_kb: Option<u64>,
    /// Resident set before SIGINT (VmRSS): what the tracer holds once started, as
    /// opposed to its start-up peak.
    pub rss_kb: Option<u64>,
    pub maps: Vec<MapInfo>,
    /// How long the tracer took to work off its backlog after the traffic stopped.
    pub settle: Duration,
}

impl TracerRun {
    /// Peak RSS in KiB: VmHWM sampled before SIGINT, or wait4's maxrss if larger.
    pub fn peak_rss_kb(&self) -> u64 {
        self.hwm_kb.unwrap_or(0).max(self.exited.maxrss_kb)
    }
}

/// One throughput measurement (TCP, then UDP) with one variant observing.
pub struct Slot {
    pub variant: Variant,
    pub tcp_bytes_per_s: f64,
    pub udp_packets_per_s: f64,
    /// The observer processes' exits (one tracer, or four tcpdumps).
    pub observers: Vec<Exited>,
    pub tracer: Option<TracerRun>,
    /// Other people's tracers that may have watched the lab during the slot.
    pub foreign: usize,
}

impl Slot {
    /// CPU time of the observers during the slot (after their ready line: start-up is
    /// reported apart).
    pub fn observer_cpu_s(&self) -> f64 {
        self.observers
            .iter()
            .map(|e| e.cpu_after_ready.as_secs_f64())
            .sum()
    }

    /// tcpdump's "N packets dropped by kernel", summed over its processes.
    pub fn tcpdump_dropped(&self) -> u64 {
        self.observers
            .iter()
            .flat_map(|e| e.stderr.iter())
            .filter_map(|l| l.strip_suffix(" packets dropped by kernel"))
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .sum()
    }
}

/// A variant's slot and the baseline slot measured right before it.
pub struct Pair {
    pub baseline: Slot,
    pub variant: Slot,
}

/// Runs the bench: the caller has checked `reps` and `seconds`, and is root with the lab's
/// tools, tcpdump, bpftool and tracefs at hand.
pub fn bench(opts: Opts) -> Result<()> {
    let wants = |p: Part| opts.only.is_empty() || opts.only.contains(&p);
    let variants: Vec<Variant> = VARIANTS.into_iter().filter(|v| wants(v.part())).collect();
    let started = Instant::now();
    let mut machine = machine::Machine::read(&opts.workspace);

    let spec = LabSpec {
        prefix: PREFIX.into(),
        ..LabSpec::default()
    };
    let lab = Lab::up(spec).context("could not bring the benchmark lab up")?;
    let sinks = Sinks::start(&lab.ns(Role::Gateway))?;
    let view = std::env::temp_dir().join(format!("meridio-bench-view-{}", std::process::id()));
    std::fs::create_dir_all(&view)
        .with_context(|| format!("could not create {}", view.display()))?;
    let ctx = Ctx {
        lab,
        sinks,
        tracer: opts.tracer.clone(),
        window: Duration::from_secs_f64(opts.seconds),
        view,
    };

    let measured = (|| -> Result<_> {
        let pairs = throughput(&ctx, &variants, opts.reps)?;
        let attribution = if wants(Part::Attribution) {
            Some(attribution::run(&ctx)?)
        } else {
            None
        };
        let ladder = if wants(Part::Pipeline) {
            Some(pipeline::run(&ctx)?)
        } else {
            None
        };
        let startup = if wants(Part::Startup) {
            Some(startup::run(&ctx, opts.reps)?)
        } else {
            None
        };
        Ok((pairs, attribution, ladder, startup))
    })();
    let Ctx {
        lab, sinks, view, ..
    } = ctx;
    drop(sinks);
    let _ = std::fs::remove_dir(&view);
    let down = lab.down();
    let (pairs, attribution, ladder, startup) = measured?;
    down?;
    machine.load_at_end = machine::load_average();

    let report = report::Report {
        machine,
        reps: opts.reps,
        seconds: opts.seconds,
        warmup: WARMUP,
        variants,
        pairs,
        attribution,
        ladder,
        startup,
        took: started.elapsed(),
    };
    println!("{}", report.markdown());
    let json = serde_json::to_string_pretty(&report.json())?;
    if let Some(dir) = opts.out.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
    }
    std::fs::write(&opts.out, json + "\n")
        .with_context(|| format!("could not write {}", opts.out.display()))?;
    println!("figures written to {}", opts.out.display());
    Ok(())
}

/// The interleaved throughput runs: per repetition, each variant right after a baseline of
/// its own; the variants' order rotates between repetitions so no variant always runs
/// at the same point of a repetition.
fn throughput(ctx: &Ctx, variants: &[Variant], reps: usize) -> Result<Vec<Pair>> {
    let mut pairs = Vec::new();
    for rep in 0..reps {
        for i in 0..variants.len() {
            let v = variants[(i + rep) % variants.len()];
            let baseline = slot(ctx, Variant::Baseline)?;
            let variant = slot(ctx, v)?;
            eprintln!(
                "bench: rep {}/{reps} {:<21}  TCP {:6.2} Gbit/s (baseline {:6.2})  UDP {:7.1} kpps (baseline {:7.1})",
                rep + 1,
                v.key(),
                variant.tcp_bytes_per_s * 8e-9,
                baseline.tcp_bytes_per_s * 8e-9,
                variant.udp_packets_per_s / 1e3,
                baseline.udp_packets_per_s / 1e3,
            );
            pairs.push(Pair { baseline, variant });
        }
    }
    Ok(pairs)
}

/// Starts the variant's observers, measures TCP then UDP, stops the observers.
fn slot(ctx: &Ctx, variant: Variant) -> Result<Slot> {
    let observers = start_observers(ctx, variant)?;
    let own: Vec<i32> = observers.iter().map(|o| o.observed_pid()).collect();
    let foreign_before = observer::foreign_tracers(PREFIX, &own);
    let (target, window) = (ctx.target(), ctx.window);
    let tcp = measure(&ctx.sinks, &target, Load::Tcp, WARMUP, window)?;
    let udp = measure(&ctx.sinks, &target, Load::Udp, WARMUP, window)?;
    let foreign = foreign_before.max(observer::foreign_tracers(PREFIX, &own));

    let mut tracer = None;
    let mut exits = Vec::new();
    if let [one] = observers.as_slice() {
        if variant.tracer().is_some() {
            let settle = one.settle(SETTLE_QUIET, SETTLE_MAX);
            tracer = Some((settle, one.memory_kb(), one.bpf_maps()));
        }
    }
    // SIGINT to all first, so tcpdumps stop together and each exit is timed from it.
    let at = observers
        .iter()
        .map(|o| o.interrupt())
        .min()
        .unwrap_or_else(Instant::now);
    for o in observers {
        let ex = o.reap(at)?;
        if !ex.success {
            bail!(
                "{} failed during the {} slot: {}",
                ex.label,
                variant.key(),
                ex.stderr.join(" | ")
            );
        }
        exits.push(ex);
    }
    let tracer = tracer.map(|(settle, (hwm_kb, rss_kb), maps)| TracerRun {
        context: format!("throughput, {}", variant.key()),
        mode: variant.tracer().map_or(Mode::Proxy, |(m, _)| m),
        exited: exits[0].clone(),
        hwm_kb,
        rss_kb,
        maps,
        settle,
    });
    Ok(Slot {
        variant,
        tcp_bytes_per_s: tcp.bytes_per_s,
        udp_packets_per_s: udp.packets_per_s,
        observers: exits,
        tracer,
        foreign,
    })
}

fn start_observers(ctx: &Ctx, variant: Variant) -> Result<Vec<Observer>> {
    let vip = VIP4.to_string();
    Ok(match variant {
        Variant::Baseline => Vec::new(),
        Variant::Tcpdump | Variant::TcpdumpWholePath => {
            // tcpdump takes one -i per process: one per interface the tracer watches,
            // as an operator capturing the proxy's bridge and ports runs it today.
            let ifaces = match variant {
                Variant::Tcpdump => ctx.proxy_ifaces().map(|i| (ctx.proxy(), i)).to_vec(),
                _ => ctx.whole_path_ifaces(),
            };
            let mut all = Vec::new();
            for (ns, iface) in ifaces {
                let mut c = lab::cmd::command("ip");
                c.args(["netns", "exec", &ns, "tcpdump", "-n", "-i", iface])
                    .args(["-w", "/dev/null", "host", &vip]);
                all.push(Observer::start(
                    &format!("tcpdump -i {iface} in {ns}"),
                    c,
                    ReadyOn::StderrContains("listening on"),
                )?);
            }
            all
        }
        _ => vec![ctx.start_variant(variant)?],
    })
}
