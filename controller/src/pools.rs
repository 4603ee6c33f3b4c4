//! The ResourceSlices of shared (network) devices, decided without I/O: one
//! DRA pool per Device, `shared/<namespace>/<device>`, whose node selector
//! names every node that currently sees it, so the scheduler places a pod
//! that claims it only on those nodes. The controller writes them (one
//! writer for a fact that spans nodes); each agent publishes its own node's
//! local devices.
//!
//! ```text
//!  Device + the hostnames of the nodes that see it + its cached slices
//!    ─► plan ─► None (they say it already) | Some(slices to apply, names to delete)
//! ```
//! Slices are named `ambit-shared-<hash>-<i>` and labelled with the
//! Device's uid; they change only when the nodes or the device change (the
//! pool's generation grows each time).

use std::collections::{BTreeMap, BTreeSet};

use ambit_crds::contract::{self, MANAGED_BY};
use ambit_crds::v1alpha1::Device;
use ambit_dra::{self as dra, DEVICE_UID_LABEL, Offered, Reach};
use k8s_openapi::api::resource::v1::ResourceSlice;
use kube::ResourceExt;

use crate::labels::{self, NAMESPACE_LABEL};

/// The name every slice of the Device `namespace/name` starts with (then
/// `-0`, `-1`, ...).
pub fn prefix(namespace: &str, name: &str) -> String {
    format!(
        "ambit-shared-{}",
        labels::short_hash(&[namespace, name], 16)
    )
}

/// What to write so that a Device's slices say what they should.
#[derive(Debug, Default, PartialEq)]
pub struct SlicePlan {
    /// Slices to apply (server-side), in order.
    pub apply: Vec<ResourceSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

/// The slices `device` should have, given the hostnames of the nodes that
/// see it now (`hostnames`, sorted and without repeats) and the slices
/// cached for it (`existing`, `prefix-0`, `prefix-1`, ... in order): `None`
/// when they say it already. A local device, or one no node sees, has none.
pub fn plan(
    device: &Device,
    hostnames: &[String],
    existing: &[ResourceSlice],
) -> Option<SlicePlan> {
    let namespace = device.namespace().unwrap_or_default();
    let name = device.name_any();
    let uid = device.uid().unwrap_or_default();
    let prefix = prefix(&namespace, &name);
    let desired = |generation| {
        if !device.spec.shared || hostnames.is_empty() {
            return vec![];
        }
        let mut labels = BTreeMap::new();
        labels.insert(DEVICE_UID_LABEL.to_owned(), uid.clone());
        labels.insert(NAMESPACE_LABEL.to_owned(), namespace.clone());
        labels.insert(MANAGED_BY.into(), contract::CONTROLLER.into());
        let devices = dra::devices_of(&Offered {
            namespace: &namespace,
            name: &name,
            spec: &device.spec,
        });
        dra::slices(
            &prefix,
            &dra::shared_pool(&namespace, &name),
            &Reach::Nodes(hostnames),
            devices,
            generation,
            None,
            &labels,
        )
    };
    let generation = existing
        .iter()
        .map(|s| s.spec.pool.generation)
        .max()
        .unwrap_or(0);
    let now = desired(generation);
    let same = now.len() == existing.len()
        && now.iter().zip(existing).all(|(want, have)| {
            want.metadata.name == have.metadata.name
                && have.labels().get(DEVICE_UID_LABEL) == Some(&uid)
                && have.spec.pool.generation == generation
                && dra::same_content(&want.spec, &have.spec)
        });
    if same {
        return None;
    }
    let apply = desired(generation + 1);
    let keep: BTreeSet<String> = apply.iter().map(ResourceExt::name_any).collect();
    let delete = existing
        .iter()
        .map(ResourceExt::name_any)
        .filter(|n| !keep.contains(n))
        .collect();
    Some(SlicePlan { apply, delete })
}

/// The slices among `slices` whose Device is gone: those labelled with a
/// uid that is not in `live` (slices are cluster-scoped, so garbage
/// collection cannot follow a namespaced owner).
pub fn orphans<'a>(
    slices: impl IntoIterator<Item = &'a ResourceSlice>,
    live: &BTreeSet<String>,
) -> Vec<String> {
    slices
        .into_iter()
        .filter(|s| {
            s.labels()
                .get(DEVICE_UID_LABEL)
                .is_some_and(|uid| !live.contains(uid))
        })
        .map(ResourceExt::name_any)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn device(shared: bool) -> Device {
        serde_json::from_value(json!({
            "apiVersion": "ambit.dev/v1alpha1", "kind": "Device",
            "metadata": { "name": "cams-1", "namespace": "ns", "uid": "u1" },
            "spec": { "deviceSet": "cams", "id": "cam", "shared": shared, "capacity": 2 },
        }))
        .unwrap()
    }

    #[test]
    fn slices_follow_the_nodes_and_rest_when_they_say_it() {
        let nodes = ["edge-1".to_owned(), "edge-2".to_owned()];
        let first = plan(&device(true), &nodes, &[]).unwrap();
        assert!(!first.apply.is_empty());
        assert!(first.delete.is_empty());
        assert!(first.apply.iter().all(|s| s.spec.pool.generation == 1));
        assert_eq!(plan(&device(true), &nodes, &first.apply), None);

        let fewer = plan(&device(true), &nodes[..1], &first.apply).unwrap();
        assert!(fewer.apply.iter().all(|s| s.spec.pool.generation == 2));

        let gone = plan(&device(true), &[], &first.apply).unwrap();
        assert!(gone.apply.is_empty());
        assert_eq!(gone.delete.len(), first.apply.len());
    }

    #[test]
    fn only_slices_of_devices_that_are_gone_are_orphans() {
        let nodes = ["edge-1".to_owned()];
        let slices = plan(&device(true), &nodes, &[]).unwrap().apply;
        let live = BTreeSet::from(["u1".to_owned()]);
        assert!(orphans(&slices, &live).is_empty());
        let names: Vec<_> = slices.iter().map(ResourceExt::name_any).collect();
        assert_eq!(orphans(&slices, &BTreeSet::new()), names);
        // A slice without the label is not the controller's to delete.
        let mut foreign = slices[0].clone();
        foreign.labels_mut().remove(DEVICE_UID_LABEL);
        assert!(orphans([&foreign], &BTreeSet::new()).is_empty());
    }

    #[test]
    fn a_local_device_has_no_slices() {
        assert_eq!(plan(&device(false), &["edge-1".to_owned()], &[]), None);
    }
}
