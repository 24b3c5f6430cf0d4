//! The capture file itself, opened the way a file written as root must be: never through a
//! symlink (someone else's `/tmp/x.pcapng -> /etc/shadow`), never over an existing file
//! unless asked, readable by its owner only whatever the umask, and rotated at a size cap
//! so a long capture cannot fill the disk: the full file becomes `FILE.1` (replacing the
//! previous one), so the capture takes at most twice the cap.
use std::{
    fs::{File, OpenOptions, Permissions},
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};

/// How `--pcap` may write.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `--pcap-overwrite`: replace an existing regular file.
    pub overwrite: bool,
    /// `--pcap-max-mb` in bytes: rotate once the file holds this much.
    pub max_bytes: u64,
}

/// Creates `path` anew: refuses a symlink, anything but a regular file, and (without
/// `overwrite`) any existing file.
pub fn create(path: &Path, overwrite: bool) -> Result<File> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_symlink() {
            bail!(
                "the pcap file {} is a symbolic link; the tracer does not follow one (give the real path)",
                path.display()
            );
        }
        if !meta.file_type().is_file() {
            bail!(
                "the pcap file {} exists and is not a regular file",
                path.display()
            );
        }
        if !overwrite {
            bail!(
                "the pcap file {} already exists; remove it or pass --pcap-overwrite",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot replace the pcap file {}", path.display()))?;
    }
    // O_EXCL: whatever appeared since the check (a symlink included) makes this fail
    // rather than be followed or truncated.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("cannot create the pcap file {}", path.display()))?;
    // The mode above is masked by the umask; 0600 exactly.
    file.set_permissions(Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Where the full file goes at rotation: `FILE.1`.
pub fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// A writer that counts what went through it (the file's size, for the cap).
pub struct Counted<W> {
    pub inner: W,
    pub bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pcap-file-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_symlink_is_refused_and_its_target_untouched() {
        let dir = scratch("link");
        let target = dir.join("precious");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.join("x.pcapng");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for overwrite in [false, true] {
            let e = create(&link, overwrite).unwrap_err().to_string();
            assert!(e.contains("symbolic link"), "{e}");
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        // A dangling link too: O_EXCL would have refused it, the check names it.
        std::fs::remove_file(&target).unwrap();
        assert!(create(&link, true).is_err());
        assert!(!target.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_existing_file_is_kept_unless_overwrite_and_the_new_one_is_0600() {
        let dir = scratch("exists");
        let path = dir.join("x.pcapng");
        std::fs::write(&path, b"old").unwrap();
        let e = create(&path, false).unwrap_err().to_string();
        assert!(e.contains("--pcap-overwrite"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        drop(create(&path, true).unwrap());
        assert!(std::fs::read(&path).unwrap().is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(create(&dir, true).is_err(), "a directory is not replaced");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
