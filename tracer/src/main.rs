//! `tracer`: follow Meridio VIP flows through a proxy pod and name the ECMP next-hop taken.
mod attach;
mod btf_layout;
mod changes;
mod cli;
mod discover;
mod events;
mod flows;
mod kernel_state;
mod merge;
mod multipath;
mod netns;
mod render;
mod session;
mod stamp;
mod symbols;
mod tracefs;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // One malloc arena for every thread: start-up parses the kernel BTF on a thread of its
    // own, and memory freed in a thread's arena stays resident (tens of MB) where
    // `malloc_trim` cannot hand it back. glibc only; musl's allocator has no arenas.
    // SAFETY: mallopt only tunes the allocator, before any other thread exists.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,netlink_packet_route=error"),
    )
    .init();
    let result = run(cli::Args::parse());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: cli::Args) -> anyhow::Result<()> {
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
    let mut args = args;
    args.validate()?;
    check_root()?;
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
    let targets = match &args.netns_spec {
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
            session::Targets::Fixed(vec![session::Target {
                netns,
                role,
                label: spec.clone(),
                ifaces: args.ifaces.clone(),
            }])
        }
        None if roles.is_empty() => session::Targets::Discovered(discover::Role::MERIDIO.to_vec()),
        None => session::Targets::Discovered(roles),
    };
    runtime()?.block_on(session::run(args, targets))
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn check_root() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("the tracer must run as root (it loads eBPF programs and enters network namespaces); run it with sudo");
    }
    Ok(())
}
