//! Every write the controller makes to the API, and what each makes of the
//! API's answers. Nothing here reads a cache or decides what to write: the
//! reconcilers do, and call these.
//!
//! The answers that are not failures:
//! - 404 on a delete or on removing a node's entry: already gone, which is
//!   what was wanted;
//! - 409 on a create: the object exists (a cache that lags an earlier
//!   create); the create reports `false`, and nothing is done again;
//! - 409 on deleting a Device: its uid precondition failed, so the name is
//!   held by a new Device, which must stay.
//!
//! Applies use server-side apply with the field manager `ambit-controller`,
//! forced (the controller owns what it writes); creates name it too.

use ambit_crds::contract;
use ambit_crds::v1alpha1::{Device, DeviceNodeStatus, DeviceSetStatus};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::resource::v1::{ResourceClaimTemplate, ResourceSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info};

use crate::error::Error;

/// Writes to the API (and publishes Events) for the reconcilers.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    recorder: Recorder,
}

/// Whether an API error is the answer `code`.
fn is(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

/// A delete's result, with "already gone" (404) as success.
fn deleted<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(error) if is(&error, 404) => Ok(()),
        Err(error) => Err(error),
    }
}

/// A create's result: `true` when it created, `false` when the object
/// already existed (409).
fn created<T>(result: Result<T, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(error) if is(&error, 409) => Ok(false),
        Err(error) => Err(error),
    }
}

