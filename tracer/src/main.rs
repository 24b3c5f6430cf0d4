//! `tracer`: follow Meridio VIP flows through a proxy pod and name the ECMP next-hop taken.
mod attach;
mod btf_layout;
mod changes;
mod cli;
mod discover;
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
    let result = run(cli::Args::parse());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut args: cli::Args) -> anyhow::Result<()> {
    if let Some(cli::Command::Discover(d)) = &args.command {
        check_root()?;
        return runtime()?.block_on(discover::run(d.json, d.all));
    }
    args.validate()?;
    check_root()?;
    runtime()?.block_on(async move {
        args.netns = match args.netns_spec.clone() {
            Some(spec) => spec,
            None => {
                let (path, name) = discover::pick_proxy(&args.vips).await?;
                eprintln!("tracing proxy {name} (netns {})", path.display());
                path.display().to_string()
            }
        };
        session::run(args).await
    })
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
