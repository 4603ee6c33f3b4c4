//! The agent's API writes, one function per kind of write. Each takes a
//! snapshot of what should be, writes it with server-side apply under the
//! node's field manager, and says what is now applied.

use ambit_crds::v1alpha1::{Device, DeviceReport, DeviceSet, DeviceSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use crate::metrics::Metrics;
use crate::recording::desired::{self, NodeView, SetInfo};
use crate::recording::recorder::ShardWrite;
use crate::recording::tracker::SetKey;

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Applying a Device's metadata and spec failed.
    #[error("failed to apply Device {name}: {source}")]
    Device {
        /// The Device.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// Applying this node's entry of a Device's status failed.
    #[error("failed to apply the node entry of Device {name}: {source}")]
    Entry {
        /// The Device.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// Writing a shard of this node's DeviceReport failed.
    #[error("failed to write shard {shard} of this node's DeviceReport of {set}: {source}")]
    Report {
        /// The DeviceSet.
        set: SetKey,
        /// The shard.
        shard: u32,
        /// The API error.
        source: kube::Error,
    },
    /// Applying this node's entry of a DeviceSet's status failed.
    #[error("failed to apply the node entry of DeviceSet {set}: {source}")]
    SetEntry {
        /// The DeviceSet.
        set: SetKey,
        /// The API error.
        source: kube::Error,
    },
}

impl WriteError {
    /// A fixed label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Device { .. } => "apply_device",
            Self::Entry { .. } => "apply_device_entry",
            Self::Report { .. } => "write_report",
            Self::SetEntry { .. } => "apply_set_entry",
        }
    }
}

/// Everything a write needs, cheap to clone into a task.
#[derive(Clone)]
pub struct Writer {
    /// The API client.
    pub client: Client,
    /// This node's name.
    pub node: String,
    /// The field manager, [`ambit_crds::contract::agent_manager`] of the node.
    pub manager: String,
    /// The agent's metrics.
    pub metrics: Metrics,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// What a Device write should achieve.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceWrite {
    /// The Device's name.
    pub name: String,
    /// Its DeviceSet.
    pub set: SetKey,
    /// The set's details, when the spec must be applied.
    pub spec: Option<(SetInfo, DeviceSpec)>,
    /// The entry to apply, when it changed: `Some(Some(since))` claims it,
    /// `Some(None)` gives it up.
    pub entry: Option<Option<Timestamp>>,
}

/// What is applied after a successful Device write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryOutcome {
    /// The entry is as asked.
    Applied,
    /// The Device does not exist (any more): its spec must be applied again.
    DeviceMissing,
}

impl Writer {
    /// Applies the spec and/or the node entry of one Device.
    pub async fn device(&self, write: &DeviceWrite) -> Result<EntryOutcome, WriteError> {
        let api: Api<Device> = Api::namespaced(self.client.clone(), &write.set.namespace);
        let params = PatchParams::apply(&self.manager).force();
        if let Some((info, spec)) = &write.spec {
            let object = desired::device_object(&write.name, &write.set, info, spec.clone());
            self.metrics.api_write("apply", "devices");
            api.patch(&write.name, &params, &Patch::Apply(&object))
                .await
                .map_err(|source| WriteError::Device {
                    name: write.name.clone(),
                    source,
                })?;
        }
        if let Some(since) = write.entry {
            let patch = desired::node_entry_patch(&write.name, &self.node, since);
            self.metrics.api_write("apply", "devices/status");
            match api
                .patch_status(&write.name, &params, &Patch::Apply(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    return Ok(EntryOutcome::DeviceMissing);
                }
                Err(source) => {
                    return Err(WriteError::Entry {
                        name: write.name.clone(),
                        source,
                    });
                }
            }
        }
        Ok(EntryOutcome::Applied)
    }

    /// Writes shards of this node's DeviceReport of `set`, in order,
    /// stopping at the first failure: the shards written, and how it went.
    /// A shard already deleted counts as deleted.
    pub async fn report(
        &self,
        set: &SetKey,
        set_uid: &str,
        writes: Vec<ShardWrite>,
    ) -> (Vec<ShardWrite>, Result<(), WriteError>) {
        let api: Api<DeviceReport> = Api::namespaced(self.client.clone(), &set.namespace);
        let params = PatchParams::apply(&self.manager).force();
        let mut done = Vec::with_capacity(writes.len());
        for write in writes {
            let name = ambit_crds::names::report_name(&set.name, &self.node, write.shard);
            let result = match &write.devices {
                Some(devices) => {
                    let object = desired::report_object(
                        set,
                        set_uid,
                        &self.node,
                        write.shard,
                        devices.clone(),
                    );
                    self.metrics.api_write("apply", "devicereports");
                    api.patch(&name, &params, &Patch::Apply(&object))
                        .await
                        .map(drop)
                }
                None => {
                    self.metrics.api_write("delete", "devicereports");
                    match api.delete(&name, &kube::api::DeleteParams::default()).await {
                        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                        other => other.map(drop),
                    }
                }
            };
            if let Err(source) = result {
                let error = WriteError::Report {
                    set: set.clone(),
                    shard: write.shard,
                    source,
                };
                return (done, Err(error));
            }
            done.push(write);
        }
        (done, Ok(()))
    }

    /// Applies this node's entry of a DeviceSet's status. A set that is gone
    /// needs no entry: that counts as done.
    pub async fn set_entry(
        &self,
        set: &SetKey,
        view: &NodeView,
        changed_at: Timestamp,
    ) -> Result<(), WriteError> {
        let api: Api<DeviceSet> = Api::namespaced(self.client.clone(), &set.namespace);
        let params = PatchParams::apply(&self.manager).force();
        let patch = desired::set_entry_patch(set, &self.node, view, changed_at);
        self.metrics.api_write("apply", "devicesets/status");
        match api
            .patch_status(&set.name, &params, &Patch::Apply(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(WriteError::SetEntry {
                set: set.clone(),
                source,
            }),
        }
    }
}
