//! Discovery (`tracer discover`, and the choice of proxy when `--netns` is not given): every
//! network namespace on the node ([`enumerate`]), named by its pod where the node can tell,
//! and classified by what its kernel holds ([`classify`]: structurally, as interface names,
//! table numbers and addresses differ between clusters); `tracer discover` prints the
//! result ([`render`]). Here: one round of discovery, and the rounds of the whole-path mode
//! that inspect only namespaces that are new or due.
//!
//! By what each part owns: [`rounds`] (one round of discovery and the whole-path rounds),
//! [`select`] (which namespaces and VIPs a session traces), and here the namespace as
//! discovered and `tracer discover` itself.
mod classify;
mod enumerate;
pub mod nfqlb;
mod render;
mod rounds;
mod select;
#[cfg(test)]
mod tests;

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Result};

use crate::{
    netns::kernel_state::{Address, KernelState, Netlink},
    netns::Netns,
};
pub use classify::{classify, Class, IfaceKind, Role};
use render::{render_json, render_text};
pub use rounds::{discover, Rounds};
pub use select::{to_trace, vips_on_node};

const NETLINK_TIMEOUT: Duration = Duration::from_secs(5);

/// One namespace as discovered.
#[derive(Clone, Debug)]
pub struct Namespace {
    /// The file it was read through: a netns file when there is one, else /proc/<pid>/ns/net.
    pub path: PathBuf,
    pub inode: u64,
    /// Every netns file (under /var/run/netns, /run/netns) naming it.
    pub files: Vec<PathBuf>,
    /// Processes in it, lowest first (the first few).
    pub pids: Vec<u32>,
    pub pid_count: usize,
    pub host: bool,
    pub name: String,
    /// `namespace/name` of its pod, from crictl.
    pub pod: Option<String>,
    pub pod_uid: Option<String>,
    /// The hostname of a containerised process in it (a pod's name).
    pub hostname: Option<String>,
    pub class: Class,
    /// Why the namespace could not be read (it is then listed as `other`).
    pub error: Option<String>,
}

pub struct Discovery {
    pub namespaces: Vec<Namespace>,
}

impl Discovery {
    pub fn meridio(&self) -> impl Iterator<Item = &Namespace> {
        self.namespaces
            .iter()
            .filter(|n| n.class.role != Role::Other)
    }

    fn count(&self, role: Role) -> usize {
        self.namespaces
            .iter()
            .filter(|n| n.class.role == role)
            .count()
    }
}

async fn read_state(ns: &Netns) -> Result<(KernelState, Vec<Address>)> {
    let netlink = Netlink::connect(ns)?;
    let read = async {
        let state = netlink.snapshot().await?;
        let addrs = netlink.addresses().await?;
        anyhow::Ok((state, addrs))
    };
    match tokio::time::timeout(NETLINK_TIMEOUT, read).await {
        Ok(r) => r,
        Err(_) => bail!("netlink did not answer within 5 s"),
    }
}

/// Classifies one namespace as discovery would (the `--netns` one, whose role, with no
/// `--role`, is discovery's), without looking at the rest of the node.
pub async fn classify_netns(ns: &Netns) -> Result<Class> {
    let (state, addrs) = read_state(ns).await?;
    Ok(classify(&state, &addrs))
}

/// `1 proxy`, `2 proxies`: a count as the sentences say it.
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `tracer discover`: the table (or JSON lines) of what was found.
pub async fn run(json: bool, all: bool) -> Result<()> {
    let d = discover().await;
    for n in &d.namespaces {
        if let Some(e) = &n.error {
            eprintln!("warning: could not read netns {}: {e}", n.path.display());
        }
    }
    let out = if json {
        render_json(&d, all)
    } else {
        render_text(&d, all)
    };
    print!("{out}");
    Ok(())
}
