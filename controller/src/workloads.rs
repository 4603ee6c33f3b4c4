//! Jobs and Services the controller builds from a DeviceSet. Pure.
//!
//! - `broker.job`: one Job per Device, pinned to the nodes that see the
//!   device when it is created. It runs once for the Device's lifetime: a
//!   device that vanishes and returns within its grace period keeps its
//!   Device, so the Job is not run again; a device that returns after its
//!   Device was deleted is a new Device and gets a new Job. A change of
//!   `broker.job` replaces the Job (it runs again).
//! - `deviceService`: one Service per Device, selecting its broker pods.
//! - `setService`: one Service per DeviceSet, selecting all its broker pods.

use std::collections::BTreeMap;

use ambit_crds::contract::{DEVICE_LABEL, SET_LABEL, SPEC_HASH};
use ambit_crds::v1alpha1::{Device, DeviceSet};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::brokers::{add_env, device_env, pin_to_nodes};
use crate::labels;

/// The name of a Device's Job.
pub fn job_name(device: &Device) -> String {
    labels::dns_label(&device.name_any(), "-job")
}

/// The Job of `device`, from the set's `broker.job`.
pub fn job(device: &Device, set: &DeviceSet, template: &JobSpec) -> Job {
    let mut spec = template.clone();
    let nodes: Vec<&str> = device
        .status
        .iter()
        .flat_map(|s| &s.nodes)
        .map(|n| n.node.as_str())
        .collect();
    let pod = spec.template.spec.get_or_insert_with(Default::default);
    if !nodes.is_empty() {
        pin_to_nodes(pod, &nodes);
    }
    crate::access::apply(pod, device, set.spec.broker.as_ref().and_then(|b| b.access));
    let env = device_env(device, set, None);
    for container in pod
        .containers
        .iter_mut()
        .chain(pod.init_containers.iter_mut().flatten())
    {
        add_env(container, &env);
    }
    let labels = labels::of(&set.name_any(), Some(&device.name_any()), None);
    let template_meta = spec.template.metadata.get_or_insert_with(Default::default);
    template_meta
        .labels
        .get_or_insert_with(BTreeMap::new)
        .extend(labels.clone());
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(device)),
            namespace: device.namespace(),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                SPEC_HASH.to_owned(),
                labels::spec_hash(template),
            )])),
            owner_references: device.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The name of a Device's Service.
pub fn device_service_name(device: &Device) -> String {
    labels::dns_label(&device.name_any(), "-svc")
}

/// The name of a DeviceSet's Service.
pub fn set_service_name(set: &DeviceSet) -> String {
    labels::dns_label(&set.name_any(), "-svc")
}

/// The Service of `device`, selecting its broker pods.
pub fn device_service(device: &Device, set: &DeviceSet, template: &ServiceSpec) -> Service {
    let labels = labels::of(&set.name_any(), Some(&device.name_any()), None);
    let selector = BTreeMap::from([(DEVICE_LABEL.to_owned(), device.name_any())]);
    service(
        device_service_name(device),
        device.namespace(),
        labels,
        selector,
        template,
        device.controller_owner_ref(&()),
    )
}

/// The Service of `set`, selecting all its broker pods.
pub fn set_service(set: &DeviceSet, template: &ServiceSpec) -> Service {
    let labels = labels::of(&set.name_any(), None, None);
    let selector = BTreeMap::from([(SET_LABEL.to_owned(), set.name_any())]);
    service(
        set_service_name(set),
        set.namespace(),
        labels,
        selector,
        template,
        set.controller_owner_ref(&()),
    )
}

fn service(
    name: String,
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
    selector: BTreeMap<String, String>,
    template: &ServiceSpec,
    owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
) -> Service {
    let mut spec = template.clone();
    spec.selector = Some(selector);
    Service {
        metadata: ObjectMeta {
            name: Some(name),
            namespace,
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                SPEC_HASH.to_owned(),
                labels::spec_hash(&spec),
            )])),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Whether an existing object is current: it carries the hash `desired` carries.
pub fn is_current(existing: &impl Resource, desired: &impl Resource) -> bool {
    let existing = labels::spec_hash_of(existing);
    existing.is_some() && existing == labels::spec_hash_of(desired)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fixtures() -> (DeviceSet, Device) {
        let set = serde_json::from_value(json!({
            "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
            "metadata": { "name": "meters", "namespace": "p", "uid": "s" },
            "spec": { "discovery": { "handler": "modbus" },
                      "broker": { "job": { "template": { "spec": {
                          "containers": [{ "name": "read", "image": "r:1" }], "restartPolicy": "Never" } } } },
                      "deviceService": { "ports": [{ "port": 502 }] } },
        }))
        .unwrap();
        let device = serde_json::from_value(json!({
            "apiVersion": "ambit.dev/v1alpha1", "kind": "Device",
            "metadata": { "name": "meters-00112233aabbccdd", "namespace": "p", "uid": "d" },
            "spec": { "deviceSet": "meters", "id": "m1", "shared": true, "capacity": 1, "properties": { "UNIT": "7" } },
            "status": { "nodes": [{ "node": "n1", "since": "2026-01-01T00:00:00Z" }] },
        }))
        .unwrap();
        (set, device)
    }

    #[test]
    fn a_job_runs_where_the_device_is_seen_with_its_properties() {
        let (set, device) = fixtures();
        let template = set
            .spec
            .broker
            .as_ref()
            .and_then(|b| b.job.clone())
            .unwrap();
        let job = job(&device, &set, &template);
        let pod = job.spec.unwrap().template.spec.unwrap();
        let env = pod.containers[0].env.clone().unwrap();
        assert!(
            env.iter()
                .any(|e| e.name == "UNIT" && e.value.as_deref() == Some("7"))
        );
        let term = &pod
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms[0];
        assert_eq!(
            term.match_fields.as_ref().unwrap()[0].values.as_deref(),
            Some(&["n1".to_owned()][..])
        );
        assert_eq!(job.metadata.owner_references.unwrap()[0].uid, "d");
    }

    #[test]
    fn services_select_the_right_pods() {
        let (set, device) = fixtures();
        let template = set.spec.device_service.clone().unwrap();
        let svc = device_service(&device, &set, &template);
        assert_eq!(
            svc.spec.as_ref().unwrap().selector.as_ref().unwrap()[DEVICE_LABEL],
            device.name_any()
        );
        assert_eq!(svc.name_any(), "meters-00112233aabbccdd-svc");
        let set_svc = set_service(&set, &template);
        assert_eq!(
            set_svc.spec.as_ref().unwrap().selector.as_ref().unwrap()[SET_LABEL],
            "meters"
        );
        assert_eq!(set_svc.owner_references()[0].kind, "DeviceSet");
        assert!(is_current(&svc, &device_service(&device, &set, &template)));
        let mut other = template.clone();
        other.ports.get_or_insert_with(Vec::new)[0].port = 503;
        assert!(!is_current(&svc, &device_service(&device, &set, &other)));
    }
}
