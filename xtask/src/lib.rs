//! Developer tasks for the Meridio packet-path tracer, as a library so the tracer's
//! end-to-end tests can build the same namespace lab that `cargo xtask lab` and
//! `cargo xtask demo` use.
//!
//! - [`netns`]: running code inside a named network namespace.
//! - [`lab`]: the Meridio traffic path recreated with namespaces, veths and bridges.
//! - [`echo`]: the TCP echo server that stands in for the target application.
//! - [`daemon`]: the detached echo server that `cargo xtask lab up` leaves running.
//! - [`toolchain`]: installing what building and testing need (nightly rust-src,
//!   bpf-linker, iproute2, nftables, tracefs).
//! - [`deploy`]: the offline validator of the deploy/ manifests.
//! - [`dist`]: the static tracer binary of `cargo xtask dist`.
//! - [`cmd`]: running external commands with errors that carry their stderr.

pub mod cmd;
pub mod daemon;
pub mod deploy;
pub mod dist;
pub mod echo;
pub mod lab;
pub mod netns;
pub mod toolchain;
