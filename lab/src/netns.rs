//! Entering named network namespaces (the `ip netns` ones under /run/netns). Owns the rule
//! that a namespace is entered only by a thread made for it: setns changes the calling
//! thread, so entering from a caller's thread would move that thread for good.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

/// Path of a named netns: /var/run/netns/<name>, else /run/netns/<name>.
pub fn netns_path(ns_name: &str) -> Result<PathBuf> {
    if ns_name.is_empty() || ns_name.contains('/') {
        bail!("`{ns_name}` is not a network namespace name");
    }
    for dir in ["/var/run/netns", "/run/netns"] {
        let p = PathBuf::from(dir).join(ns_name);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("network namespace `{ns_name}` does not exist (see `ip netns list`)")
}

/// Moves the calling thread into the named netns. Only for threads made for that purpose
/// (see [`in_netns`]); the thread never comes back.
pub fn enter(ns_name: &str) -> Result<()> {
    let path = netns_path(ns_name)?;
    let file = File::open(&path)
        .with_context(|| format!("could not open network namespace {}", path.display()))?;
    // Only this thread's network namespace changes.
    if let Err(err) = move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network)) {
        bail!("could not enter network namespace `{ns_name}` (root needed): {err}");
    }
    Ok(())
}

/// Runs `f` on a fresh thread inside the named netns and returns its result. Sockets
/// created by `f` stay in that netns after it returns. A panic in `f` is passed on.
pub fn in_netns<T: Send>(ns_name: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    // Check the name on the caller's thread, so a typo is an error and not a thread panic.
    netns_path(ns_name)?;
    std::thread::scope(|s| {
        let handle = s.spawn(move || -> Result<T> {
            enter(ns_name)?;
            Ok(f())
        });
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
