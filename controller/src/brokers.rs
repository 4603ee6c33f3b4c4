//! Broker pods: which pods a Device should have, and what each looks like.
//! Pure functions; the reconciler applies their answer.
//!
//! The rule, for a DeviceSet with `broker.pod`:
//! - at most `capacity` pods per Device, at most one per node that sees it;
//! - a pod on a node that still sees the device stays (no reshuffling when
//!   another node appears); free slots go to the nodes that have seen the
//!   device longest (then by name);
//! - a pod whose node no longer sees the device goes; a pod that ended is
//!   replaced, after a backoff if it keeps failing; a pod built from an older
//!   spec is replaced;
//! - a pod being deleted still holds its slot until it is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ambit_crds::contract::{NODE_LABEL, SPEC_HASH};
use ambit_crds::v1alpha1::{Device, DeviceSet};
use k8s_openapi::api::core::v1::{
    Affinity, Container, EnvVar, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, Pod, PodSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::labels;

/// Why a broker pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Its node no longer sees the device.
    NodeLost,
    /// It ended (Succeeded or Failed) and will be replaced.
    Ended,
    /// It was built from an older spec (the DeviceSet or the Device changed).
    Outdated,
    /// There are more pods than the device's capacity.
    OverCapacity,
}

impl Removal {
    /// The Event reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NodeLost => "BrokerNodeLost",
            Self::Ended => "BrokerEnded",
            Self::Outdated => "BrokerOutdated",
            Self::OverCapacity => "BrokerOverCapacity",
        }
    }
}

/// What to do with a Device's broker pods.
#[derive(Debug, Default)]
pub struct Plan {
    /// Pods to create.
    pub create: Vec<Pod>,
    /// Pods to delete, with why.
    pub delete: Vec<(String, Removal)>,
    /// Nodes that see the device but get no pod because capacity is used up.
    pub over_capacity: Vec<String>,
    /// When to look again because a node is in its failure backoff.
    pub retry_after: Option<Duration>,
}

/// The node a broker pod is for.
pub fn node_of(pod: &Pod) -> Option<&str> {
    pod.annotations().get(NODE_LABEL).map(String::as_str)
}

fn ended(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Plans the broker pods of `device`. `pods` are the pods the Device owns;
/// `backoff` says, per node, how long a replacement must still wait.
pub fn plan(
    device: &Device,
    set: &DeviceSet,
    template: &PodSpec,
    pods: &[&Pod],
    backoff: &BTreeMap<String, Duration>,
) -> Plan {
    let mut plan = Plan::default();
    let capacity = usize::try_from(device.spec.capacity.max(1)).unwrap_or(1);
    let mut entries: Vec<(&str, &k8s_openapi::jiff::Timestamp)> = device
        .status
        .iter()
        .flat_map(|s| &s.nodes)
        .map(|n| (n.node.as_str(), &n.since.0))
        .collect();
    entries.sort_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)));
    let seen: BTreeSet<&str> = entries.iter().map(|(n, _)| *n).collect();

    // Pods that hold a slot: terminating ones until they are gone, and
    // healthy, current ones on nodes that still see the device.
    let mut held: BTreeSet<String> = BTreeSet::new();
    let mut holding = 0usize;
    let mut by_age: Vec<&&Pod> = pods.iter().collect();
    by_age.sort_by_key(|p| (p.creation_timestamp(), p.name_any()));
    for pod in by_age {
        let node = node_of(pod).unwrap_or_default().to_owned();
        if pod.metadata.deletion_timestamp.is_some() {
            holding += 1;
            held.insert(node);
            continue;
        }
        let removal = if !seen.contains(node.as_str()) {
            Some(Removal::NodeLost)
        } else if ended(pod) {
            Some(Removal::Ended)
        } else if pod.annotations().get(SPEC_HASH) != Some(&pod_hash(device, set, template, &node))
        {
            Some(Removal::Outdated)
        } else if held.contains(&node) || holding >= capacity {
            Some(Removal::OverCapacity)
        } else {
            None
        };
        match removal {
            Some(removal) => plan.delete.push((pod.name_any(), removal)),
            None => {
                holding += 1;
                held.insert(node);
            }
        }
    }

    for (node, _) in entries {
        if held.contains(node) {
            continue;
        }
        if holding >= capacity {
            plan.over_capacity.push(node.to_owned());
            continue;
        }
        // A pod being replaced on this node waits for its deletion first.
        if plan
            .delete
            .iter()
            .any(|(name, _)| *name == pod_name(device, node))
        {
            continue;
        }
        if let Some(wait) = backoff.get(node) {
            plan.retry_after = Some(plan.retry_after.map_or(*wait, |r| r.min(*wait)));
            continue;
        }
        plan.create.push(broker_pod(device, set, template, node));
        holding += 1;
    }
    plan
}

