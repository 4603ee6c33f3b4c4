//! One resource's DevicePlugin service, as the kubelet calls it:
//! ListAndWatch streams the resource's slots (again on every change),
//! GetPreferredAllocation spreads pods over devices, and Allocate claims
//! the slots and answers with what the container gets.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::Stream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::Shared;
use super::claims;
use super::slots::SlotKey;
use crate::access::cdi;
use crate::access::kubelet::proto::deviceplugin as pb;
use crate::access::offers::Offers;

/// The kubelet's health values.
const HEALTHY: &str = "Healthy";
const UNHEALTHY: &str = "Unhealthy";

/// The device list of a resource, as ListAndWatch sends it.
pub fn devices(list: &[(String, bool)]) -> Vec<pb::Device> {
    list.iter()
        .map(|(id, healthy)| pb::Device {
            id: id.clone(),
            health: if *healthy { HEALTHY } else { UNHEALTHY }.to_owned(),
            topology: None,
        })
        .collect()
}

/// The DevicePlugin service of one resource.
#[derive(Debug)]
pub struct Plugin {
    /// The resource, `ambit.dev/<name>`.
    pub resource: String,
    /// What all plugins share.
    pub shared: Arc<Shared>,
    /// The resource's device list.
    pub list: watch::Receiver<Vec<pb::Device>>,
    /// Cancelled when the server stops: ends the streams.
    pub stop: CancellationToken,
}

/// What a container that got `slots` receives: the devices' environment
/// (the first device's value wins a clash), device nodes, mounts and CDI
/// names.
pub fn container_response(
    offers: &Offers,
    written: &cdi::Written,
    node: &str,
    slots: &[SlotKey],
) -> pb::ContainerAllocateResponse {
    let mut response = pb::ContainerAllocateResponse::default();
    let mut envs: HashMap<String, String> = HashMap::new();
    let mut seen = BTreeSet::new();
    for (key, _) in slots {
        if !seen.insert(key) {
            continue;
        }
        let Some(offer) = offers.get(key) else {
            continue;
        };
        for (name, value) in cdi::device_env(offer, node) {
            envs.entry(name).or_insert(value);
        }
        for device in &offer.spec.device_nodes {
            let spec = pb::DeviceSpec {
                container_path: device
                    .container_path
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| device.host_path.clone()),
                host_path: device.host_path.clone(),
                permissions: device
                    .permissions
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "rw".into()),
            };
            if !response.devices.contains(&spec) {
                response.devices.push(spec);
            }
        }
        for mount in &offer.spec.mounts {
            let mount = pb::Mount {
                container_path: mount.container_path.clone(),
                host_path: mount.host_path.clone(),
                read_only: mount.read_only,
            };
            if !response.mounts.contains(&mount) {
                response.mounts.push(mount);
            }
        }
        if let Some(name) = written.get(key) {
            response
                .cdi_devices
                .push(pb::CdiDevice { name: name.clone() });
        }
    }
    response.envs = envs;
    response
}

impl Plugin {
    async fn allocate_ids(
        &self,
        requests: Vec<Vec<String>>,
    ) -> Result<Vec<pb::ContainerAllocateResponse>, Status> {
        let shared = &self.shared;
        let _writes = shared.writes.lock().await;
        let mut containers: Vec<Vec<SlotKey>> = vec![];
        let mut new: Vec<SlotKey> = vec![];
        {
            let state = shared.state();
            for ids in &requests {
                let mut slots = vec![];
                for id in ids {
                    let (slot, held) = state.check(&self.resource, id).map_err(|refusal| {
                        shared.metrics.slot_allocation_error(refusal.reason());
                        warn!(resource = %self.resource, %id, %refusal, "Allocate refused");
                        Status::failed_precondition(format!("cannot allocate {id}: {refusal}"))
                    })?;
                    if !held && !new.contains(&slot) {
                        new.push(slot.clone());
                    }
                    slots.push(slot);
                }
                containers.push(slots);
            }
        }
        if !new.is_empty() {
            claims::claim(shared, &self.resource, &new)
                .await
                .map_err(|message| {
                    warn!(resource = %self.resource, %message, "Allocate refused");
                    Status::failed_precondition(format!(
                        "cannot allocate {}: {message}",
                        requests.concat().join(", ")
                    ))
                })?;
        }
        shared.changed.notify_one();
        info!(resource = %self.resource, ids = %requests.concat().join(","), "allocated");
        let offers = shared.state().offers().clone();
        let written = shared.cdi.borrow().clone();
        Ok(containers
            .iter()
            .map(|slots| container_response(&offers, &written, &shared.node, slots))
            .collect())
    }
}

