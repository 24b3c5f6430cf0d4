//! End-to-end test of the static dist binary (`cargo xtask dist`, which `cargo xtask test`
//! runs first): it traces the lab from an empty root that holds only itself and bind mounts
//! of /proc, /sys and this lab's netns files, as a container sees a node. Real eBPF, the
//! namespace lab (prefix `x2-`), root. Ground truth: nftables counters in the frontends.
mod artifacts;
mod support;

use std::{net::IpAddr, path::PathBuf, process::Command, time::Duration};

use lab::{Role, VIP4};
use support::{lab_up, root_or_skip, Tracer};

fn dist_binary() -> Option<PathBuf> {
    let p = artifacts::dist_binary();
    if p.exists() {
        return Some(p);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing: `cargo xtask test` builds it with `cargo xtask dist`",
            p.display()
        );
    }
    eprintln!(
        "SKIPPED: {} is missing; run `cargo xtask dist` first",
        p.display()
    );
    None
}

/// The dist binary run by `chroot` in a fresh mount namespace whose root is an empty tmpfs
/// holding a copy of the binary and bind mounts of /proc, /sys and the netns files of the
/// lab with `prefix`.
fn in_empty_root(dist: &PathBuf, prefix: &str, args: &[&str]) -> Command {
    let root = format!("/tmp/tracer-root-{}", std::process::id());
    std::fs::create_dir_all(&root).unwrap();
    let script = r#"set -e
root=$1; dist=$2; prefix=$3; shift 3
mount -t tmpfs tmpfs "$root"
cp "$dist" "$root/meridio-tracer"
mkdir -p "$root/proc" "$root/sys" "$root/run/netns"
mount --rbind /proc "$root/proc"
mount --rbind /sys "$root/sys"
for f in /run/netns/"$prefix"*; do
  b=$(basename "$f"); : > "$root/run/netns/$b"; mount --bind "$f" "$root/run/netns/$b"
done
# Nothing else: no /etc, no /lib, no /usr, no shell.
[ "$(ls "$root" | tr '\n' ' ')" = "meridio-tracer proc run sys " ]
exec chroot "$root" /meridio-tracer "$@""#;
    let mut cmd = Command::new("unshare");
    // No pid namespace of its own: `unshare`, `sh` and `chroot` exec one another, so the
    // child the test signals is the tracer itself.
    cmd.args(["-m", "--propagation", "private"])
        .args(["sh", "-c", script, "sh"])
        .arg(&root)
        .arg(dist)
        .arg(prefix)
        .args(args);
    cmd
}

/// With no --vip (discovery's VIPs), the static binary alone in an empty root attaches to
/// the lab's proxy, frontends and target and names the next-hop the frontends' counters saw.
#[test]
fn the_dist_binary_traces_the_lab_from_an_empty_root() {
    let Some(_serial) = root_or_skip("the_dist_binary_traces_the_lab_from_an_empty_root") else {
        return;
    };
    let Some(dist) = dist_binary() else { return };
    let lab = lab_up("x2-");
    let _listener = lab.listen().unwrap();
    let port = 35991;
    let vip = IpAddr::V4(VIP4);
    for fe in [Role::FrontendA, Role::FrontendB] {
        lab.add_frontend_counter(fe, "eg", vip, port).unwrap();
    }
    let tracer = Tracer::start_command(&mut in_empty_root(
        &dist,
        "x2-",
        &["--json", "--port", "35991", "--node", "x2-node"],
    ));
    lab.connect(vip, port, b"static\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let f = tracer.stop(libc::SIGINT);
    assert!(f.status.success(), "{}", f.stderr);

    let ready: Vec<&str> = f.readies().iter().map(|r| &*r.netns).collect();
    for role in [Role::Proxy, Role::FrontendA, Role::FrontendB, Role::Target] {
        assert!(
            ready.contains(&lab.ns(role).as_str()),
            "{role:?}: {ready:?}"
        );
    }
    let used: Vec<Role> = [Role::FrontendA, Role::FrontendB]
        .into_iter()
        .filter(|fe| lab.frontend_counter(*fe, "eg").unwrap() > 0)
        .collect();
    assert_eq!(used.len(), 1, "{used:?}");
    let flow = f
        .flows()
        .into_iter()
        .find(|r| r.netns == lab.ns(Role::Proxy) && r.flow.client_port == port)
        .unwrap_or_else(|| panic!("no proxy summary: {:?}", f.lines));
    assert_eq!(
        flow.egress.nexthop.map(|n| n.to_string()),
        Some(lab.frontend_conduit_ip(used[0], false).to_string()),
        "{flow:?}"
    );
    assert!(f
        .lines
        .iter()
        .all(|r| r.stamp.node.as_deref() == Some("x2-node")));
}
