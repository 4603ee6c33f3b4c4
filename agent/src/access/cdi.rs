//! CDI (Container Device Interface) spec files: one per Device this node
//! offers, in the CDI spec directory the container runtime reads.
//!
//! ```text
//!  offers ──► follow() ──► <cdi_dir>/ambit.dev-device_<device>.json   (kind ambit.dev/device,
//!                │                                                     device name = Device name)
//!                └──watch channel──► the Devices that have a spec (device plugins and DRA
//!                                    hand out `ambit.dev/device=<device>` only for those)
//! ```
//!
//! A device's container edits are what a pod that uses it gets: its
//! properties and identity as environment variables, its device nodes and
//! its mounts. The same edits feed the device plugins' Allocate answers, so
//! a runtime with CDI and one without give a container the same things.
//!
//! Files are written atomically (a temporary file, then a rename), rewritten
//! only when their content changes, and removed when the device is no longer
//! offered. At start, files of ours that nothing offers any more are removed.
//! They are left in place when the agent stops: a container restarting while
//! the agent is updated still finds its device.
//!
//! The JSON is written with serde rather than the `container-device-interface`
//! crate: that crate is built for reading and validating specs (it brings
//! jsonschema, oci-spec, clap and serde_yaml 0.9 as library dependencies),
//! while the agent only writes a three-field subset, checked here against
//! the spec's naming rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ambit_crds::v1alpha1::DeviceSpec;
use ambit_telemetry::tasks::Tasks;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::access::offers::{DeviceKey, Offer, Offers};

/// The CDI kind (`vendor/class`) of Ambit's devices.
pub const KIND: &str = "ambit.dev/device";

/// The CDI version written: the first one with `hostPath` on device nodes.
pub const CDI_VERSION: &str = "0.5.0";

/// File names of Ambit's specs start with this (`<vendor>-<class>_`, the
/// CDI convention for generated specs).
const FILE_PREFIX: &str = "ambit.dev-device_";

/// The Devices whose spec file is written, with their fully qualified CDI
/// name (`ambit.dev/device=<device>`).
pub type Written = Arc<BTreeMap<DeviceKey, String>>;

/// The fully qualified CDI name of a device, as runtimes take it:
/// `ambit.dev/device=<device>`.
pub fn qualified_name(device: &str) -> String {
    format!("{KIND}={device}")
}

/// Whether `name` is a valid CDI device name: letters, digits, `_`, `-`,
/// `.` and `:`, starting and ending with a letter or digit.
pub fn valid_device_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// The environment of a container that uses `offer` on `node`: the
/// device's properties, then `AMBIT_DEVICE`, `AMBIT_DEVICE_SET`,
/// `AMBIT_DEVICE_ID` and `AMBIT_NODE_NAME` (as broker pods get them).
pub fn device_env(offer: &Offer, node: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = offer
        .spec
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.extend([
        ("AMBIT_DEVICE".to_owned(), offer.name.clone()),
        ("AMBIT_DEVICE_SET".to_owned(), offer.spec.device_set.clone()),
        ("AMBIT_DEVICE_ID".to_owned(), offer.spec.id.clone()),
        ("AMBIT_NODE_NAME".to_owned(), node.to_owned()),
    ]);
    env
}

/// Why a device gets no spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Invalid {
    /// The Device's name is not a CDI device name.
    #[error("{0:?} is not a valid CDI device name")]
    Name(String),
    /// A path is not absolute.
    #[error("{what} {path:?} is not an absolute path")]
    Path {
        /// Which path.
        what: &'static str,
        /// The path.
        path: String,
    },
}

