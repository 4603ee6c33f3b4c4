//! The kubelet side of DRA: the plugin announces itself in the kubelet's
//! plugin-registration directory, and the kubelet calls it to prepare the
//! devices of each claim a pod on this node uses.
//!
//! Preparing reads the ResourceClaim's allocation from the API, checks that
//! every result of driver `ambit.dev` is a slot of a Device this node sees,
//! and answers with the Device's CDI name (the spec file the agent keeps in
//! the CDI directory for every device it offers, see `crate::access::cdi`).
//! Unpreparing has nothing to undo: the CDI spec belongs to the device, not
//! to the claim.

use std::collections::BTreeMap;
use std::path::Path;

use ambit_discovery::{TransportError, UnixServer};
use ambit_dra as dra;
use ambit_telemetry::tasks::Tasks;
use k8s_openapi::api::resource::v1::ResourceClaim;
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::access::cdi;
use crate::access::kubelet::proto::dra as pb;
use crate::access::kubelet::proto::dra::dra_plugin_server::{DraPlugin, DraPluginServer};
use crate::access::kubelet::proto::pluginregistration as reg;
use crate::access::kubelet::proto::pluginregistration::registration_server::{
    Registration, RegistrationServer,
};
use crate::access::offers::Offers;

/// The registration socket's name in the kubelet's plugins_registry.
pub const REGISTRATION_SOCKET: &str = "ambit.dev-reg.sock";

/// The plugin's own socket's name in its directory.
pub const DRA_SOCKET: &str = "dra.sock";

/// The gRPC service this plugin offers, as the kubelet names it.
const SERVICE_VERSION: &str = "v1.DRAPlugin";

/// Serves both sockets as supervised tasks, until the process stops (the
/// socket files are removed when the tasks are dropped).
pub fn spawn(
    tasks: &mut Tasks,
    client: Client,
    node: String,
    registry_dir: &Path,
    plugin_dir: &Path,
    offers: watch::Receiver<Offers>,
    cdi: watch::Receiver<cdi::Written>,
) -> Result<(), TransportError> {
    let endpoint = plugin_dir.join(DRA_SOCKET);
    let plugin = DraPluginServer::new(Plugin {
        client,
        node,
        offers,
        cdi,
    });
    let server = UnixServer::bind(
        &endpoint,
        tonic::service::Routes::new(plugin),
        CancellationToken::new(),
    )?;
    tasks.spawn("DRA plugin socket", server.run(std::future::pending()));
    let registration = RegistrationServer::new(Registrar {
        endpoint: endpoint.display().to_string(),
    });
    let server = UnixServer::bind(
        &registry_dir.join(REGISTRATION_SOCKET),
        tonic::service::Routes::new(registration),
        CancellationToken::new(),
    )?;
    tasks.spawn(
        "DRA registration socket",
        server.run(std::future::pending()),
    );
    Ok(())
}

#[derive(Debug)]
struct Registrar {
    endpoint: String,
}

#[tonic::async_trait]
impl Registration for Registrar {
    async fn get_info(
        &self,
        _request: Request<reg::InfoRequest>,
    ) -> Result<Response<reg::PluginInfo>, Status> {
        Ok(Response::new(reg::PluginInfo {
            r#type: "DRAPlugin".into(),
            name: dra::DRIVER.into(),
            endpoint: self.endpoint.clone(),
            supported_versions: vec![SERVICE_VERSION.into()],
        }))
    }

    async fn notify_registration_status(
        &self,
        request: Request<reg::RegistrationStatus>,
    ) -> Result<Response<reg::RegistrationStatusResponse>, Status> {
        let status = request.into_inner();
        if status.plugin_registered {
            info!("the kubelet registered the DRA plugin");
        } else {
            warn!(error = %status.error, "the kubelet refused the DRA plugin");
        }
        Ok(Response::new(reg::RegistrationStatusResponse {}))
    }
}

struct Plugin {
    client: Client,
    node: String,
    offers: watch::Receiver<Offers>,
    cdi: watch::Receiver<cdi::Written>,
}

/// The pool key of every shared device in [`Plugin::slots`] (no node's
/// pool has this name: it is not a node name).
const SHARED: &str = "shared/";