/// Picks `size` IDs: the required ones, then free ones of the devices with
/// the fewest slots taken in this request (spreading pods over devices).
pub fn preferred(available: &[String], must: &[String], size: usize) -> Vec<String> {
    let mut chosen: Vec<String> = must.to_vec();
    let device = |id: &str| {
        id.rsplit_once('-')
            .map_or(id.to_owned(), |(d, _)| d.to_owned())
    };
    let mut taken: BTreeMap<String, usize> = BTreeMap::new();
    for id in &chosen {
        *taken.entry(device(id)).or_default() += 1;
    }
    let mut rest: Vec<&String> = available.iter().filter(|id| !chosen.contains(id)).collect();
    while chosen.len() < size && !rest.is_empty() {
        let best = rest
            .iter()
            .enumerate()
            .min_by_key(|(_, id)| taken.get(&device(id)).copied().unwrap_or(0))
            .map_or(0, |(i, _)| i);
        let id = rest.remove(best).clone();
        *taken.entry(device(&id)).or_default() += 1;
        chosen.push(id);
    }
    chosen
}

type ListStream = std::pin::Pin<
    Box<dyn Stream<Item = Result<pb::ListAndWatchResponse, Status>> + Send + 'static>,
>;

#[tonic::async_trait]
impl pb::device_plugin_server::DevicePlugin for Plugin {
    async fn get_device_plugin_options(
        &self,
        _: Request<pb::Empty>,
    ) -> Result<Response<pb::DevicePluginOptions>, Status> {
        Ok(Response::new(super::kubelet::options()))
    }

    type ListAndWatchStream = ListStream;

    async fn list_and_watch(
        &self,
        _: Request<pb::Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let mut list = self.list.clone();
        list.mark_changed();
        let stop = self.stop.clone();
        let stream = futures::stream::unfold((list, stop), |(mut list, stop)| async move {
            tokio::select! {
                changed = list.changed() => {
                    changed.ok()?;
                    let devices = list.borrow_and_update().clone();
                    Some((Ok(pb::ListAndWatchResponse { devices }), (list, stop)))
                }
                () = stop.cancelled() => None,
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<pb::PreferredAllocationRequest>,
    ) -> Result<Response<pb::PreferredAllocationResponse>, Status> {
        let container_responses = request
            .into_inner()
            .container_requests
            .into_iter()
            .map(|r| pb::ContainerPreferredAllocationResponse {
                device_i_ds: preferred(
                    &r.available_device_i_ds,
                    &r.must_include_device_i_ds,
                    usize::try_from(r.allocation_size).unwrap_or(0),
                ),
            })
            .collect();
        Ok(Response::new(pb::PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        request: Request<pb::AllocateRequest>,
    ) -> Result<Response<pb::AllocateResponse>, Status> {
        let requests = request
            .into_inner()
            .container_requests
            .into_iter()
            .map(|r| r.devices_ids)
            .collect();
        let container_responses = self.allocate_ids(requests).await?;
        Ok(Response::new(pb::AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<pb::PreStartContainerRequest>,
    ) -> Result<Response<pb::PreStartContainerResponse>, Status> {
        Ok(Response::new(pb::PreStartContainerResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferred_allocations_spread_over_devices() {
        let available: Vec<String> = ["a-0", "a-1", "b-0", "b-1"].map(String::from).to_vec();
        assert_eq!(preferred(&available, &[], 2), ["a-0", "b-0"]);
        assert_eq!(preferred(&available, &["a-1".into()], 2), ["a-1", "b-0"]);
        assert_eq!(preferred(&available, &[], 9).len(), 4);
    }
}
