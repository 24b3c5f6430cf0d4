//! `tracer`: follow Meridio VIP flows through a proxy pod and name the ECMP next-hop taken.
mod attach;
mod btf_layout;
mod changes;
mod cli;
mod events;
mod flows;
mod kernel_state;
mod multipath;
mod netns;
mod render;
mod session;
mod symbols;
mod tracefs;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,netlink_packet_route=error"),
    )
    .init();
    let args = cli::Args::parse();
    let result = args.validate().and_then(|_| {
        check_root()?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(session::run(args))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_root() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("the tracer must run as root (it loads eBPF programs and enters network namespaces); run it with sudo");
    }
    Ok(())
}
