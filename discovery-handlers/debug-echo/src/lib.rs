//! # ambit-debug-echo: the `debug-echo` discovery handler
//!
//! Reports the devices a DeviceSet's `details` list, as if it had found
//! them: the handler for trying Ambit without hardware, for tests and for
//! benchmarks (`count: 10000`). Devices can be switched off and on at run
//! time by listing their ids in `<state_dir>/offline`; every agent (or
//! handler process) gets its own state directory, so a device can vanish
//! from one node only.
//!
//! ```text
//!   details ──configured_devices──► all devices ──┐
//!   <state_dir>/offline ──Presence──► offline ids ─┴─► present = all − offline ──► stream
//!                                                      (sent at once, then on each change)
//! ```

mod details;
mod presence;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ambit_discovery::{
    BoxFuture, Device, DeviceStream, DiscoverRequest, DiscoveryError, DiscoveryHandler,
};
use futures::{StreamExt, stream};
use tokio::sync::watch;

pub use details::{ID_PROPERTY, MAX_COUNT, PROPERTIES_DIGEST};
pub use presence::OFFLINE_FILE;

use presence::{Offline, Presence};

/// The handler's name.
pub const NAME: &str = "debug-echo";

/// How often the offline file is read.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The debug-echo handler.
#[derive(Debug, Default)]
pub struct DebugEcho {
    presence: Option<Presence>,
    name: Option<String>,
}

impl DebugEcho {
    /// A handler whose devices are all present, always.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handler that takes the devices listed in `<state_dir>/offline`
    /// offline (the file may appear, change and vanish at any time).
    pub fn with_state_dir(state_dir: impl Into<PathBuf>) -> Self {
        Self::with_state_dir_and_interval(state_dir, DEFAULT_POLL_INTERVAL)
    }

    /// Like [`with_state_dir`](Self::with_state_dir), reading the file every
    /// `interval`.
    pub fn with_state_dir_and_interval(state_dir: impl Into<PathBuf>, interval: Duration) -> Self {
        Self {
            presence: Some(Presence::new(&state_dir.into(), interval)),
            name: None,
        }
    }

    /// The same handler under another name, so that several debug-echo
    /// handlers (say, an embedded and an external one) can serve side by side.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A handler with an optional state directory, as a flag gives it.
    pub fn from_state_dir(state_dir: Option<PathBuf>) -> Self {
        state_dir.map_or_else(Self::new, Self::with_state_dir)
    }
}

impl DiscoveryHandler for DebugEcho {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(NAME)
    }

    fn discover(
        &self,
        request: DiscoverRequest,
    ) -> BoxFuture<'_, Result<DeviceStream, DiscoveryError>> {
        Box::pin(async move {
            let all = Arc::new(details::configured_devices(&request)?);
            let Some(presence) = &self.presence else {
                let always = stream::once(async move { Ok(all.to_vec()) }).chain(stream::pending());
                return Ok(Box::pin(always) as DeviceStream);
            };
            let offline = presence.subscribe().await;
            Ok(present_devices(all, offline))
        })
    }
}

/// The present devices, at once and then each time they change.
fn present_devices(all: Arc<Vec<Device>>, offline: watch::Receiver<Offline>) -> DeviceStream {
    let sets = stream::unfold((offline, None), move |(mut offline, last)| {
        let all = all.clone();
        async move {
            loop {
                let present: Vec<Device> = {
                    let ids = offline.borrow_and_update();
                    all.iter()
                        .filter(|device| !ids.contains(&device.id))
                        .cloned()
                        .collect()
                };
                if last.as_ref() != Some(&present) {
                    return Some((Ok(present.clone()), (offline, Some(present))));
                }
                if offline.changed().await.is_err() {
                    // The poller is gone only when the handler is; keep the
                    // last set rather than end discovery.
                    std::future::pending::<()>().await;
                }
            }
        }
    });
    Box::pin(sets)
}