/// The name of the broker pod of `device` on `node`: stable, so a restart of
/// the controller finds the same pods.
pub fn pod_name(device: &Device, node: &str) -> String {
    format!("{}-{}", device.name_any(), labels::short_hash(&[node], 8))
}

fn pod_hash(device: &Device, set: &DeviceSet, template: &PodSpec, node: &str) -> String {
    labels::spec_hash(&broker_pod_spec(device, set, template, node))
}

/// The broker pod of `device` on `node`.
pub fn broker_pod(device: &Device, set: &DeviceSet, template: &PodSpec, node: &str) -> Pod {
    let spec = broker_pod_spec(device, set, template, node);
    let mut annotations = BTreeMap::new();
    annotations.insert(NODE_LABEL.to_owned(), node.to_owned());
    annotations.insert(SPEC_HASH.to_owned(), labels::spec_hash(&spec));
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(device, node)),
            namespace: device.namespace(),
            labels: Some(labels::of(
                &set.name_any(),
                Some(&device.name_any()),
                Some(node),
            )),
            annotations: Some(annotations),
            owner_references: device.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn broker_pod_spec(device: &Device, set: &DeviceSet, template: &PodSpec, node: &str) -> PodSpec {
    let mut spec = template.clone();
    pin_to_nodes(&mut spec, &[node]);
    crate::access::apply(
        &mut spec,
        device,
        set.spec.broker.as_ref().and_then(|b| b.access),
    );
    let env = device_env(device, set, Some(node));
    for container in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        add_env(container, &env);
    }
    spec
}

/// The environment a broker gets: the device's properties, then its
/// identity. A container's own variables of the same name come later in the
/// list, and so win.
pub fn device_env(device: &Device, set: &DeviceSet, node: Option<&str>) -> Vec<EnvVar> {
    let mut env: Vec<EnvVar> = device
        .spec
        .properties
        .iter()
        .map(|(name, value)| EnvVar {
            name: name.clone(),
            value: Some(value.clone()),
            value_from: None,
        })
        .collect();
    let identity = [
        ("AMBIT_DEVICE", Some(device.name_any())),
        ("AMBIT_DEVICE_SET", Some(set.name_any())),
        ("AMBIT_DEVICE_ID", Some(device.spec.id.clone())),
        ("AMBIT_NODE_NAME", node.map(str::to_owned)),
    ];
    env.extend(identity.into_iter().filter_map(|(name, value)| {
        value.map(|value| EnvVar {
            name: name.to_owned(),
            value: Some(value),
            value_from: None,
        })
    }));
    env
}

/// Puts `env` before the container's own variables.
pub fn add_env(container: &mut Container, env: &[EnvVar]) {
    let own = container.env.take().unwrap_or_default();
    container.env = Some(env.iter().cloned().chain(own).collect());
}

/// ANDs "runs on one of `nodes`" into every required node-affinity term of
/// `spec` (adding a term when there is none), so the user's own constraints
/// still hold: a pod that cannot satisfy both stays Pending, visibly,
/// instead of running where the user said it must not.
pub fn pin_to_nodes(spec: &mut PodSpec, nodes: &[&str]) {
    let requirement = NodeSelectorRequirement {
        key: "metadata.name".to_owned(),
        operator: "In".to_owned(),
        values: Some(nodes.iter().map(|n| (*n).to_owned()).collect()),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = node_affinity
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(|| NodeSelector {
            node_selector_terms: vec![],
        });
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_fields
            .get_or_insert_with(Vec::new)
            .push(requirement.clone());
    }
}

#[cfg(test)]
mod tests;
