//! Running external commands (ip, nft, sysctl, rustup, cargo, apt-get). Owns how a failed
//! command turns into an error: the command line plus its stderr, so a lab step that fails
//! says which step and why.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Finds `program` in PATH, and also in the sbin directories: a non-root user's PATH
/// often lacks them, yet `ip` and `nft` live there.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = Path::new(program);
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// A `Command` for `program`, resolved through [`which`] when it can be.
pub fn command(program: &str) -> Command {
    match which(program) {
        Some(path) => Command::new(path),
        None => Command::new(program),
    }
}

fn show<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.as_ref().to_string_lossy());
    }
    s
}

/// Runs `program args`, returns its stdout; on failure the error names the command and
/// carries its stderr.
pub fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String> {
    run_with_stdin(program, args, None)
}

/// Like [`run`], feeding `stdin` to the command (e.g. an `nft -f -` script).
pub fn run_with_stdin<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    stdin: Option<&str>,
) -> Result<String> {
    let line = show(program, args);
    let mut child = command(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{line}`"))?;
    if let Some(input) = stdin {
        // Dropped at the end of this block, so the command sees end of input.
        let mut pipe = child.stdin.take().context("no stdin pipe")?;
        pipe.write_all(input.as_bytes())
            .with_context(|| format!("could not write the input of `{line}`"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("could not wait for `{line}`"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        match stderr.trim() {
            "" => bail!("`{line}` failed ({})", out.status),
            msg => bail!("`{line}` failed ({}): {msg}", out.status),
        }
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command with inherited stdio (cargo, rustup, apt-get: their progress is for the
/// user to see) and fails if it does.
pub fn run_visible(mut cmd: Command) -> Result<()> {
    let line = format!("{cmd:?}").replace('"', "");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Whether this process runs as root (namespaces, nftables and eBPF need it).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Readies `cmd` to run detached: stdio on /dev/null and its own session, so a Ctrl-C
/// aimed at xtask's terminal does not reach it.
pub fn detached(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid is a bare system call (async-signal-safe) and touches nothing of the
    // parent; pre_exec itself is what needs the unsafe block.
    unsafe {
        cmd.pre_exec(|| {
            let _ = rustix::process::setsid();
            Ok(())
        });
    }
    cmd
}
