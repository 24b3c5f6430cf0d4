//! Command line: what the operator can ask for, and the checks that turn bad input into one
//! clear sentence before anything is loaded or attached.
use std::{collections::HashSet, net::IpAddr, time::Duration};

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

pub use crate::bpf::{AttachMode, FibHook, HashHook, HookFamily, RecordBudget, TcPrograms};

/// Follow Meridio VIP flows through a proxy pod's network namespace, hop by hop, and name
/// the ECMP next-hop (stateless-lb-frontend) the kernel really sent them to.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "tracer",
    version,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true,
    after_help = AFTER_HELP
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Trace only this namespace: a name under /var/run/netns, a path to a netns file
    /// (e.g. /proc/<pid>/ns/net), or the pid of a process in the pod; its role (proxy,
    /// frontend or target) is the one `tracer discover` finds unless --role says otherwise
    /// (a proxy when discovery cannot tell). Default: the whole path, every proxy, frontend
    /// and target on this node that carries the --vip(s), found as `tracer discover` does
    /// and followed as pods come and go.
    #[arg(long = "netns", id = "netns", value_name = "NAME|PATH|PID")]
    pub netns_spec: Option<String>,

    /// Which pods to trace on the whole path (repeatable; default all three), or the role
    /// of the --netns namespace (default: discovery's; when discovery disagrees, the ready
    /// record says so and --role is followed).
    #[arg(long = "role", value_enum, value_name = "ROLE")]
    pub roles: Vec<RoleArg>,

    /// VIP to follow (IPv4 or IPv6, repeatable). Packets to or from it are traced.
    /// Default: every VIP discovery finds on the node (the VIPS column of `tracer
    /// discover`; with --netns, that namespace's), fixed at start.
    #[arg(long = "vip", value_name = "IP", value_parser = parse_vip)]
    pub vips: Vec<IpAddr>,

    /// Set when no --vip was given and the VIPs are discovery's (the ready record says so).
    #[arg(skip)]
    pub vips_discovered: bool,

    /// Follow only the flow of this client (source) port, e.g. the `-p` of `nc`.
    #[arg(long, value_name = "CLIENT_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Interface to trace (repeatable): for a proxy a bridge or a bridge port. Default:
    /// a proxy's bridges and every port enslaved to it (followed as ports come and go), a
    /// frontend's or target's every interface but loopback.
    #[arg(long = "iface", value_name = "NAME")]
    pub ifaces: Vec<String>,

    /// One JSON object per line instead of the text view.
    #[arg(long)]
    pub json: bool,

    /// Also write every hop record as a packet to this pcapng file (for Wireshark): the
    /// frame's first --snap-len bytes, one interface per traced pod and interface
    /// (`pod/interface`), the tracer's findings as each packet's comment.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<std::path::PathBuf>,

    /// With --port: also draw the followed flow as an SVG picture in this file (as `tracer
    /// draw` does), rewritten as the flow goes on.
    #[arg(long, value_name = "FILE.svg", requires = "port")]
    pub svg: Option<std::path::PathBuf>,

    /// With --pcap: bytes of each frame to capture (its length is kept whole).
    #[arg(long, value_name = "BYTES", default_value_t = tracer_common::SNAP_DEFAULT,
          value_parser = clap::value_parser!(u32).range(14..=tracer_common::SNAP_MAX as i64))]
    pub snap_len: u32,

    /// With --pcap: replace FILE when it exists (a regular file only; a symbolic link is
    /// never followed). Without it an existing FILE stops the tracer before it attaches.
    #[arg(long, requires = "pcap")]
    pub pcap_overwrite: bool,

    /// With --pcap: once FILE holds this many MiB it is renamed FILE.1 (replacing the
    /// previous FILE.1) and a new FILE starts, so the capture takes at most twice this.
    #[arg(long, value_name = "MIB", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub pcap_max_mb: u64,

    /// The node's name on every JSON record (`node`), for `tracer merge` across nodes.
    /// Default: the hostname. A DaemonSet passes the Kubernetes node name.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,

    /// Stop after this many seconds (default: run until Ctrl-C / SIGTERM).
    #[arg(long, value_name = "SECONDS", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// A flow with no packet for this long is summarised and forgotten (closed flows
    /// are, 2 s after their last packet), so memory stays bounded on busy nodes.
    #[arg(long, value_name = "SECONDS", value_parser = parse_duration, default_value = "60")]
    pub flow_timeout: Duration,

    /// Packet records per hop (one flow direction on one interface; on the routed hop,
    /// per next-hop): `all`, `none`, or a number N for the first N. Every packet is counted
    /// in the kernel whatever this says, so flow summaries and the distribution stay exact;
    /// the first packet of each hop (so each next-hop change), TCP SYN, FIN and RST, and
    /// drops are always recorded. Default: `all` with --port (one flow, every packet);
    /// without it the first 8, cheap enough to leave running on a busy node.
    #[arg(long, value_name = "all|none|N", value_parser = parse_budget)]
    pub records: Option<RecordBudget>,

    /// Size of the in-kernel per-hop counter map, one for every traced namespace (an LRU
    /// map: when full, the oldest hops are evicted and the summary says so). About 100
    /// bytes an entry.
    #[arg(long, value_name = "ENTRIES", default_value_t = tracer_common::HOPS_DEFAULT_ENTRIES,
          value_parser = clap::value_parser!(u32).range(64..=16_777_216))]
    pub hop_entries: u32,

    /// Live flows kept at most: when the table is full, the flows idle longest are
    /// summarised early (and counted as evicted), so memory stays bounded under a SYN
    /// flood. The default fits the DaemonSet's 128 Mi limit with room.
    #[arg(long, value_name = "FLOWS", default_value_t = MAX_FLOWS_DEFAULT,
          value_parser = clap::value_parser!(u32).range(16..=10_000_000))]
    pub max_flows: u32,

    /// Serve OpenMetrics (Prometheus) on this address: `/metrics`, and `/healthz` for
    /// probes. A port alone listens on every address. Labels are the Meridio topology
    /// (VIP, pod, interface, next-hop), never a client address or port.
    #[arg(long, value_name = "[ADDR:]PORT", value_parser = parse_listen)]
    pub metrics: Option<std::net::SocketAddr>,

    /// How to hook the route lookups: raw tracepoints where the kernel allows them (the
    /// kernel formats nothing for lookups the tracer rejects), else the perf tracepoints;
    /// or force one (to compare their cost, or to test the fallback).
    #[arg(long, value_enum, default_value = "auto")]
    pub fib_hook: FibHook,

    /// How to attach the TC programs: TCX links where the kernel has them (>= 6.6), or
    /// netlink clsact filters (older kernels; forced, e.g. to test the cleanup of a run
    /// that was killed).
    #[arg(long, value_enum, default_value = "auto")]
    pub attach: AttachMode,

    /// How often the TC programs are loaded: once for every traced namespace where the
    /// kernel lets them tell namespaces apart, else once per namespace; or once per
    /// namespace anyway (to compare, or to test that fallback).
    #[arg(long, value_enum, default_value = "auto")]
    pub tc_programs: TcPrograms,

    /// Which hook reads the kernel's multipath hash: fexit where the kernel allows it, else
    /// a kretprobe (auto); one kind only (to test each on a kernel that has both); or none.
    #[arg(long, value_enum, default_value = "auto")]
    pub hash_hook: HashHook,

    /// Measurement and diagnostic switch: load only these hook families (comma list;
    /// default all). `tc` (the TC programs on the interfaces) is required; `fib` the route
    /// lookup tracepoints, `drop` skb:kfree_skb, `hash` the multipath hash hooks. The ones
    /// left out are listed as unavailable in the ready record. `cargo xtask bench` uses it
    /// to price each family alone; leaving one out loses what it explains (the table and
    /// rule of a routed packet, drops, the hash).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        value_name = "FAMILY,...",
        default_value = "tc,fib,drop,hash",
        hide_short_help = true
    )]
    pub hooks: Vec<HookFamily>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleArg {
    Proxy,
    Frontend,
    Target,
}

