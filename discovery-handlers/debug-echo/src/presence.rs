//! Which devices are offline right now, read from `<state_dir>/offline`
//! (one id a line; blank lines and `#` comments ignored; no file: none).
//!
//! ```text
//!   <state_dir>/offline ──poll every 100 ms──► Presence ──watch──► every Discover stream
//!                                              (sends only when the set of ids changes)
//! ```
//!
//! Polling, not inotify (the `notify` crate): the file is written by tests
//! and benchmarks from outside, often into a bind-mounted or freshly created
//! directory, and replaced by rename; inotify misses those cases unless the
//! directory is watched and re-watched, and needs a poll fallback anyway.
//! A `stat` ten times a second costs microseconds, keeps the code a loop,
//! and bounds the delay at one interval; the file is read only when its
//! inode, size or modification time changed (and every tenth poll). The `stat` is made on the
//! runtime's thread: handing it to the blocking pool (`tokio::fs`) cost
//! more than the call (a thread wake-up and park per poll, most of an idle
//! agent's CPU in a `perf` profile), and the state directory is local. One
//! poller serves every stream of the handler, and stops when the handler
//! and all its streams are gone.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OnceCell, watch};
use tracing::{debug, warn};

/// The file, in the state directory, that lists offline device ids.
pub const OFFLINE_FILE: &str = "offline";

/// The set of offline ids.
pub type Offline = Arc<BTreeSet<String>>;

/// Watches the offline file of one state directory.
#[derive(Debug)]
pub struct Presence {
    file: PathBuf,
    interval: Duration,
    /// Started on first use, inside the runtime.
    receiver: OnceCell<watch::Receiver<Offline>>,
}

impl Presence {
    pub fn new(state_dir: &Path, interval: Duration) -> Self {
        Self {
            file: state_dir.join(OFFLINE_FILE),
            interval,
            receiver: OnceCell::new(),
        }
    }

    /// A receiver of the offline set, already holding its current value.
    pub async fn subscribe(&self) -> watch::Receiver<Offline> {
        self.receiver
            .get_or_init(|| async {
                let first = read_offline(&self.file).await.unwrap_or_else(|error| {
                    warn!(%error, file = %self.file.display(), "cannot read the offline file; assuming every device present");
                    Offline::default()
                });
                let (sender, receiver) = watch::channel(first);
                tokio::spawn(poll(self.file.clone(), self.interval, sender));
                receiver
            })
            .await
            .clone()
    }
}

/// What tells one version of the file from another: its inode, size and
/// modification time (`None`: there is no file).
type Version = Option<(u64, u64, Option<std::time::SystemTime>)>;

fn version(file: &Path) -> io::Result<Version> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(file) {
        Ok(meta) => Ok(Some((meta.ino(), meta.len(), meta.modified().ok()))),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

async fn poll(file: PathBuf, interval: Duration, sender: watch::Sender<Offline>) {
    let mut failing = false;
    let mut seen: Option<Version> = None;
    let mut skipped = 0u32;
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = sender.closed() => return,
        }
        // Two writes of the same size within one tick of the file clock,
        // the second reusing the first's inode, look alike: read anyway
        // every tenth poll, so even that is seen within ten intervals.
        let now = version(&file).ok();
        if now.is_some() && now == seen && skipped < 9 {
            skipped += 1;
            continue;
        }
        (seen, skipped) = (now, 0);
        match read_offline(&file).await {
            Ok(offline) => {
                failing = false;
                sender.send_if_modified(|current| {
                    let changed = **current != *offline;
                    if changed {
                        debug!(file = %file.display(), offline = offline.len(), "offline devices changed");
                        *current = offline;
                    }
                    changed
                });
            }
            // Keep the last known set rather than flap every device.
            Err(error) if !failing => {
                failing = true;
                warn!(%error, file = %file.display(), "cannot read the offline file; keeping the last known set");
            }
            Err(_) => {}
        }
    }
}

async fn read_offline(file: &Path) -> io::Result<Offline> {
    match tokio::fs::read_to_string(file).await {
        Ok(text) => Ok(Arc::new(parse_offline(&text))),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Offline::default()),
        Err(error) => Err(error),
    }
}

fn parse_offline(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_one_per_line() {
        let set = parse_offline("a\n\n  b  \n# c is back\nd\r\n");
        assert_eq!(set, BTreeSet::from(["a".into(), "b".into(), "d".into()]));
    }

    #[tokio::test]
    async fn notices_changes_and_ignores_rewrites_with_the_same_ids() {
        let dir = tempfile::tempdir().unwrap();
        let presence = Presence::new(dir.path(), Duration::from_millis(20));
        let mut offline = presence.subscribe().await;
        assert!(offline.borrow_and_update().is_empty());

        std::fs::write(dir.path().join(OFFLINE_FILE), "a\n").unwrap();
        tokio::time::timeout(Duration::from_secs(2), offline.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(**offline.borrow_and_update(), BTreeSet::from(["a".into()]));

        std::fs::write(dir.path().join(OFFLINE_FILE), "# same\na\n").unwrap();
        let unchanged = tokio::time::timeout(Duration::from_millis(200), offline.changed()).await;
        assert!(unchanged.is_err(), "no change expected");

        std::fs::remove_file(dir.path().join(OFFLINE_FILE)).unwrap();
        tokio::time::timeout(Duration::from_secs(2), offline.changed())
            .await
            .unwrap()
            .unwrap();
        assert!(offline.borrow_and_update().is_empty());
    }
}
