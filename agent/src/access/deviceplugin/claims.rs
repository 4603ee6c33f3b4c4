//! Slots claimed in the API: this node's entries of a Device's
//! `status.allocations`, applied with server-side apply under the field
//! manager `ambit-agent/<node>/slots` ([`ambit_crds::contract::slots_manager`])
//! and never forced. The list is keyed by slot, so an entry another node's
//! manager owns makes the apply fail with 409 Conflict: the slot is taken.
//! (Not the recorder's `ambit-agent/<node>` manager: an apply without its
//! node entry would delete that entry.)
//!
//! ```text
//!  Allocate ──► check (slots) ──► hold ──► apply this node's entries ──► 409? give back, refuse
//!  writer task ◄── dirty Devices (reclaims, pods learnt, writes that failed) ──► apply, retry every 2 s
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use ambit_crds::v1alpha1::{Allocation, Device};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tracing::{debug, warn};

use super::Shared;
use super::slots::SlotKey;
use crate::access::offers::DeviceKey;

/// How long one slot write may take before the API counts as unreachable.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often failed writes are retried.
const RETRY: Duration = Duration::from_secs(2);

/// Why a slot write failed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another manager (another node) owns one of the entries.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The Device is gone.
    #[error("the Device no longer exists")]
    Gone,
    /// The API server failed or could not be reached.
    #[error("failed to apply the slot entries of Device {namespace}/{name}: {source}")]
    Api {
        /// The Device's namespace.
        namespace: String,
        /// The Device.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// The API server did not answer in time.
    #[error("the API server did not answer within {WRITE_TIMEOUT:?}")]
    Timeout,
}

/// The server-side apply body of `device`'s entries for this node.
pub fn entries_patch(device: &str, entries: &[Allocation]) -> serde_json::Value {
    // Without entries the apply names no allocation at all, which removes
    // every entry this manager owned.
    let status = if entries.is_empty() {
        json!({})
    } else {
        json!({ "allocations": entries })
    };
    json!({
        "apiVersion": "ambit.dev/v1alpha1",
        "kind": "Device",
        "metadata": { "name": device },
        "status": status,
    })
}

/// Applies this node's entries of `device`.
pub async fn write(shared: &Shared, device: &DeviceKey) -> Result<(), ClaimError> {
    let entries = shared.state().entries(device);
    let api: Api<Device> = Api::namespaced(shared.client.clone(), &device.0);
    let params = PatchParams::apply(&shared.manager);
    let patch = entries_patch(&device.1, &entries);
    shared.metrics.api_write("apply", "devices/status");
    let result = tokio::time::timeout(
        WRITE_TIMEOUT,
        api.patch_status(&device.1, &params, &Patch::Apply(&patch)),
    )
    .await;
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(status))) if status.code == 409 => {
            Err(ClaimError::Conflict(status.message.clone()))
        }
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => Err(ClaimError::Gone),
        Ok(Err(source)) => {
            shared.metrics.api_error("apply_slots");
            Err(ClaimError::Api {
                namespace: device.0.clone(),
                name: device.1.clone(),
                source,
            })
        }
        Err(_) => {
            shared.metrics.api_error("apply_slots");
            Err(ClaimError::Timeout)
        }
    }
}

/// Claims `new` slots (already checked) for `resource`. A local device's
/// slots are held even when the API cannot be reached (no other node can
/// want them; the entries are written when it is back); a shared device's
/// claim must be written first.
pub async fn claim(shared: &Shared, resource: &str, new: &[SlotKey]) -> Result<(), String> {
    let now = k8s_openapi::jiff::Timestamp::now();
    {
        let mut state = shared.state();
        for slot in new {
            state.hold(slot, resource, now);
        }
    }
    let devices: BTreeSet<DeviceKey> = new.iter().map(|slot| slot.0.clone()).collect();
    for device in &devices {
        let result = write(shared, device).await;
        let mut state = shared.state();
        let shared_device = state.offers().get(device).is_none_or(|o| o.spec.shared);
        let refusal = match result {
            Ok(()) => {
                state.clean(device);
                continue;
            }
            Err(error @ (ClaimError::Api { .. } | ClaimError::Timeout)) if !shared_device => {
                warn!(%error, device = %device.1, namespace = %device.0,
                    "the API server cannot record the slot now; the local device is handed out, and the entry written later");
                continue;
            }
            Err(ClaimError::Conflict(message)) => {
                shared.metrics.slot_allocation_error("held_by_other_node");
                format!(
                    "a slot of Device {}/{} is held by another node ({message})",
                    device.0, device.1
                )
            }
            Err(error @ ClaimError::Gone) => {
                shared.metrics.slot_allocation_error("device_gone");
                format!("Device {}/{}: {error}", device.0, device.1)
            }
            Err(error) => {
                shared.metrics.slot_allocation_error("api_unavailable");
                format!(
                    "{error}; a shared device's slot is only handed out once the API server has recorded it"
                )
            }
        };
        // Give back what this call took; the writer puts the entries right.
        for slot in new {
            state.release(slot);
        }
        drop(state);
        shared.dirty.notify_one();
        return Err(refusal);
    }
    Ok(())
}

/// Writes the entries of Devices whose slots changed (releases, pods
/// learnt, writes that failed before), retrying failures every 2 s.
pub async fn writer(shared: std::sync::Arc<Shared>) {
    loop {
        tokio::select! {
            () = shared.dirty.notified() => {}
            () = tokio::time::sleep(RETRY) => {}
        }
        let _writes = shared.writes.lock().await;
        let dirty = shared.state().take_dirty();
        // At rest there is nothing to write, and so nothing to resend.
        if dirty.is_empty() {
            continue;
        }
        for device in dirty {
            match write(&shared, &device).await {
                Ok(()) => debug!(device = %device.1, namespace = %device.0, "slot entries written"),
                Err(ClaimError::Gone) => shared.state().forget_device(&device),
                Err(ClaimError::Conflict(message)) => {
                    // Another manager changed one of this node's entries:
                    // rewriting would fail the same way.
                    warn!(device = %device.1, namespace = %device.0, %message,
                        "this node's slot entries conflict with another field manager; not retried");
                }
                Err(error) => {
                    debug!(%error, "slot entries not written; retrying");
                    shared.state().mark_dirty(device);
                }
            }
        }
        shared.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    #[test]
    fn the_patch_names_only_this_nodes_entries() {
        let entries = [Allocation {
            slot: 1,
            node: "edge-1".into(),
            pod: Some("ns/p".into()),
            since: Some(Time(Timestamp::UNIX_EPOCH)),
        }];
        assert_eq!(
            entries_patch("cam", &entries),
            json!({
                "apiVersion": "ambit.dev/v1alpha1", "kind": "Device", "metadata": { "name": "cam" },
                "status": { "allocations": [
                    { "slot": 1, "node": "edge-1", "pod": "ns/p", "since": "1970-01-01T00:00:00Z" }
                ] }
            })
        );
        assert_eq!(entries_patch("cam", &[])["status"], json!({}));
    }
}
