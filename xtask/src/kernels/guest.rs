//! One machine: the script it runs, booting it, and the results it leaves in `out`.
//!
//! virtme-ng's exit code and console are not a reliable channel under TCG (the script's
//! I/O ports are often missing and it falls back to the console), so the script writes
//! everything to files in `out` (on the shared, writable `target/`): `results` with one
//! `TEST <name> <exit code> <seconds>` line per test and `DONE` at the end, `guest.log`
//! with the tests' output, the fib and kfree_skb tracepoint formats, and the JSON the
//! kernels tests report (`ready.json`, `hash-*.json`).
use std::collections::HashMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{setup::Image, TestRef};

/// Single-quotes `s` for the shell.
fn q(s: &Path) -> String {
    format!("'{}'", s.display().to_string().replace('\'', r"'\''"))
}

fn script(
    out: &Path,
    root: &Path,
    binaries: &HashMap<String, PathBuf>,
    tests: &[TestRef],
) -> String {
    let mut s = String::new();
    let o = q(out);
    let _ = writeln!(
        s,
        "#!/bin/bash\n\
         # Written by `cargo xtask kernels`; runs inside the virtual machine as root.\n\
         exec >{o}/guest.log 2>&1 </dev/null\n\
         export CI=true MERIDIO_KERNEL_OUT={o} MERIDIO_TEST_SLOWDOWN=6 RUST_BACKTRACE=1\n\
         export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         cd {} || exit 1\n\
         echo \"KERNEL $(uname -r)\" >{o}/results\n\
         mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing\n\
         for f in fib/fib_table_lookup fib6/fib6_table_lookup skb/kfree_skb; do\n\
         \x20 cp /sys/kernel/tracing/events/$f/format {o}/format.${{f##*/}} 2>/dev/null\n\
         done\n\
         run() {{\n\
         \x20 local start=$(date +%s)\n\
         \x20 echo \"=== $2\"\n\
         \x20 \"$1\" --exact \"$2\" --test-threads=1 --nocapture $3\n\
         \x20 local rc=$?\n\
         \x20 echo \"TEST $2 $rc $(( $(date +%s) - start ))\" >>{o}/results\n\
         }}",
        q(root)
    );
    for t in tests {
        let bin = &binaries[t.binary];
        let extra = if t.ignored { "--include-ignored" } else { "" };
        let _ = writeln!(s, "run {} {} {extra}", q(bin), t.name);
    }
    let _ = writeln!(s, "echo DONE >>{o}/results");
    s
}

/// Boots the kernel with `tests` and waits for it to power off (or `timeout`).
#[allow(clippy::too_many_arguments)]
pub fn run(
    vng: &Path,
    image: &Image,
    out: &Path,
    root: &Path,
    target: &Path,
    binaries: &HashMap<String, PathBuf>,
    tests: &[TestRef],
    timeout: Duration,
) -> Result<()> {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out)?;
    let path = out.join("guest.sh");
    std::fs::write(&path, script(out, root, binaries, tests))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    println!(
        "booting {} ({}) under virtme-ng with TCG: {} tests, log in {}",
        image.release,
        image.package,
        tests.len(),
        out.join("guest.log").display()
    );
    let console = std::fs::File::create(out.join("console.log"))?;
    // --disable-kvm: nested KVM fails on these machines; TCG is slow but works.
    // --rwdir target: the results (and the guest's writes to target/) reach the host.
    let status = Command::new("timeout")
        .args(["--kill-after=30", &format!("{}", timeout.as_secs())])
        .arg(vng)
        .arg("--verbose")
        .arg("-r")
        .arg(&image.vmlinuz)
        .args(["--disable-kvm", "--cpus", "2", "--memory", "3G"])
        .arg("--rwdir")
        .arg(target)
        .arg("--exec")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(console.try_clone()?)
        .stderr(console)
        .status()
        .context("could not run vng")?;
    if status.code() == Some(124) || status.code() == Some(137) {
        bail!(
            "the machine did not finish within {} s (console in {})",
            timeout.as_secs(),
            out.join("console.log").display()
        );
    }
    let results = std::fs::read_to_string(out.join("results")).unwrap_or_default();
    if !results.lines().any(|l| l == "DONE") {
        bail!(
            "the machine stopped before its tests ended ({status}; console in {})",
            out.join("console.log").display()
        );
    }
    Ok(())
}

/// `TEST <name> <rc> <secs>` lines: name -> (passed, seconds).
pub fn results(out: &Path) -> HashMap<String, (bool, u64)> {
    let text = std::fs::read_to_string(out.join("results")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            (p.next()? == "TEST").then_some(())?;
            let name = p.next()?.to_string();
            let rc: i32 = p.next()?.parse().ok()?;
            let secs: u64 = p.next()?.parse().ok()?;
            Some((name, (rc == 0, secs)))
        })
        .collect()
}
