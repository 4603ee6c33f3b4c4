//! How a broker pod gets its device (`broker.access`). Pure functions.
//!
//! - unset: the device's properties in the environment only;
//! - `DevicePlugin`: the first container requests one slot of the kubelet
//!   resource `ambit.dev/<device>` (the agent's device plugin hands over
//!   device nodes, mounts and the CDI device);
//! - `DRA`: the pod claims the device through a ResourceClaimTemplate
//!   named after the Device (owned by it), whose one request selects
//!   exactly that Device; Kubernetes creates a ResourceClaim per pod from
//!   it, and the scheduler allocates one of the device's slots on a node
//!   that sees it. Every container may use the claim.

use std::collections::BTreeMap;

use ambit_crds::contract;
use ambit_crds::v1alpha1::{Access, Device};
use ambit_dra::DRIVER;
use k8s_openapi::api::core::v1::{PodResourceClaim, PodSpec, ResourceClaim as ContainerClaim};
use k8s_openapi::api::resource::v1::{
    CELDeviceSelector, DeviceClaim, DeviceRequest, DeviceSelector, ExactDeviceRequest,
    ResourceClaimSpec, ResourceClaimTemplate, ResourceClaimTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::labels;

/// The name of the claim in a broker pod's `resourceClaims`, and of the
/// request in the template.
pub const CLAIM: &str = "ambit-device";

/// The kubelet resource of a Device, as the agent's device plugin offers it.
pub fn resource_name(device: &Device) -> String {
    contract::resource(&device.name_any())
}

/// Adds what `access` needs to a broker's pod spec.
pub fn apply(spec: &mut PodSpec, device: &Device, access: Option<Access>) {
    match access {
        None => {}
        Some(Access::DevicePlugin) => {
            if let Some(container) = spec.containers.first_mut() {
                let resources = container.resources.get_or_insert_with(Default::default);
                let one = Quantity("1".into());
                for list in [&mut resources.limits, &mut resources.requests] {
                    list.get_or_insert_with(BTreeMap::new)
                        .insert(resource_name(device), one.clone());
                }
            }
        }
        Some(Access::Dra) => {
            let claims = spec.resource_claims.get_or_insert_with(Vec::new);
            claims.retain(|c| c.name != CLAIM);
            claims.push(PodResourceClaim {
                name: CLAIM.into(),
                resource_claim_template_name: Some(template_name(device)),
                resource_claim_name: None,
            });
            for container in &mut spec.containers {
                let resources = container.resources.get_or_insert_with(Default::default);
                let claims = resources.claims.get_or_insert_with(Vec::new);
                if !claims.iter().any(|c| c.name == CLAIM) {
                    claims.push(ContainerClaim {
                        name: CLAIM.into(),
                        request: None,
                    });
                }
            }
        }
    }
}

/// The ResourceClaimTemplate of a Device: the Device's own name.
pub fn template_name(device: &Device) -> String {
    device.name_any()
}

/// The CEL expression that selects exactly `device`'s slots.
pub fn selector(device: &Device) -> String {
    format!(
        "device.attributes[\"{DRIVER}\"].device == \"{}\" && device.attributes[\"{DRIVER}\"].namespace == \"{}\"",
        device.name_any(),
        device.namespace().unwrap_or_default()
    )
}

/// The ResourceClaimTemplate that broker pods of `device` claim it through.
pub fn claim_template(device: &Device, set: &str) -> ResourceClaimTemplate {
    ResourceClaimTemplate {
        metadata: ObjectMeta {
            name: Some(template_name(device)),
            namespace: device.namespace(),
            labels: Some(labels::of(set, Some(&device.name_any()), None)),
            owner_references: device.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: ResourceClaimTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels::of(set, Some(&device.name_any()), None)),
                ..Default::default()
            }),
            spec: ResourceClaimSpec {
                devices: Some(DeviceClaim {
                    requests: Some(vec![DeviceRequest {
                        name: CLAIM.into(),
                        exactly: Some(ExactDeviceRequest {
                            device_class_name: DRIVER.into(),
                            allocation_mode: Some("ExactCount".into()),
                            count: Some(1),
                            selectors: Some(vec![DeviceSelector {
                                cel: Some(CELDeviceSelector {
                                    expression: selector(device),
                                }),
                            }]),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use ambit_crds::v1alpha1::DeviceSpec;
    use k8s_openapi::api::core::v1::Container;

    use super::*;

    fn device() -> Device {
        let mut device = Device::new(
            "cams-0123",
            DeviceSpec {
                device_set: "cams".into(),
                id: "cam".into(),
                shared: true,
                node: None,
                capacity: 1,
                properties: BTreeMap::new(),
                device_nodes: vec![],
                mounts: vec![],
            },
        );
        device.metadata.namespace = Some("plant".into());
        device.metadata.uid = Some("u1".into());
        device
    }

    fn spec() -> PodSpec {
        PodSpec {
            containers: vec![
                Container {
                    name: "a".into(),
                    ..Default::default()
                },
                Container {
                    name: "b".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn device_plugin_access_requests_one_slot_in_the_first_container() {
        let mut spec = spec();
        apply(&mut spec, &device(), Some(Access::DevicePlugin));
        let limits = spec.containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .unwrap_or_default();
        assert_eq!(
            limits.get("ambit.dev/cams-0123"),
            Some(&Quantity("1".into()))
        );
        assert!(
            spec.containers[1].resources.is_none(),
            "one slot, not one per container"
        );
    }

    #[test]
    fn dra_access_claims_the_device_through_its_template_once() {
        let mut spec = spec();
        apply(&mut spec, &device(), Some(Access::Dra));
        apply(&mut spec, &device(), Some(Access::Dra));
        let claims = spec.resource_claims.clone().unwrap_or_default();
        assert_eq!(claims.len(), 1);
        assert_eq!(
            claims[0].resource_claim_template_name.as_deref(),
            Some("cams-0123")
        );
        for container in &spec.containers {
            let names: Vec<String> = container
                .resources
                .as_ref()
                .and_then(|r| r.claims.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.name)
                .collect();
            assert_eq!(names, vec![CLAIM.to_owned()]);
        }
        let template = claim_template(&device(), "cams");
        let expression = template
            .spec
            .spec
            .devices
            .and_then(|d| d.requests)
            .unwrap_or_default()[0]
            .exactly
            .as_ref()
            .and_then(|e| e.selectors.clone())
            .unwrap_or_default()[0]
            .cel
            .clone()
            .map(|c| c.expression)
            .unwrap_or_default();
        assert!(
            expression.contains("== \"cams-0123\"") && expression.contains("== \"plant\""),
            "{expression}"
        );
    }

    #[test]
    fn no_access_changes_nothing() {
        let mut spec = spec();
        apply(&mut spec, &device(), None);
        assert_eq!(spec, self::spec());
    }
}
