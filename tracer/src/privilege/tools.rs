//! The programs the tracer runs (`mount` when bpffs or tracefs is missing, `crictl` to name
//! pods) run as root: found only in PATH directories that root alone can change, as files
//! root alone can change. A PATH entry that is relative, or that another user could write
//! (a `/tmp/bin` a container image or a shell profile put first), is skipped, so no one but
//! root can choose what the tracer executes.
use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// The search path when PATH is unset (what a login shell gives root).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `program`'s absolute path in the first trusted PATH directory that holds it as a
/// trusted executable file; `None` when there is none.
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    find_in(program, &path)
}

fn find_in(program: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute() && root_only(dir, true))
        .map(|dir| dir.join(program))
        .find(|p| root_only(p, false))
}

/// True when `p` (followed through symlinks, as exec follows them) is a directory (`dir`)
/// or an executable regular file owned by root that neither its group nor others can
/// write.
fn root_only(p: &Path, dir: bool) -> bool {
    let Ok(m) = std::fs::metadata(p) else {
        return false;
    };
    let kind = if dir {
        m.is_dir()
    } else {
        m.is_file() && m.mode() & 0o111 != 0
    };
    kind && m.uid() == 0 && m.mode() & 0o022 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn finds_system_programs_by_absolute_path() {
        let sh = find_in("sh", "/usr/bin:/bin".as_ref()).expect("sh is installed");
        assert!(sh.is_absolute(), "{}", sh.display());
        assert_eq!(find_in("no-such-program-xyz", DEFAULT_PATH.as_ref()), None);
    }

    #[test]
    fn skips_relative_and_writable_directories_and_files() {
        let dir = std::env::temp_dir().join(format!("tools-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("sh");
        std::fs::write(&fake, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A directory others can write comes first in PATH: skipped.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = format!("{}:/usr/bin:/bin", dir.display());
        let found = find_in("sh", path.as_ref()).unwrap();
        assert_ne!(found, fake);
        // A group-writable file in a tidy directory: skipped too.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert_ne!(find_in("sh", path.as_ref()).unwrap(), fake);
        // Relative entries never count.
        assert_eq!(find_in("sh", ".:bin".as_ref()), None);
        // Root's own, root-only file in a root-only directory is found (as root).
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let owner_is_root = std::fs::metadata(&fake).unwrap().uid() == 0;
        assert_eq!(find_in("sh", path.as_ref()).unwrap() == fake, owner_is_root);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
