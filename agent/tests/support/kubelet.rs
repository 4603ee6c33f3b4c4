//! A played kubelet: the kubelet's side of the device-plugin and
//! pod-resources gRPC APIs, served from the upstream protos (the kubelet
//! itself cannot run here: it needs a container runtime).
//!
//! Like the real one it serves `Registration` on
//! `<kubelet_dir>/device-plugins/kubelet.sock`, dials each plugin that
//! registers, asks its options and follows its ListAndWatch stream; it
//! serves `PodResourcesLister.List` on `<kubelet_dir>/pod-resources/kubelet.sock`
//! with the pods the test says hold devices; and on [`Kubelet::restart`] it
//! does what a starting kubelet does: deletes every socket in the
//! device-plugin directory and serves a new `kubelet.sock`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ambit_agent::kubelet::proto::deviceplugin as dp;
use ambit_agent::kubelet::proto::podresources as pr;
use dp::device_plugin_client::DevicePluginClient;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

/// What the played kubelet knows: registrations and the device lists.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Every RegisterRequest, in order.
    pub registrations: Vec<dp::RegisterRequest>,
    /// The latest ListAndWatch list per resource: device ID → health.
    pub lists: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug)]
struct Registration {
    dir: PathBuf,
    seen: watch::Sender<Seen>,
}

#[tonic::async_trait]
impl dp::registration_server::Registration for Registration {
    async fn register(
        &self,
        request: Request<dp::RegisterRequest>,
    ) -> Result<Response<dp::Empty>, Status> {
        let request = request.into_inner();
        if request.version != "v1beta1" {
            return Err(Status::invalid_argument("unsupported version"));
        }
        // Like the kubelet: dial the plugin, ask its options, follow its list.
        let channel = ambit_discovery::connect(&self.dir.join(&request.endpoint))
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let mut client = DevicePluginClient::new(channel);
        client.get_device_plugin_options(dp::Empty {}).await?;
        let mut stream = client.list_and_watch(dp::Empty {}).await?.into_inner();
        let seen = self.seen.clone();
        let resource = request.resource_name.clone();
        self.seen.send_modify(|s| s.registrations.push(request));
        tokio::spawn(async move {
            while let Ok(Some(list)) = stream.message().await {
                let list = list.devices.into_iter().map(|d| (d.id, d.health)).collect();
                seen.send_modify(|s| {
                    s.lists.insert(resource.clone(), list);
                });
            }
        });
        Ok(Response::new(dp::Empty {}))
    }
}

#[derive(Debug, Clone, Default)]
struct PodResources {
    pods: Arc<Mutex<Vec<pr::PodResources>>>,
}

#[tonic::async_trait]
impl pr::pod_resources_lister_server::PodResourcesLister for PodResources {
    async fn list(
        &self,
        _: Request<pr::ListPodResourcesRequest>,
    ) -> Result<Response<pr::ListPodResourcesResponse>, Status> {
        let pod_resources = self
            .pods
            .lock()
            .map_err(|_| Status::internal("poisoned"))?
            .clone();
        Ok(Response::new(pr::ListPodResourcesResponse {
            pod_resources,
        }))
    }

    async fn get_allocatable_resources(
        &self,
        _: Request<pr::AllocatableResourcesRequest>,
    ) -> Result<Response<pr::AllocatableResourcesResponse>, Status> {
        Err(Status::unimplemented("not played"))
    }

    async fn get(
        &self,
        _: Request<pr::GetPodResourcesRequest>,
    ) -> Result<Response<pr::GetPodResourcesResponse>, Status> {
        Err(Status::unimplemented("not played"))
    }
}

/// The played kubelet of one agent.
#[derive(Debug)]
pub struct Kubelet {
    /// The device-plugin directory.
    pub dir: PathBuf,
    seen: watch::Sender<Seen>,
    pods: PodResources,
    registration: CancellationToken,
    _pod_resources: CancellationToken,
}

fn serve(path: &Path, routes: Routes) -> anyhow::Result<CancellationToken> {
    let stop = CancellationToken::new();
    let server = ambit_discovery::UnixServer::bind(path, routes, stop.clone())?;
    let until = stop.clone();
    tokio::spawn(async move { server.run(until.cancelled_owned()).await });
    Ok(stop)
}

