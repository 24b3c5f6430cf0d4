//! `tracer`: follow Meridio VIP flows through a proxy pod and name the ECMP next-hop taken.
//! The work is in the library ([`tracer::run`]); [`tracer::process::main`] owns the
//! process: allocator tuning, logging and the exit status.
use std::process::ExitCode;

fn main() -> ExitCode {
    tracer::process::main()
}
