//! Ambit's Kubernetes API: the `DeviceSet`, `Device` and `DeviceReport` custom resources of
//! `ambit.dev/v1alpha1`, their condition vocabulary, the stable naming of
//! Devices, and the [`contract`] between agents and controller (field
//! managers, labels, annotations, grace defaults).
//!
//! This crate only defines types and the names that go with them. The CRD
//! manifests under `crds/manifests/` are generated from them (`ambit crds
//! --out crds/manifests`), and a test fails when the committed files are
//! stale. How Devices become DRA ResourceSlices is the `ambit-dra` crate.

pub mod conditions;
pub mod contract;
pub mod names;
pub mod v1alpha1;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every Ambit resource.
pub const GROUP: &str = "ambit.dev";

/// Every custom resource definition of the API, in the order to apply them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        v1alpha1::DeviceSet::crd(),
        v1alpha1::Device::crd(),
        v1alpha1::DeviceReport::crd(),
    ]
}

/// The manifest file name of each CRD (`<plural>.<group>.yaml`) with its YAML.
pub fn manifests() -> Result<Vec<(String, String)>, serde_yaml_ng::Error> {
    crds()
        .into_iter()
        .map(|crd| {
            let file = format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"));
            let yaml = serde_yaml_ng::to_string(&crd)?;
            Ok((file, format!("{HEADER}{yaml}")))
        })
        .collect()
}

const HEADER: &str = "# Generated from the Rust types in crds/src by `ambit crds --out crds/manifests`.\n# Do not edit by hand.\n";

#[cfg(test)]
mod tests;
