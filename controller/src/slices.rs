//! The ResourceSlices of shared (network) devices: one pool per Device,
//! `shared/<namespace>/<device>`, whose node selector names every node that
//! currently sees it, so the scheduler places a pod that claims it only on
//! those nodes. The controller writes them (one writer for a fact that
//! spans nodes); each agent publishes its own node's local devices.
//!
//! Slices are named `ambit-shared-<hash>-<i>` and labelled with the
//! Device's uid; they are rewritten only when the nodes or the device
//! change, and deleted with the Device (a sweep removes any whose Device is
//! gone).

use std::collections::{BTreeMap, BTreeSet};

use ambit_crds::contract::{self, MANAGED_BY};
use ambit_crds::v1alpha1::Device;
use ambit_dra::{self as dra, DEVICE_UID_LABEL, Offered, Reach};
use k8s_openapi::api::resource::v1::ResourceSlice;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::info;

use crate::context::Context;
use crate::error::Error;
use crate::labels;

/// The label naming the Device's namespace, so that controllers scoped to
/// one namespace each see only their own slices.
pub const NAMESPACE_LABEL: &str = "ambit.dev/namespace";

/// The label selector of the slices this controller manages.
pub fn selector(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{DEVICE_UID_LABEL},{NAMESPACE_LABEL}={ns}"),
        None => DEVICE_UID_LABEL.to_owned(),
    }
}

fn prefix(namespace: &str, name: &str) -> String {
    format!(
        "ambit-shared-{}",
        labels::short_hash(&[namespace, name], 16)
    )
}

/// The cached slices of the Device (`prefix-0`, `prefix-1`, ...).
fn cached(ctx: &Context, prefix: &str) -> Vec<ResourceSlice> {
    (0..)
        .map_while(|i| {
            ctx.stores
                .slices
                .get(&ObjectRef::new(&format!("{prefix}-{i}")))
        })
        .map(|s| s.as_ref().clone())
        .collect()
}

/// Makes the slices of `device` say what `nodes` (those that see it now)
/// and its spec say; none for a local device or one no node sees.
pub async fn sync(ctx: &Context, device: &Device, nodes: &[String]) -> Result<(), Error> {
    let namespace = device.namespace().unwrap_or_default();
    let name = device.name_any();
    let uid = device.uid().unwrap_or_default();
    let prefix = prefix(&namespace, &name);
    let existing = cached(ctx, &prefix);
    let api: Api<ResourceSlice> = Api::all(ctx.client.clone());
    // The selector matches the nodes' hostname label (usually their name).
    let mut nodes: Vec<String> = nodes
        .iter()
        .map(|node| {
            ctx.stores
                .nodes
                .get(&ObjectRef::new(node))
                .and_then(|n| n.labels().get(dra::HOSTNAME_LABEL).cloned())
                .unwrap_or_else(|| node.clone())
        })
        .collect();
    nodes.sort();
    nodes.dedup();

    let desired = |generation| {
        if !device.spec.shared || nodes.is_empty() {
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
            &Reach::Nodes(&nodes),
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
        && now.iter().zip(&existing).all(|(want, have)| {
            want.metadata.name == have.metadata.name
                && have.labels().get(DEVICE_UID_LABEL) == Some(&uid)
                && have.spec.pool.generation == generation
                && dra::same_content(&want.spec, &have.spec)
        });
    if same {
        return Ok(());
    }
    let desired = desired(generation + 1);
    let params = PatchParams::apply(contract::CONTROLLER).force();
    for slice in &desired {
        let slice_name = slice.name_any();
        api.patch(&slice_name, &params, &Patch::Apply(slice))
            .await
            .map_err(|source| Error::ApplySlice {
                slice: slice_name.clone(),
                source,
            })?;
    }
    let keep: BTreeSet<String> = desired.iter().map(ResourceExt::name_any).collect();
    for slice in existing.iter().filter(|s| !keep.contains(&s.name_any())) {
        delete(&api, &slice.name_any()).await?;
    }
    info!(
        device = %name,
        nodes = ?nodes,
        slices = desired.len(),
        "published the shared device's ResourceSlices"
    );
    Ok(())
}

async fn delete(api: &Api<ResourceSlice>, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::DeleteSlice {
            slice: name.to_owned(),
            source,
        }),
    }
}

/// Deletes the slices whose Device is gone (slices are cluster-scoped, so
/// garbage collection cannot follow a namespaced owner).
pub async fn sweep(ctx: &Context) -> Result<(), Error> {
    let live: BTreeSet<String> = ctx
        .stores
        .devices
        .state()
        .iter()
        .filter_map(|d| d.uid())
        .collect();
    let api: Api<ResourceSlice> = Api::all(ctx.client.clone());
    for slice in ctx.stores.slices.state() {
        if slice
            .labels()
            .get(DEVICE_UID_LABEL)
            .is_some_and(|uid| !live.contains(uid))
        {
            info!(slice = %slice.name_any(), "deleting the ResourceSlice of a Device that is gone");
            delete(&api, &slice.name_any()).await?;
        }
    }
    Ok(())
}
