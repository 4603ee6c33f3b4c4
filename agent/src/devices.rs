//! Reading the Devices this node recorded before (at start), and noticing
//! Devices that disappear (deleted by someone else, or while the watch was
//! disconnected) so the recorder can write them again if they are still seen.

use std::collections::BTreeSet;
use std::time::Duration;

use ambit_crds::v1alpha1::Device;
use futures::StreamExt;
use kube::api::{ListParams, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;
use tracing::warn;

use crate::recorder::Input;

/// Every Device whose `status.nodes` names `node`, retrying until the API
/// server answers.
pub async fn recorded_by(client: &Client, namespace: Option<&str>, node: &str) -> Vec<Device> {
    let api: Api<Device> = scoped(client.clone(), namespace);
    let mut delay = Duration::from_millis(200);
    loop {
        match list_all(&api).await {
            Ok(devices) => {
                return devices
                    .into_iter()
                    .filter(|d| {
                        d.status
                            .iter()
                            .flat_map(|s| &s.nodes)
                            .any(|n| n.node == node)
                    })
                    .collect();
            }
            Err(error) => {
                warn!(%error, retry_in = ?delay, "failed to list Devices; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn list_all(api: &Api<Device>) -> kube::Result<Vec<Device>> {
    let mut devices = vec![];
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await?;
        devices.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(devices),
        }
    }
}

/// Tells the recorder about every Device deletion (metadata only: cheap).
pub async fn watch_deletions(
    client: Client,
    namespace: Option<String>,
    recorder: mpsc::Sender<Input>,
) {
    let api: Api<PartialObjectMeta<Device>> = scoped(client, namespace.as_deref());
    let events = watcher(api, watcher::Config::default()).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut listing: Option<BTreeSet<(String, String)>> = None;
    let mut known: BTreeSet<(String, String)> = BTreeSet::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                warn!(%error, "Device watch failed; retrying");
                continue;
            }
        };
        match event {
            watcher::Event::Init => listing = Some(BTreeSet::new()),
            watcher::Event::InitApply(meta) | watcher::Event::Apply(meta) => {
                let key = (meta.namespace().unwrap_or_default(), meta.name_any());
                if let Some(listing) = &mut listing {
                    listing.insert(key.clone());
                }
                // What spec the Device has (as its hash): a node that wants
                // the same spec need not apply it again.
                if let Some(hash) = meta.annotations().get(crate::desired::SPEC_HASH) {
                    let input = Input::DeviceSpec {
                        namespace: key.0.clone(),
                        name: key.1.clone(),
                        hash: hash.clone(),
                    };
                    let _ = recorder.send(input).await;
                }
                known.insert(key);
            }
            watcher::Event::Delete(meta) => {
                let key = (meta.namespace().unwrap_or_default(), meta.name_any());
                known.remove(&key);
                let _ = recorder
                    .send(Input::DeviceDeleted {
                        namespace: key.0,
                        name: key.1,
                    })
                    .await;
            }
            watcher::Event::InitDone => {
                // After a relist, Devices that vanished meanwhile get no
                // Delete event: compare with what was known.
                if let Some(listed) = listing.take() {
                    for (namespace, name) in known.difference(&listed) {
                        let input = Input::DeviceDeleted {
                            namespace: namespace.clone(),
                            name: name.clone(),
                        };
                        let _ = recorder.send(input).await;
                    }
                    known = listed;
                }
            }
        }
    }
}

/// An API over one namespace, or all of them.
pub fn scoped<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
    }
}
