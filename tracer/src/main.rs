//! `tracer`: follow Meridio VIP flows through a proxy pod and name the ECMP next-hop taken.
//! The work is in the library ([`tracer::run`]); this binary owns the process: allocator
//! tuning, logging and the exit status.
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
    match tracer::run(tracer::cli::Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
