//! The Meridio packet-path tracer as a library: follow VIP flows through a proxy pod (and,
//! on the whole path, its frontends and targets) and name the ECMP next-hop the kernel took.
//! The `tracer` binary is a thin shell over [`run`].
//!
//! Modules by concern:
//!
//! - [`cli`]: what the operator can ask for, and the checks on it;
//! - `discover`: finding and classifying the node's namespaces;
//! - `netns`: opening namespaces, their kernel state over rtnetlink, and its changes;
//! - `bpf`: loading and attaching the eBPF object, and the kernel layouts it needs;
//! - `events`: decoding the ring buffer's records;
//! - `correlate`: the flow table (hops, decisions, drops, distribution) and multipath;
//! - `session`: the run itself (sites, reader threads, ordering, churn);
//! - `output`: text, JSON lines, pcapng;
//! - `privilege`: the capabilities and the locked-memory limit it needs, checked at start;
//! - `merge`: `tracer merge`, several nodes' JSON lines on one timeline;
//! - `draw`: `tracer draw`, a flow's path (or a VIP's distribution) as an SVG picture;
//! - [`records`]: the JSON lines as typed records, for whoever reads them.
//!
//! One word per concept: a **netns** is an opened namespace handle (`netns::Netns`); a
//! **namespace** is what discovery lists, traced or not; a **site** is a namespace being
//! traced: asked for as a `session::SiteSpec`, then inspected, then attached
//! (`session::site::Site`), and seen by the flow table as a `correlate::flows::SiteView`. A
//! Meridio **target** is only ever the role (the application pod).
//!
//! Only what the binary needs is public; the rest stays crate-private so the compiler
//! still reports code nothing uses.

mod bpf;
pub mod cli;
mod correlate;
mod discover;
mod draw;
mod events;
mod merge;
mod metrics;
mod netns;
mod output;
mod privilege;
pub mod process;
mod session;

/// Bytes to the parsers of untrusted input, for the `fuzz/` targets (not an interface).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

/// The JSON output rate workload of `benches/json_rate.rs` (not an interface).
#[doc(hidden)]
pub use output::rate as json_rate;

/// The JSON lines as typed records (the `tracer-records` crate, which readers can use
/// without building the tracer).
pub use tracer_records as records;

/// Runs what the command line asks for: `discover`, `merge`, `draw`, or a tracing session.
pub fn run(args: cli::Args) -> anyhow::Result<()> {
    if let Some(cli::Command::Discover(d)) = &args.command {
        check_root()?;
        return runtime()?.block_on(discover::run(d.json, d.all));
    }
    if let Some(cli::Command::Merge(m)) = &args.command {
        return merge::run(merge::Options {
            inputs: m.inputs.clone(),
            json: m.json,
            follow: m.follow,
            hold: m.hold,
        });
    }
    if let Some(cli::Command::Draw(d)) = &args.command {
        return draw::run(draw::Options {
            input: d.input.clone(),
            pick: match (d.flow, d.client) {
                (Some(n), _) => draw::Pick::Number(n),
                (None, Some(c)) => draw::Pick::Client(c),
                (None, None) => draw::Pick::First,
            },
            distribution: d.distribution,
            output: d.output.clone(),
        });
    }
    let mut args = args;
    args.validate()?;
    privilege::check()?;
    let roles: Vec<discover::Role> = args.roles.iter().map(|r| (*r).into()).collect();
    if args.vips.is_empty() {
        // No --vip: trace what discovery finds (of the --netns namespace, or of the roles).
        let inode = match &args.netns_spec {
            Some(spec) => Some(netns::Netns::open(spec)?.id()?.1),
            None => None,
        };
        let asked = if roles.is_empty() {
            &discover::Role::MERIDIO[..]
        } else {
            &roles[..]
        };
        let found = runtime()?.block_on(discover::discover());
        args.vips = discover::vips_on_node(&found, asked, inode)?;
        args.vips_discovered = true;
    }
    let sites = match &args.netns_spec {
        Some(spec) => {
            let role = match roles.as_slice() {
                [] => discover::Role::Proxy,
                [one] => *one,
                _ => anyhow::bail!(
                    "with --netns give at most one --role: the role of that namespace"
                ),
            };
            let netns = netns::Netns::open(spec)?;
            if netns.id()? == netns::Netns::open("/proc/self/ns/net")?.id()? {
                anyhow::bail!("--netns {spec} is the tracer's own (the host's) network namespace, not a pod's; give the pod's netns name, path or the pid of a process in the pod");
            }
            session::Sites::Fixed(vec![session::SiteSpec {
                netns,
                role,
                label: spec.clone(),
                ifaces: args.ifaces.clone(),
            }])
        }
        None if roles.is_empty() => session::Sites::Discovered(discover::Role::MERIDIO.to_vec()),
        None => session::Sites::Discovered(roles),
    };
    runtime()?.block_on(session::run(args, sites))
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn check_root() -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        anyhow::bail!("the tracer must run as root (it loads eBPF programs and enters network namespaces); run it with sudo");
    }
    Ok(())
}