impl Plugin {
    /// The devices of one claim, or why they cannot be prepared here.
    async fn prepare(&self, claim: &pb::Claim) -> Result<Vec<pb::Device>, String> {
        let api: Api<ResourceClaim> = Api::namespaced(self.client.clone(), &claim.namespace);
        let object = api
            .get_opt(&claim.name)
            .await
            .map_err(|e| {
                format!(
                    "failed to read ResourceClaim {}/{}: {e}",
                    claim.namespace, claim.name
                )
            })?
            .ok_or_else(|| {
                format!(
                    "ResourceClaim {}/{} does not exist",
                    claim.namespace, claim.name
                )
            })?;
        if object.uid().as_deref() != Some(claim.uid.as_str()) {
            return Err(format!(
                "ResourceClaim {}/{} has uid {}, not {} (it was recreated)",
                claim.namespace,
                claim.name,
                object.uid().unwrap_or_default(),
                claim.uid
            ));
        }
        let results = object
            .status
            .as_ref()
            .and_then(|s| s.allocation.as_ref())
            .and_then(|a| a.devices.as_ref())
            .and_then(|d| d.results.clone())
            .unwrap_or_default();
        let by_slot = self.slots();
        let mut devices = vec![];
        for result in results.iter().filter(|r| r.driver == dra::DRIVER) {
            // A shared device's pool follows the nodes that see it; its
            // DRA device name alone names it.
            let pool = if dra::is_shared_pool(&result.pool) {
                SHARED
            } else {
                result.pool.as_str()
            };
            let Some(key) = by_slot.get(&(pool.to_owned(), result.device.clone())) else {
                return Err(format!(
                    "device {} of pool {} is not one node {} offers (any more)",
                    result.device, result.pool, self.node
                ));
            };
            devices.push(pb::Device {
                request_names: vec![result.request.clone()],
                pool_name: result.pool.clone(),
                device_name: result.device.clone(),
                // No CDI spec (CDI off, or a name taken by another
                // namespace's Device): the pod gets the device without edits.
                cdi_device_ids: self.cdi.borrow().get(key).cloned().into_iter().collect(),
                share_id: None,
            });
        }
        Ok(devices)
    }

    /// Every slot this node can prepare: (pool, DRA device) → Device, with
    /// [`SHARED`] for the pool of every shared device.
    fn slots(&self) -> BTreeMap<(String, String), (String, String)> {
        let offers = self.offers.borrow();
        let mut slots = BTreeMap::new();
        for offer in offers.values() {
            let pool = if offer.spec.shared {
                SHARED.to_owned()
            } else {
                dra::node_pool(&self.node)
            };
            for slot in 0..dra::slots(&offer.spec) {
                slots.insert(
                    (
                        pool.clone(),
                        dra::slot_device_name(&offer.namespace, &offer.name, slot),
                    ),
                    (offer.namespace.clone(), offer.name.clone()),
                );
            }
        }
        slots
    }
}

#[tonic::async_trait]
impl DraPlugin for Plugin {
    async fn node_prepare_resources(
        &self,
        request: Request<pb::NodePrepareResourcesRequest>,
    ) -> Result<Response<pb::NodePrepareResourcesResponse>, Status> {
        let mut claims = std::collections::HashMap::new();
        for claim in request.into_inner().claims {
            let answer = match self.prepare(&claim).await {
                Ok(devices) => {
                    info!(claim = %format!("{}/{}", claim.namespace, claim.name), devices = devices.len(), "prepared");
                    pb::NodePrepareResourceResponse {
                        devices,
                        error: String::new(),
                    }
                }
                Err(error) => {
                    warn!(claim = %format!("{}/{}", claim.namespace, claim.name), %error, "cannot prepare");
                    pb::NodePrepareResourceResponse {
                        devices: vec![],
                        error,
                    }
                }
            };
            claims.insert(claim.uid, answer);
        }
        Ok(Response::new(pb::NodePrepareResourcesResponse { claims }))
    }

    async fn node_unprepare_resources(
        &self,
        request: Request<pb::NodeUnprepareResourcesRequest>,
    ) -> Result<Response<pb::NodeUnprepareResourcesResponse>, Status> {
        let claims = request
            .into_inner()
            .claims
            .into_iter()
            .map(|c| {
                (
                    c.uid,
                    pb::NodeUnprepareResourceResponse {
                        error: String::new(),
                    },
                )
            })
            .collect();
        Ok(Response::new(pb::NodeUnprepareResourcesResponse { claims }))
    }
}
