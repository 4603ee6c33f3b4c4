//! The device plugins' socket files in the kubelet's directory: their
//! names, the stale ones of a previous run, and the directory's stamp that
//! tells whether any of them can have gone.

use std::path::Path;

use tracing::{debug, warn};

use super::slots::PREFIX;

/// A directory's identity and modification time: a file created or
/// removed in it changes the time, so while the stamp stays the same every
/// socket in it is still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirStamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
}

impl DirStamp {
    pub fn of(dir: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(dir).ok()?;
        Some(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        })
    }
}

/// The longest path a unix socket may have (`sun_path` is 108 bytes, one
/// of them the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The socket file of a resource in `dir`: `ambit-<name>.sock`, or
/// `ambit-<hash>.sock` when that path would be too long for a unix socket
/// (a 63-character Device name under a distribution's longer kubelet root,
/// such as MicroK8s', would be).
pub fn socket_name(dir: &Path, resource: &str) -> String {
    let name = &resource[PREFIX.len()..];
    let readable = format!("ambit-{name}.sock");
    if dir.join(&readable).as_os_str().len() <= MAX_SOCKET_PATH {
        return readable;
    }
    use sha2::{Digest, Sha256};
    let hash: String = Sha256::digest(name.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("ambit-{hash}.sock")
}

/// Removes sockets of a previous run (`ambit-*.sock`) from `dir`.
pub fn remove_stale_sockets(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("ambit-") && name.ends_with(".sock") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => debug!(socket = %name, "removed a stale socket"),
                Err(error) => warn!(%error, socket = %name, "failed to remove a stale socket"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_always_fit_a_unix_socket() {
        let device = format!("{PREFIX}{}", "d".repeat(63));
        let short = Path::new("/var/lib/kubelet/device-plugins");
        assert_eq!(
            socket_name(short, &format!("{PREFIX}cams")),
            "ambit-cams.sock"
        );
        let long = Path::new("/var/snap/microk8s/common/var/lib/kubelet/device-plugins");
        let name = socket_name(long, &device);
        assert!(
            long.join(&name).as_os_str().len() <= MAX_SOCKET_PATH,
            "{name}"
        );
        assert_ne!(
            name,
            socket_name(long, &format!("{PREFIX}{}", "e".repeat(63)))
        );
    }
}