impl Kubelet {
    /// Serves the kubelet's sockets under `kubelet_dir`.
    pub fn start(kubelet_dir: &Path) -> anyhow::Result<Self> {
        let dir = kubelet_dir.join("device-plugins");
        let (seen, _) = watch::channel(Seen::default());
        let pods = PodResources::default();
        let pod_resources = serve(
            &kubelet_dir.join("pod-resources/kubelet.sock"),
            Routes::new(
                pr::pod_resources_lister_server::PodResourcesListerServer::new(pods.clone()),
            ),
        )?;
        let registration = Self::serve_registration(&dir, &seen)?;
        Ok(Self {
            dir,
            seen,
            pods,
            registration,
            _pod_resources: pod_resources,
        })
    }

    fn serve_registration(
        dir: &Path,
        seen: &watch::Sender<Seen>,
    ) -> anyhow::Result<CancellationToken> {
        let service = Registration {
            dir: dir.to_owned(),
            seen: seen.clone(),
        };
        serve(
            &dir.join("kubelet.sock"),
            Routes::new(dp::registration_server::RegistrationServer::new(service)),
        )
    }

    /// What a starting kubelet does: every socket in the device-plugin
    /// directory is deleted and a new `kubelet.sock` is served.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.registration.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            std::fs::remove_file(entry.path())?;
        }
        self.seen.send_modify(|s| s.lists.clear());
        self.registration = Self::serve_registration(&self.dir, &self.seen)?;
        Ok(())
    }

    /// Waits until what the kubelet saw satisfies `condition`.
    pub async fn wait(
        &self,
        what: &str,
        condition: impl Fn(&Seen) -> bool,
    ) -> anyhow::Result<Seen> {
        let mut seen = self.seen.subscribe();
        let found = tokio::time::timeout(Duration::from_secs(30), seen.wait_for(|s| condition(s)))
            .await
            .map(|r| r.map(|s| s.clone()));
        match found {
            Ok(Ok(seen)) => Ok(seen),
            _ => anyhow::bail!(
                "the played kubelet did not see {what}; it saw {:#?}",
                *self.seen.borrow()
            ),
        }
    }

    /// What the kubelet saw so far.
    pub fn seen(&self) -> Seen {
        self.seen.borrow().clone()
    }

    /// How many resources registered with this kubelet (each once).
    pub fn registered(&self) -> usize {
        let seen = self.seen.borrow();
        let names: std::collections::BTreeSet<&str> = seen
            .registrations
            .iter()
            .map(|r| r.resource_name.as_str())
            .collect();
        names.len()
    }

    /// The resource's device list: device ID → health.
    pub fn list(&self, resource: &str) -> BTreeMap<String, String> {
        self.seen
            .borrow()
            .lists
            .get(resource)
            .cloned()
            .unwrap_or_default()
    }

    /// Calls the plugin of `resource` (at its latest endpoint) like the
    /// kubelet admitting a pod: Allocate, one container with `ids`.
    pub async fn allocate(
        &self,
        resource: &str,
        ids: &[&str],
    ) -> anyhow::Result<Result<dp::ContainerAllocateResponse, Status>> {
        let endpoint = self
            .seen
            .borrow()
            .registrations
            .iter()
            .rev()
            .find(|r| r.resource_name == resource)
            .map(|r| r.endpoint.clone())
            .ok_or_else(|| anyhow::anyhow!("{resource} never registered"))?;
        let channel = ambit_discovery::connect(&self.dir.join(endpoint)).await?;
        let request = dp::AllocateRequest {
            container_requests: vec![dp::ContainerAllocateRequest {
                devices_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            }],
        };
        Ok(DevicePluginClient::new(channel)
            .allocate(request)
            .await
            .map(|r| r.into_inner().container_responses.remove(0)))
    }

    /// Says `pod` (`namespace/name`) holds `ids` of `resource` (replacing
    /// what was said before); an empty `ids` says no pod holds anything.
    pub fn set_pod(&self, pod: &str, resource: &str, ids: &[&str]) {
        let (namespace, name) = pod.split_once('/').unwrap_or(("default", pod));
        let pods = if ids.is_empty() {
            vec![]
        } else {
            vec![pr::PodResources {
                name: name.to_owned(),
                namespace: namespace.to_owned(),
                containers: vec![pr::ContainerResources {
                    name: "main".into(),
                    devices: vec![pr::ContainerDevices {
                        resource_name: resource.to_owned(),
                        device_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
                        topology: None,
                    }],
                    ..Default::default()
                }],
            }]
        };
        if let Ok(mut held) = self.pods.pods.lock() {
            *held = pods;
        }
    }
}
