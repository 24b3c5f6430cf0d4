//! The deploy/ manifests validate offline against the Kubernetes schemas
//! (kubernetes-validate, which `cargo xtask test` installs under target/), and a broken
//! copy does not: the check can fail.
mod artifacts;

use std::process::Command;

use artifacts::workspace;

/// Runs the validator (strict: unknown fields fail) without network when root can take it
/// away (`unshare -n`), so "offline" is checked, not assumed.
fn validate(file: &std::path::Path) -> Option<(bool, String)> {
    let bin = artifacts::validator();
    if !bin.exists() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{} is missing: `cargo xtask test` installs it",
                bin.display()
            );
        }
        eprintln!(
            "SKIPPED: {} is missing; `cargo xtask test` installs it",
            bin.display()
        );
        return None;
    }
    // SAFETY: geteuid has no preconditions.
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("unshare");
        c.arg("-n").arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    let out = cmd.arg("--strict").arg(file).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Some((out.status.success(), text))
}

#[test]
fn the_daemonset_validates_offline_and_a_broken_one_does_not() {
    let manifest = workspace().join("deploy/daemonset.yaml");
    let Some((ok, text)) = validate(&manifest) else {
        return;
    };
    assert!(ok, "{text}");
    assert!(
        text.contains("passed for resource daemonset/meridio-tracer"),
        "{text}"
    );
    let yaml = std::fs::read_to_string(&manifest).unwrap();
    for (from, to) in [
        ("hostPID: true", "hostPID: \"yes\""),
        ("hostNetwork: true", "hostNetwrok: true"),
        ("privileged: false", "privileged: \"false\""),
        (
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesystem: \"yes\"",
        ),
    ] {
        assert!(yaml.contains(from), "{from}");
        let broken = std::env::temp_dir().join(format!("x-daemonset-{}.yaml", std::process::id()));
        std::fs::write(&broken, yaml.replacen(from, to, 1)).unwrap();
        let (ok, text) = validate(&broken).unwrap();
        let _ = std::fs::remove_file(&broken);
        assert!(!ok, "{to}: {text}");
    }
}
