//! Developer tasks for the Meridio packet-path tracer, as a library so the tracer's
//! end-to-end tests can use the same toolchain, dist and deploy steps as `cargo xtask`.
//! The namespace lab itself is its own crate (`lab`), used by xtask and the tests.
//!
//! - [`toolchain`]: installing what building and testing need (nightly rust-src,
//!   bpf-linker, iproute2, nftables, tracefs).
//! - [`deploy`]: the offline validator of the deploy/ manifests.
//! - [`dist`]: the static tracer binary of `cargo xtask dist`.

pub mod deploy;
pub mod dist;
pub mod toolchain;
