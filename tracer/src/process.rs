//! The `tracer` process around [`crate::run`]: allocator tuning, logging and the exit
//! status. In the library so the end-to-end tests' copy of the binary (package
//! `tracer-tests`) is the same process as the `tracer` binary.
use std::process::ExitCode;

use clap::Parser;

/// The whole `main` of the `tracer` binary.
pub fn main() -> ExitCode {
    // One malloc arena for every thread: start-up parses the kernel BTF on a thread of its
    // own, and memory freed in a thread's arena stays resident (tens of MB) where
    // `malloc_trim` cannot hand it back.
    // A fixed mmap threshold: by default glibc raises it to the largest block freed (the
    // kernel BTF read at start-up, 5.5 MB), after which the large blocks of the object
    // loads come from the heap, and where they land there decided the peak RSS of a whole
    // path of 20 namespaces: 31.2-31.5 MB in most starts, 27.3 in some. Blocks over 1 MiB
    // are mapped and unmapped instead (27.3-27.6 MB); a reader batch (under 0.5 MB)
    // stays on the heap.
    // glibc only; musl's allocator has no arenas and maps large blocks anyway.
    // SAFETY: mallopt only tunes the allocator, before any other thread exists. (libc: an
    // allocator call, not a system call rustix could wrap.)
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,netlink_packet_route=error"),
    )
    .init();
    match crate::run(crate::cli::Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
