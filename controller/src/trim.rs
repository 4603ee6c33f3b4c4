//! What the caches keep of each object: only what the reconcilers read.
//! Every cached object loses its managed fields, and a broker pod all but
//! its metadata, the node it is bound to, its phase and its conditions.
//! The rest (containers with their env, volumes with the projected
//! service-account token, tolerations, container statuses) is most of a
//! pod's size, and the controller caches one pod per Device and node.
//!
//! ```text
//!  watch event ─► trim (managedFields; a pod's spec → nodeName, status → phase + conditions) ─► store, indexes, triggers
//! ```
//!
//! Nothing written is built from a cached pod: pods are created from the
//! Device and its DeviceSet (`brokers.rs`), compared by their spec-hash
//! annotation, and deleted by name.

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};
use kube::Resource;

/// Drops what no reconciler reads from any cached object.
pub fn managed_fields<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// Drops what no reconciler reads from a cached pod.
pub fn pod(pod: &mut Pod) {
    managed_fields(pod);
    if let Some(spec) = pod.spec.take() {
        pod.spec = Some(PodSpec {
            node_name: spec.node_name,
            ..PodSpec::default()
        });
    }
    if let Some(status) = pod.status.take() {
        pod.status = Some(PodStatus {
            phase: status.phase,
            conditions: status.conditions,
            ..PodStatus::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use kube::ResourceExt;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_pod_keeps_what_reconcilers_read_and_loses_the_rest() {
        let mut broker: Pod = serde_json::from_value(json!({
            "metadata": {
                "name": "cams-1-pod", "namespace": "ns", "uid": "u-1",
                "labels": { "ambit.dev/device": "cams-1" },
                "annotations": { "ambit.dev/spec-hash": "h", "ambit.dev/node": "edge-1" },
                "ownerReferences": [{ "apiVersion": "ambit.dev/v1alpha1", "kind": "Device", "name": "cams-1", "uid": "d-1" }],
                "managedFields": [{ "manager": "ambit-controller", "operation": "Apply" }],
            },
            "spec": {
                "nodeName": "edge-1",
                "containers": [{ "name": "broker", "image": "example/broker:1", "env": [{ "name": "AMBIT_DEVICE_ID", "value": "cam" }] }],
                "volumes": [{ "name": "token", "projected": { "sources": [] } }],
                "tolerations": [{ "key": "node.kubernetes.io/not-ready", "operator": "Exists" }],
            },
            "status": {
                "phase": "Running",
                "conditions": [{ "type": "Ready", "status": "True" }],
                "podIP": "10.0.0.9",
                "containerStatuses": [{ "name": "broker", "image": "example/broker:1", "imageID": "", "ready": true, "restartCount": 0 }],
            },
        }))
        .unwrap();
        pod(&mut broker);

        assert!(broker.metadata.managed_fields.is_none());
        assert_eq!(broker.labels()["ambit.dev/device"], "cams-1");
        assert_eq!(broker.annotations()["ambit.dev/node"], "edge-1");
        assert_eq!(broker.owner_references()[0].uid, "d-1");
        let spec = broker.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("edge-1"));
        assert!(spec.containers.is_empty() && spec.volumes.is_none() && spec.tolerations.is_none());
        let status = broker.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.conditions.as_ref().unwrap()[0].type_, "Ready");
        assert!(status.pod_ip.is_none() && status.container_statuses.is_none());
    }

    #[test]
    fn a_pod_without_spec_or_status_stays_without() {
        let mut bare = Pod::default();
        pod(&mut bare);
        assert!(bare.spec.is_none() && bare.status.is_none());
    }
}
