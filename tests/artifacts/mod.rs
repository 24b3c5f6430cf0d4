//! Where the shipped artefacts the deploy, dist and image tests check are found: what
//! `cargo xtask test` builds or installs under the workspace's target/ before it runs the
//! tests (`cargo xtask dist`'s static binary, the manifest validator). The tests only read
//! these paths; building them is the operator's command, not the tests'.
#![allow(dead_code)] // each test binary uses a different part of it

use std::path::PathBuf;

/// The workspace root: this package (`tests/`) sits one level below it.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The static binary `cargo xtask dist` writes: `target/dist/meridio-tracer`.
pub fn dist_binary() -> PathBuf {
    workspace().join("target/dist/meridio-tracer")
}

/// kubernetes-validate in the virtualenv `cargo xtask test` makes under target/.
pub fn validator() -> PathBuf {
    workspace().join("target/kubernetes-validate/bin/kubernetes-validate")
}

/// In CI a missing piece fails the test; elsewhere the test says why it skips.
pub fn missing(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what}");
    }
    eprintln!("SKIPPED: {what}");
}
