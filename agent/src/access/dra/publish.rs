//! Publishes this node's pool: its local devices, one DRA device per slot,
//! as ResourceSlices named `ambit-<node>-<i>`, owned by the Node (so they go
//! with it). Writes only when the devices change; after a restart it adopts
//! the slices already there when they say the same.

use std::collections::BTreeMap;
use std::time::Duration;

use ambit_crds::contract;
use ambit_discovery::Backoff;
use ambit_dra::{self as dra, Offered, Reach};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::resource::v1::{Device as DraDevice, ResourceSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::access::offers::Offers;

/// The DRA devices of this node's local devices, in Device order.
pub fn local_devices(offers: &Offers, node: &str) -> Vec<DraDevice> {
    offers
        .values()
        .filter(|o| !o.spec.shared && o.spec.node.as_deref() == Some(node))
        .flat_map(|o| {
            dra::devices_of(&Offered {
                namespace: &o.namespace,
                name: &o.name,
                spec: &o.spec,
            })
        })
        .collect()
}

/// Keeps this node's pool in step with its offers until the channel closes.
pub async fn run(client: Client, node: String, mut offers: watch::Receiver<Offers>) {
    let api: Api<ResourceSlice> = Api::all(client.clone());
    let owner = node_owner(&client, &node).await;
    let mut published: Option<Vec<DraDevice>> = None;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        let devices = local_devices(&offers.borrow_and_update(), &node);
        if published.as_ref() != Some(&devices) {
            match sync(&api, &node, owner.as_ref(), &devices).await {
                Ok(()) => {
                    backoff.reset();
                    published = Some(devices);
                }
                Err(error) => {
                    let delay = backoff.next_delay();
                    warn!(%error, retry_in = ?delay, "failed to publish this node's ResourceSlices");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
        }
        if offers.changed().await.is_err() {
            return;
        }
    }
}

/// The Node as owner of its slices; `None` if it cannot be read (the slices
/// are then left for the next start to adopt).
async fn node_owner(client: &Client, node: &str) -> Option<OwnerReference> {
    let api: Api<Node> = Api::all(client.clone());
    for _ in 0..10 {
        match api.get_opt(node).await {
            Ok(Some(n)) => {
                return n.controller_owner_ref(&()).map(|mut o| {
                    o.controller = Some(false);
                    o.block_owner_deletion = None;
                    o
                });
            }
            Ok(None) => {
                warn!(
                    node,
                    "the Node object does not exist; its ResourceSlices get no owner"
                );
                return None;
            }
            Err(error) => {
                debug!(%error, "failed to read the Node; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    None
}

/// Makes the API hold exactly `devices` in this node's pool.
async fn sync(
    api: &Api<ResourceSlice>,
    node: &str,
    owner: Option<&OwnerReference>,
    devices: &[DraDevice],
) -> kube::Result<()> {
    let pool = dra::node_pool(node);
    let selector = format!("{}={}", dra::POOL_LABEL, dra::label_value(&pool));
    let existing: BTreeMap<String, ResourceSlice> = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|s| s.spec.driver == dra::DRIVER && s.spec.pool.name == pool)
        .map(|s| (s.name_any(), s))
        .collect();
    let generation = existing
        .values()
        .map(|s| s.spec.pool.generation)
        .max()
        .unwrap_or(0);
    let prefix = format!("ambit-{}", dra::label_value(node));
    let mut labels = BTreeMap::new();
    labels.insert(contract::MANAGED_BY.into(), contract::AGENT.into());
    let build = |generation| {
        if devices.is_empty() {
            vec![]
        } else {
            dra::slices(
                &prefix,
                &pool,
                &Reach::Node(node),
                devices.to_vec(),
                generation,
                owner.cloned(),
                &labels,
            )
        }
    };
    // What is there already says the same (a restart): nothing to write.
    let unchanged = build(generation);
    let same = unchanged.len() == existing.len()
        && unchanged.iter().all(|want| {
            existing.get(&want.name_any()).is_some_and(|have| {
                dra::same_content(&want.spec, &have.spec) && have.spec.pool.generation == generation
            })
        });
    if same {
        debug!(
            slices = existing.len(),
            "this node's ResourceSlices are current"
        );
        return Ok(());
    }
    let desired = build(generation + 1);
    let params = PatchParams::apply(&contract::agent_manager(node)).force();
    for slice in &desired {
        let name = slice.name_any();
        api.patch(&name, &params, &Patch::Apply(slice)).await?;
    }
    for name in existing.keys() {
        if !desired
            .iter()
            .any(|s| s.metadata.name.as_ref() == Some(name))
        {
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
    }
    info!(
        devices = devices.len(),
        slices = desired.len(),
        generation = generation + 1,
        "published this node's ResourceSlices"
    );
    Ok(())
}
