//! The `tracer` binary, built by this package so the end-to-end tests start a tracer cargo
//! has just rebuilt (`CARGO_BIN_EXE_tracer-under-test`): the same process as `tracer`
//! ([`tracer::process::main`]), under a name of its own because two binaries called
//! `tracer` in one target directory would overwrite each other.
use std::process::ExitCode;

fn main() -> ExitCode {
    tracer::process::main()
}
