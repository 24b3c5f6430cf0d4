//! `RLIMIT_MEMLOCK` on kernels that charge eBPF maps to it. Before 5.11 every map's memory
//! counts against the locked-memory limit of the user creating it (from 5.11 it is charged
//! to the memory cgroup instead), and the tracer's maps take 7-9.5 MiB: more than the
//! 64 KiB or 8 MiB defaults of many distributions and container runtimes.
use anyhow::{bail, Result};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// What the tracer's maps take before 5.11, with room for per-CPU maps on large nodes: a
/// hard limit at least this high is enough without `CAP_SYS_RESOURCE`.
const NEEDED_BYTES: u64 = 64 << 20;

/// Raises the soft and hard limit to unlimited where the kernel charges maps to it;
/// without `CAP_SYS_RESOURCE`, the soft limit to the hard one when that is enough.
pub fn raise() -> Result<()> {
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    if !charges_maps(&release) {
        return Ok(());
    }
    let now = getrlimit(Resource::Memlock);
    let unlimited = Rlimit {
        current: None,
        maximum: None,
    };
    if now.current.is_none() || setrlimit(Resource::Memlock, unlimited).is_ok() {
        return Ok(());
    }
    match now.maximum {
        Some(hard) if hard < NEEDED_BYTES => bail!(
            "this kernel ({release}) charges eBPF maps to RLIMIT_MEMLOCK, whose hard limit here ({} KiB) is below the {} MiB the tracer's maps take, and raising it needs the CAP_SYS_RESOURCE capability: add it to the container's capabilities or raise the limit (ulimit -l unlimited)",
            hard >> 10,
            NEEDED_BYTES >> 20
        ),
        hard => {
            setrlimit(
                Resource::Memlock,
                Rlimit {
                    current: hard,
                    maximum: hard,
                },
            )?;
            Ok(())
        }
    }
}

/// Whether the kernel `release` (`uname -r`) charges maps to `RLIMIT_MEMLOCK`: before 5.11.
/// A release that does not parse is taken as charging (raising the limit is harmless).
fn charges_maps(release: &str) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) < (5, 11),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::charges_maps;

    #[test]
    fn kernels_before_5_11_charge_maps_to_memlock() {
        assert!(charges_maps("5.10.0-30-amd64"));
        assert!(charges_maps("4.19.0"));
        assert!(!charges_maps("5.11.0"));
        assert!(!charges_maps("6.1.0-18-cloud-amd64"));
        assert!(!charges_maps("6.18.44-fc-v1300"));
        assert!(charges_maps("weird"));
    }
}