/// A CDI spec file (the subset Ambit writes).
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    cdi_version: &'static str,
    kind: &'static str,
    devices: Vec<CdiDevice>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct CdiDevice {
    name: String,
    container_edits: ContainerEdits,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct ContainerEdits {
    env: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    device_nodes: Vec<CdiDeviceNode>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mounts: Vec<CdiMount>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct CdiDeviceNode {
    path: String,
    host_path: String,
    permissions: String,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct CdiMount {
    host_path: String,
    container_path: String,
    options: Vec<&'static str>,
}

fn absolute(what: &'static str, path: &str) -> Result<String, Invalid> {
    if path.starts_with('/') {
        Ok(path.to_owned())
    } else {
        Err(Invalid::Path {
            what,
            path: path.to_owned(),
        })
    }
}

/// The spec of one device offered on `node`, or why it cannot have one.
pub fn spec(offer: &Offer, node: &str) -> Result<Spec, Invalid> {
    if !valid_device_name(&offer.name) {
        return Err(Invalid::Name(offer.name.clone()));
    }
    let env = device_env(offer, node)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let device_nodes = offer
        .spec
        .device_nodes
        .iter()
        .map(|node| {
            let host_path = absolute("device node", &node.host_path)?;
            let path = match &node.container_path {
                Some(path) if !path.is_empty() => absolute("device node container path", path)?,
                _ => host_path.clone(),
            };
            Ok(CdiDeviceNode {
                path,
                host_path,
                permissions: node
                    .permissions
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "rw".into()),
            })
        })
        .collect::<Result<_, Invalid>>()?;
    let mounts = offer
        .spec
        .mounts
        .iter()
        .map(|mount| {
            Ok(CdiMount {
                host_path: absolute("mount", &mount.host_path)?,
                container_path: absolute("mount container path", &mount.container_path)?,
                options: vec!["bind", if mount.read_only { "ro" } else { "rw" }],
            })
        })
        .collect::<Result<_, Invalid>>()?;
    Ok(Spec {
        cdi_version: CDI_VERSION,
        kind: KIND,
        devices: vec![CdiDevice {
            name: offer.name.clone(),
            container_edits: ContainerEdits {
                env,
                device_nodes,
                mounts,
            },
        }],
    })
}

fn file_name(device: &str) -> String {
    format!("{FILE_PREFIX}{device}.json")
}

/// The spec files of one CDI directory, as this agent keeps them.
///
/// A sync costs what changed: a Device whose spec is as at the last sync
/// keeps its file untouched (no encoding, no file system call), and only
/// the files of devices that left are removed. The directory is listed
/// once, at the first sync, to remove what a previous run left.
#[derive(Debug)]
pub struct SpecDir {
    dir: PathBuf,
    node: String,
    /// What is on disk: device → (CDI name, the spec it was made from,
    /// file content).
    written: BTreeMap<DeviceKey, Entry>,
    /// Devices skipped with a warning already (invalid, or a name taken).
    warned: BTreeSet<DeviceKey>,
    /// Whether the directory was listed for files of a previous run.
    swept: bool,
}

#[derive(Debug)]
struct Entry {
    name: String,
    spec: DeviceSpec,
    content: String,
}

impl SpecDir {
    /// Ambit's specs in `dir`, for devices offered on `node`.
    pub fn new(dir: PathBuf, node: String) -> Self {
        Self {
            dir,
            node,
            written: BTreeMap::new(),
            warned: BTreeSet::new(),
            swept: false,
        }
    }

    /// Makes the directory hold exactly the specs of `offers` (and, the
    /// first time, removes files of ours it does not know, such as those of
    /// a previous run). Two Devices of the same name in different
    /// namespaces would be one CDI device: the one written first keeps the
    /// name.
    pub fn sync(&mut self, offers: &Offers) -> Written {
        let mut before = std::mem::take(&mut self.written);
        let mut names: BTreeMap<String, DeviceKey> = before
            .iter()
            .filter(|(key, _)| offers.contains_key(*key))
            .map(|(key, entry)| (entry.name.clone(), key.clone()))
            .collect();
        let mut created_dir = false;
        for (key, offer) in offers.iter() {
            if names.get(&offer.name).is_some_and(|owner| owner != key) {
                if self.warned.insert(key.clone()) {
                    warn!(device = %offer.name, namespace = %key.0,
                        "a Device of the same name in another namespace has the CDI name; no CDI spec for this one");
                }
                continue;
            }
            // The spec file depends on the Device's name and spec only: a
            // change of its nodes or allocations leaves it as it is.
            if let Some(entry) = before.remove(key) {
                if entry.spec == offer.spec {
                    self.written.insert(key.clone(), entry);
                    continue;
                }
                before.insert(key.clone(), entry);
            }
            let content = match spec(offer, &self.node).map(|s| serde_json::to_string_pretty(&s)) {
                Ok(Ok(content)) => content,
                Ok(Err(error)) => {
                    warn!(%error, device = %offer.name, "cannot encode a CDI spec");
                    continue;
                }
                Err(error) => {
                    if self.warned.insert(key.clone()) {
                        warn!(%error, device = %offer.name, namespace = %key.0, "no CDI spec for this device");
                    }
                    continue;
                }
            };
            names.insert(offer.name.clone(), key.clone());
            let path = self.dir.join(file_name(&offer.name));
            let current = before.remove(key).is_some_and(|e| e.content == content)
                || std::fs::read_to_string(&path).is_ok_and(|c| c == content);
            if !current {
                if !created_dir {
                    created_dir = true;
                    if let Err(error) = std::fs::create_dir_all(&self.dir) {
                        warn!(%error, dir = %self.dir.display(), "cannot create the CDI spec directory");
                    }
                }
                if let Err(error) = write_atomically(&path, &content) {
                    warn!(%error, path = %path.display(), "failed to write a CDI spec");
                    continue;
                }
                debug!(path = %path.display(), "wrote CDI spec");
            }
            self.written.insert(
                key.clone(),
                Entry {
                    name: offer.name.clone(),
                    spec: offer.spec.clone(),
                    content,
                },
            );
        }
        self.warned.retain(|key| offers.contains_key(key));

        let keep: BTreeSet<String> = self
            .written
            .values()
            .map(|entry| file_name(&entry.name))
            .collect();
        if self.swept {
            // Files of devices no longer offered, unless another device
            // of that name has taken the file over.
            for entry in before.values() {
                let file = file_name(&entry.name);
                if !keep.contains(&file) {
                    self.remove(&file);
                }
            }
        } else {
            self.swept = true;
            self.remove_others(&keep);
        }
        Arc::new(
            self.written
                .iter()
                .map(|(key, entry)| (key.clone(), qualified_name(&entry.name)))
                .collect(),
        )
    }

    fn remove_others(&self, keep: &BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(FILE_PREFIX) && name.ends_with(".json") && !keep.contains(&name) {
                self.remove(&name);
            }
        }
    }

    fn remove(&self, file: &str) {
        match std::fs::remove_file(self.dir.join(file)) {
            Ok(()) => debug!(%file, "removed CDI spec"),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => warn!(%error, %file, "failed to remove a CDI spec"),
        }
    }
}

/// Writes `content` to a temporary file beside `path`, then renames it over
/// `path`, so a runtime never reads half a spec.
fn write_atomically(path: &Path, content: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Keeps the spec files of `dir` in step with `offers`, and publishes which
/// devices have one, as the supervised task `CDI specs` (which runs until
/// `offers` closes). The files are read and written on the blocking pool,
/// never on the async workers (a slow or full disk must not stall the
/// device plugins' gRPC answers).
pub fn follow(
    tasks: &mut Tasks,
    dir: PathBuf,
    node: String,
    mut offers: watch::Receiver<Offers>,
) -> watch::Receiver<Written> {
    let mut specs = SpecDir::new(dir, node);
    let first = specs.sync(&offers.borrow_and_update().clone());
    let (sender, receiver) = watch::channel(first);
    tasks.spawn("CDI specs", async move {
        while offers.changed().await.is_ok() {
            let current = offers.borrow_and_update().clone();
            let synced = tokio::task::spawn_blocking(move || {
                let written = specs.sync(&current);
                (specs, written)
            })
            .await;
            let written;
            (specs, written) = synced?;
            sender.send_if_modified(|old| {
                let changed = *old != written;
                *old = written;
                changed
            });
        }
        Ok::<(), tokio::task::JoinError>(())
    });
    receiver
}

#[cfg(test)]
#[path = "cdi_tests.rs"]
mod tests;