impl From<RoleArg> for crate::discover::Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Proxy => crate::discover::Role::Proxy,
            RoleArg::Frontend => crate::discover::Role::Frontend,
            RoleArg::Target => crate::discover::Role::Target,
        }
    }
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Find every network namespace on this node (netns files and /proc/*/ns/net) and tell
    /// which hold a Meridio proxy, stateless-lb-frontend or target, by their structure.
    Discover(DiscoverArgs),
    /// Merge the JSON lines of tracers on several nodes into one timeline per flow, joined
    /// by the flow's 5-tuple and ordered by wall clock. Reads files, or `-` (the default)
    /// for standard input, e.g. `kubectl logs --prefix -l app=meridio-tracer | tracer merge`.
    /// Lines longer than 1 MiB, not UTF-8 or not tracer JSON records are skipped and
    /// counted on stderr; control characters from the inputs are shown escaped (`\x1b`).
    Merge(MergeArgs),
    /// Draw one flow's path across the pods as an SVG picture (or, with --distribution, how
    /// each VIP's flows spread), from the JSON lines of `tracer --json` or of `tracer merge
    /// --json` (several nodes). Needs no root.
    Draw(DrawArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct DrawArgs {
    /// A file of JSON lines, or `-` (the default) for standard input.
    #[arg(value_name = "FILE|-", default_value = "-")]
    pub input: String,

    /// The flow to draw: its number in the tracer's view (`flow #N`), or for several nodes'
    /// lines the timeline number of `tracer merge`. Default: the first flow.
    #[arg(long, value_name = "N", conflicts_with = "client")]
    pub flow: Option<u32>,

    /// The flow to draw, by its client's address and port (e.g. 169.254.100.150:35000).
    #[arg(long, value_name = "IP:PORT", value_parser = parse_client)]
    pub client: Option<std::net::SocketAddr>,

    /// Draw each VIP's distribution instead: flows per next-hop beside the route's weights,
    /// flows per target beside the load balancers' tables.
    #[arg(long, conflicts_with_all = ["flow", "client"])]
    pub distribution: bool,

    /// Write the SVG to this file instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE.svg")]
    pub output: Option<std::path::PathBuf>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct MergeArgs {
    /// Files of `tracer --json` lines (`kubectl logs --prefix` lines too); `-` is standard
    /// input.
    #[arg(value_name = "FILE|-")]
    pub inputs: Vec<String>,

    /// The records as JSON lines, each flow's with a `timeline` number, instead of text.
    #[arg(long)]
    pub json: bool,

    /// Live streams (e.g. `kubectl logs -f --prefix ...`; files are followed as they grow,
    /// and read again from the start when truncated or rotated): print records as they
    /// come, in wall-clock order within the hold-back window (at most 100 000 records or
    /// 256 MiB wait; beyond, the oldest go out early, counted on stderr).
    #[arg(long)]
    pub follow: bool,

    /// With --follow: how long a record waits for older ones from slower streams.
    #[arg(long, value_name = "SECONDS", value_parser = parse_duration, default_value = "2")]
    pub hold: Duration,
}

#[derive(clap::Args, Debug, Clone)]
pub struct DiscoverArgs {
    /// One JSON object per namespace per line, then a summary object.
    #[arg(long)]
    pub json: bool,

    /// Also list the namespaces that hold nothing Meridio-like (role `other`).
    #[arg(long)]
    pub all: bool,
}

fn parse_vip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>()
        .map_err(|_| format!("{s:?} is not an IPv4 or IPv6 address"))
}

fn parse_client(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a client address and port (IP:PORT, or [IPv6]:PORT)"))
}

fn parse_budget(s: &str) -> Result<RecordBudget, String> {
    match s {
        "all" => Ok(RecordBudget::All),
        "none" => Ok(RecordBudget::First(0)),
        n => n
            .parse::<u32>()
            .map(RecordBudget::First)
            .map_err(|_| format!("{s:?} is not `all`, `none` or a number of records per hop")),
    }
}

/// The example, and every bound of a run with what its overflow becomes in the output
/// (docs/limits.md has the same table).
const AFTER_HELP: &str = "\
Example (on a node; `tracer discover` lists the Meridio pods' namespaces):
  tracer --vip 20.0.0.1 --vip 2000::1 --port 35000
then start one connection, e.g. `nc 20.0.0.1 4000 -p 35000` from the gateway.

Bounds (each overflow is counted: JSON `lost` and `evicted` records and a flow's
`not_exact`, the text view's WARNING lines, /metrics where it has the counter):
  ring buffer        2 MiB for every namespace     full: records lost (`lost`)
  per-hop counters   --hop-entries, LRU            evicted (`evicted.count`)
  per-VIP totals     16384 entries, never evicted  no room: `evicted.totals_full`
  live flows         --max-flows                   summarised early (`evicted.flows`)
  flow lifetime      --flow-timeout; closed: 2 s   summarised, not an overflow
  records per hop    --records                     counted, not recorded
  reorder window     100 ms, 32768 records         the reader waits, the ring fills
  reader queue       4 batches of 4096 records     the reader waits, the ring fills
  fragment ports     4096 datagrams, LRU           later fragments orphans (per flow)
  devices' sites     4096 devices                  read from the device: slower, not lost
  per flow           8 hash samples, 4096 datagrams, 32 queued requests, 8 load
                     balancer changes: `evicted.hash_samples`, `.datagrams`, `.queued`,
                     `.lb_changes`
  VIPs 256, traced namespaces 256, routed interfaces 1024: past them the kernel refuses
                     the insert and the tracer says so (nothing is dropped silently)
  --pcap FILE        --pcap-max-mb, then one rotation to FILE.1";

/// Record budget per hop without --port and without --records: the first packets of each
/// hop show the path, the kernel counts the rest.
pub const RECORDS_DEFAULT: u32 = 8;

/// `--max-flows` default: 10 000 flows (a few KB each: state, hop keys, summary) stay well
/// inside the DaemonSet's 128 Mi beside the ring buffer and the maps (tests/always_on.rs).
pub const MAX_FLOWS_DEFAULT: u32 = 10_000;

fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    let bad = || format!("{s:?} is not a port or an ADDRESS:PORT to listen on");
    if let Ok(port) = s.parse::<u16>() {
        return Ok(std::net::SocketAddr::new(
            std::net::Ipv6Addr::UNSPECIFIED.into(),
            port,
        ));
    }
    s.parse().map_err(|_| bad())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 {
        return Err("the duration must be more than 0 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `tracer --help` as printed: the bounds' tests check it names theirs.
#[cfg(test)]
pub fn help_text() -> String {
    use clap::CommandFactory;
    Args::command().render_long_help().to_string()
}

impl Args {
    /// The record budget in force: the one asked for, else every packet of the one flow
    /// --port follows, else the cheap default.
    pub fn record_budget(&self) -> RecordBudget {
        match (self.records, self.port) {
            (Some(b), _) => b,
            (None, Some(_)) => RecordBudget::All,
            (None, None) => RecordBudget::First(RECORDS_DEFAULT),
        }
    }

    /// How `--pcap` may write: `--pcap-overwrite` and `--pcap-max-mb`.
    pub(crate) fn pcap_limits(&self) -> crate::output::pcapng::Limits {
        crate::output::pcapng::Limits {
            overwrite: self.pcap_overwrite,
            max_bytes: self.pcap_max_mb << 20,
        }
    }

    /// Checks clap cannot express.
    pub fn validate(&self) -> Result<()> {
        let mut seen = HashSet::new();
        for vip in &self.vips {
            if !seen.insert(vip) {
                bail!("VIP {vip} is given twice");
            }
            if vip.is_unspecified() || vip.is_multicast() || vip.is_loopback() {
                bail!("{vip} cannot be a VIP (unspecified, loopback or multicast address)");
            }
        }
        if self.node.as_deref().is_some_and(|n| n.trim().is_empty()) {
            bail!("--node needs a name (or leave it out for the hostname)");
        }
        if !self.hooks.contains(&HookFamily::Tc) {
            bail!("--hooks must include tc: the TC programs are what every other hook builds on");
        }
        let mut seen = HashSet::new();
        for iface in &self.ifaces {
            if !seen.insert(iface) {
                bail!("interface {iface} is given twice");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        let mut argv = vec!["tracer"];
        argv.extend_from_slice(args);
        Args::try_parse_from(argv)
            .map_err(|e| e.to_string())
            .and_then(|a| a.validate().map(|_| a).map_err(|e| e.to_string()))
    }

    #[test]
    fn accepts_the_documented_form() {
        let a = parse(&[
            "--netns",
            "proxy-a",
            "--vip",
            "20.0.0.1",
            "--vip",
            "2000::1",
            "--port",
            "35000",
            "--duration",
            "1.5",
        ])
        .unwrap();
        assert_eq!(a.vips.len(), 2);
        assert_eq!(a.port, Some(35000));
        assert_eq!(a.duration, Some(Duration::from_millis(1500)));
        assert_eq!(a.record_budget(), RecordBudget::All, "--port: every packet");
        let a = parse(&["--vip", "20.0.0.1", "--records", "3"]).unwrap();
        assert_eq!(a.record_budget(), RecordBudget::First(3));
        let a = parse(&["--vip", "20.0.0.1", "--records", "none"]).unwrap();
        assert_eq!(a.record_budget(), RecordBudget::First(0));
        let a = parse(&["--vip", "20.0.0.1"]).unwrap();
        assert_eq!(
            a.record_budget(),
            RecordBudget::First(RECORDS_DEFAULT),
            "no --port: the cheap default"
        );
        let a = parse(&["--vip", "20.0.0.1", "--records", "all"]).unwrap();
        assert_eq!(a.record_budget(), RecordBudget::All);
        assert_eq!(a.max_flows, MAX_FLOWS_DEFAULT);
        assert_eq!(a.metrics, None);
        let a = parse(&["--metrics", "9464", "--max-flows", "100"]).unwrap();
        assert_eq!(a.metrics, Some("[::]:9464".parse().unwrap()));
        assert_eq!(a.max_flows, 100);
        let a = parse(&["--metrics", "127.0.0.1:9464"]).unwrap();
        assert_eq!(a.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(a.hooks.len(), 4, "every hook family by default");
        let a = parse(&["--vip", "20.0.0.1", "--hooks", "tc,fib"]).unwrap();
        assert_eq!(a.hooks, [HookFamily::Tc, HookFamily::Fib]);
    }

    #[test]
    fn netns_is_optional_and_discover_is_a_subcommand() {
        let a = parse(&["--vip", "20.0.0.1"]).unwrap();
        assert_eq!(a.netns_spec, None);
        let a = parse(&[]).unwrap();
        assert!(
            a.vips.is_empty() && a.command.is_none(),
            "no --vip: discovery's VIPs"
        );
        assert!(a.command.is_none());
        let a = parse(&["--netns", "proxy-a", "--vip", "20.0.0.1"]).unwrap();
        assert_eq!(a.netns_spec.as_deref(), Some("proxy-a"));
        let a = parse(&["discover", "--json", "--all"]).unwrap();
        match a.command {
            Some(Command::Discover(d)) => assert!(d.json && d.all),
            other => panic!("not discover: {other:?}"),
        }
        let a = parse(&["merge", "a.jsonl", "-", "--follow", "--hold", "0.5"]).unwrap();
        match a.command {
            Some(Command::Merge(m)) => {
                assert_eq!(m.inputs, ["a.jsonl", "-"]);
                assert!(m.follow && !m.json);
                assert_eq!(m.hold, Duration::from_millis(500));
            }
            other => panic!("not merge: {other:?}"),
        }
        let a = parse(&[
            "draw",
            "t.jsonl",
            "--client",
            "[100:100::150]:35000",
            "-o",
            "f.svg",
        ])
        .unwrap();
        match a.command {
            Some(Command::Draw(d)) => {
                assert_eq!(d.input, "t.jsonl");
                assert_eq!(d.client, Some("[100:100::150]:35000".parse().unwrap()));
                assert_eq!(d.output.as_deref(), Some(std::path::Path::new("f.svg")));
                assert!(d.flow.is_none() && !d.distribution);
            }
            other => panic!("not draw: {other:?}"),
        }
        let a = parse(&["draw", "--distribution"]).unwrap();
        assert!(matches!(a.command, Some(Command::Draw(d)) if d.input == "-" && d.distribution));
        let a = parse(&["discover"]).unwrap();
        assert!(matches!(
            a.command,
            Some(Command::Discover(DiscoverArgs {
                json: false,
                all: false
            }))
        ));
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        for (args, needle) in [
            (
                &["--netns", "p", "--vip", "20.0.0.300"][..],
                "not an IPv4 or IPv6",
            ),
            (
                &["--netns", "p", "--vip", "1.2.3.4", "--vip", "1.2.3.4"],
                "given twice",
            ),
            (&["--netns", "p", "--vip", "0.0.0.0"], "cannot be a VIP"),
            (&["--netns", "p", "--vip", "1.2.3.4", "--port", "0"], "0"),
            (
                &["--netns", "p", "--vip", "1.2.3.4", "--port", "65536"],
                "65536",
            ),
            (
                &["--netns", "p", "--vip", "1.2.3.4", "--duration", "0"],
                "more than 0",
            ),
            (
                &["--vip", "1.2.3.4", "--hooks", "fib,drop"],
                "must include tc",
            ),
            (&["--vip", "1.2.3.4", "--hooks", "tc,kprobe"], "kprobe"),
            (&["discover", "--vip", "1.2.3.4"], "--vip"),
            (&["--vip", "1.2.3.4", "discover"], "discover"),
            (&["discover", "--role", "proxy"], "--role"),
            (&["merge", "--hold", "0"], "more than 0"),
            (&["merge", "--vip", "1.2.3.4"], "--vip"),
            (
                &["draw", "--client", "1.2.3.4"],
                "not a client address and port",
            ),
            (
                &["draw", "--flow", "1", "--client", "1.2.3.4:5"],
                "cannot be used with",
            ),
            (
                &["draw", "--distribution", "--flow", "2"],
                "cannot be used with",
            ),
            (&["draw", "--flow", "x"], "x"),
            (
                &["--vip", "1.2.3.4", "--records", "some"],
                "number of records",
            ),
            (&["--vip", "1.2.3.4", "--hop-entries", "10"], "10"),
            (&["--vip", "1.2.3.4", "--node", ""], "--node needs a name"),
            (&["--metrics", "host:x"], "not a port or an ADDRESS:PORT"),
            (&["--metrics", "70000"], "not a port"),
            (&["--max-flows", "3"], "3"),
            (
                &[
                    "--netns", "p", "--vip", "1.2.3.4", "--iface", "x", "--iface", "x",
                ],
                "given twice",
            ),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn the_help_names_the_kernels_bounds() {
        let help = help_text();
        for bound in [
            format!("{} MiB", tracer_common::RING_BYTES >> 20),
            format!("{} entries, never evicted", tracer_common::TOTALS_ENTRIES),
            format!("{} datagrams, LRU", tracer_common::FRAGS_ENTRIES),
            format!("{} devices", tracer_common::DEVICES_ENTRIES),
            "--hop-entries, LRU".into(),
            "--max-flows ".into(),
            "--pcap-max-mb, then".into(),
        ] {
            assert!(help.contains(&bound), "{bound:?} not in --help:\n{help}");
        }
    }
}