fn create_params() -> PostParams {
    PostParams {
        field_manager: Some(contract::CONTROLLER.into()),
        ..Default::default()
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(contract::CONTROLLER).force()
}

impl Writer {
    /// A writer through `client`, whose Events name `identity` as their
    /// reporting instance.
    pub fn new(client: Client, identity: &str) -> Self {
        let reporter = Reporter {
            controller: contract::CONTROLLER.into(),
            instance: Some(identity.to_owned()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
        }
    }

    fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Removes `node`'s entry from a Device by applying an empty list as
    /// that node's agent's field manager: server-side apply then drops
    /// exactly what that agent owned, and nothing of any other node.
    pub async fn remove_entry(&self, namespace: &str, name: &str, node: &str) -> Result<(), Error> {
        let patch = json!({
            "apiVersion": "ambit.dev/v1alpha1", "kind": "Device",
            "metadata": { "name": name },
            "status": { "nodes": [] },
        });
        let params = PatchParams::apply(&contract::agent_manager(node)).force();
        info!(
            device = name,
            node, "removing the entry of a node that is gone"
        );
        let result = self
            .api::<Device>(namespace)
            .patch_status(name, &params, &Patch::Apply(&patch))
            .await;
        deleted(result).map_err(|source| Error::RemoveEntry {
            device: name.to_owned(),
            node: node.to_owned(),
            source,
        })
    }

    /// Applies a shared Device's metadata and spec (creating it if need be).
    pub async fn apply_device(&self, device: &Device) -> Result<Device, Error> {
        let name = device.name_any();
        self.api::<Device>(&device.namespace().unwrap_or_default())
            .patch(&name, &apply_params(), &Patch::Apply(device))
            .await
            .map_err(|source| Error::ApplyDevice {
                device: name,
                source,
            })
    }

    /// Applies all of a shared Device's `status.nodes` and the `Available`
    /// condition they make, as [`contract::NODES_MANAGER`]; a Device that is
    /// gone needs none.
    pub async fn device_nodes(
        &self,
        namespace: &str,
        name: &str,
        nodes: &[DeviceNodeStatus],
        available: Option<&Condition>,
    ) -> Result<(), Error> {
        let patch = json!({
            "apiVersion": "ambit.dev/v1alpha1", "kind": "Device",
            "metadata": { "name": name },
            "status": { "nodes": nodes, "conditions": available.into_iter().collect::<Vec<_>>() },
        });
        let params = PatchParams::apply(contract::NODES_MANAGER).force();
        let result = self
            .api::<Device>(namespace)
            .patch_status(name, &params, &Patch::Apply(&patch))
            .await;
        deleted(result).map_err(|source| Error::DeviceNodes {
            device: name.to_owned(),
            source,
        })
    }

    /// Applies a Device's conditions (the controller's part of its status).
    pub async fn device_conditions(
        &self,
        namespace: &str,
        name: &str,
        conditions: &[Condition],
    ) -> Result<(), Error> {
        let patch = json!({
            "apiVersion": "ambit.dev/v1alpha1", "kind": "Device",
            "metadata": { "name": name },
            "status": { "conditions": conditions },
        });
        self.api::<Device>(namespace)
            .patch_status(name, &apply_params(), &Patch::Apply(&patch))
            .await
            .map(drop)
            .map_err(|source| Error::DeviceStatus {
                device: name.to_owned(),
                source,
            })
    }

    /// Deletes this very Device (a Device recreated meanwhile under its
    /// name has another uid, and stays).
    pub async fn delete_device(&self, device: &Device) -> Result<(), Error> {
        let name = device.name_any();
        let api = self.api::<Device>(&device.namespace().unwrap_or_default());
        info!(device = %name, "no node sees the device any more; deleting it");
        let mut params = DeleteParams::background();
        params.preconditions = Some(Preconditions {
            uid: device.uid(),
            resource_version: None,
        });
        match api.delete(&name, &params).await {
            Ok(_) => Ok(()),
            Err(error) if is(&error, 404) || is(&error, 409) => Ok(()),
            Err(source) => Err(Error::DeleteDevice {
                device: name,
                source,
            }),
        }
    }

    /// Creates a broker pod; `false` when it existed already.
    pub async fn create_pod(&self, namespace: &str, pod: &Pod) -> Result<bool, Error> {
        let result = self
            .api::<Pod>(namespace)
            .create(&create_params(), pod)
            .await;
        created(result).map_err(|source| Error::CreatePod {
            pod: pod.name_any(),
            source,
        })
    }

    /// Deletes a broker pod (gracefully, in the background).
    pub async fn delete_pod(&self, namespace: &str, name: &str) -> Result<(), Error> {
        let result = self
            .api::<Pod>(namespace)
            .delete(name, &DeleteParams::background())
            .await;
        deleted(result).map_err(|source| Error::DeletePod {
            pod: name.to_owned(),
            source,
        })
    }

    /// Deletes a broker pod at once (grace period 0), as the pod garbage
    /// collector does with the pods of deleted nodes.
    pub async fn force_delete_pod(&self, namespace: &str, name: &str) -> Result<(), Error> {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        let result = self.api::<Pod>(namespace).delete(name, &params).await;
        deleted(result).map_err(|source| Error::DeletePod {
            pod: name.to_owned(),
            source,
        })
    }

    /// Creates a DRA broker's ResourceClaimTemplate; `false` when it
    /// existed already.
    pub async fn create_claim_template(
        &self,
        namespace: &str,
        template: &ResourceClaimTemplate,
    ) -> Result<bool, Error> {
        let result = self
            .api::<ResourceClaimTemplate>(namespace)
            .create(&create_params(), template)
            .await;
        created(result).map_err(|source| Error::CreateClaimTemplate {
            template: template.name_any(),
            source,
        })
    }

    /// Creates a broker Job; `false` when it existed already.
    pub async fn create_job(&self, namespace: &str, job: &Job) -> Result<bool, Error> {
        let result = self
            .api::<Job>(namespace)
            .create(&create_params(), job)
            .await;
        created(result).map_err(|source| Error::ApplyJob {
            job: job.name_any(),
            source,
        })
    }

    /// Deletes a broker Job and its pods (Jobs cannot be edited: a changed
    /// one is deleted, then created anew).
    pub async fn delete_job(&self, namespace: &str, name: &str) -> Result<(), Error> {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        let result = self.api::<Job>(namespace).delete(name, &params).await;
        deleted(result).map_err(|source| Error::ApplyJob {
            job: name.to_owned(),
            source,
        })
    }

    /// Applies a Service.
    pub async fn apply_service(&self, namespace: &str, service: &Service) -> Result<(), Error> {
        let name = service.name_any();
        self.api::<Service>(namespace)
            .patch(&name, &apply_params(), &Patch::Apply(service))
            .await
            .map(drop)
            .map_err(|source| Error::ApplyService {
                service: name,
                source,
            })
    }

    /// Deletes a Service Ambit made and no longer wants.
    pub async fn delete_service(&self, namespace: &str, name: &str) -> Result<(), Error> {
        let result = self
            .api::<Service>(namespace)
            .delete(name, &DeleteParams::default())
            .await;
        deleted(result).map_err(|source| Error::ApplyService {
            service: name.to_owned(),
            source,
        })
    }

    /// Applies a shared device's ResourceSlice.
    pub async fn apply_slice(&self, slice: &ResourceSlice) -> Result<(), Error> {
        let name = slice.name_any();
        Api::<ResourceSlice>::all(self.client.clone())
            .patch(&name, &apply_params(), &Patch::Apply(slice))
            .await
            .map(drop)
            .map_err(|source| Error::ApplySlice {
                slice: name,
                source,
            })
    }

    /// Deletes a ResourceSlice.
    pub async fn delete_slice(&self, name: &str) -> Result<(), Error> {
        let result = Api::<ResourceSlice>::all(self.client.clone())
            .delete(name, &DeleteParams::background())
            .await;
        deleted(result).map_err(|source| Error::DeleteSlice {
            slice: name.to_owned(),
            source,
        })
    }

    /// Applies the status fields of a DeviceSet the controller owns (the
    /// agents own `status.nodes`).
    pub async fn set_status(
        &self,
        namespace: &str,
        name: &str,
        status: &DeviceSetStatus,
    ) -> Result<(), Error> {
        let patch = json!({
            "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
            "metadata": { "name": name },
            "status": {
                "observedGeneration": status.observed_generation,
                "conditions": status.conditions,
                "devices": status.devices,
                "readyBrokers": status.ready_brokers,
            },
        });
        self.api::<ambit_crds::v1alpha1::DeviceSet>(namespace)
            .patch_status(name, &apply_params(), &Patch::Apply(&patch))
            .await
            .map(drop)
            .map_err(|source| Error::SetStatus {
                set: name.to_owned(),
                source,
            })
    }

    /// Publishes an Event about `object` in the background (a lost Event
    /// is logged at debug level, never an error).
    pub fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let reference = object.object_ref(&());
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: reason.to_owned(),
            secondary: None,
        };
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            if let Err(error) = recorder.publish(&event, &reference).await {
                debug!(%error, "failed to publish an Event");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn answer(code: u16) -> kube::Error {
        kube::Error::Api(Status::failure("", "").with_code(code).boxed())
    }

    #[test]
    fn gone_is_deleted_and_existing_is_created() {
        assert!(deleted::<()>(Err(answer(404))).is_ok());
        assert!(deleted::<()>(Err(answer(409))).is_err());
        assert!(matches!(created::<()>(Err(answer(409))), Ok(false)));
        assert!(matches!(created(Ok(())), Ok(true)));
        assert!(created::<()>(Err(answer(404))).is_err());
    }
}
