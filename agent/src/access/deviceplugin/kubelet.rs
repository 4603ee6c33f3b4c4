//! The kubelet's side, as the device plugins reach it: its Registration
//! service on `<dir>/kubelet.sock` and its pod-resources API, plus the
//! identity of socket files (how a kubelet restart shows).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::access::kubelet::proto::deviceplugin::registration_client::RegistrationClient;
use crate::access::kubelet::proto::deviceplugin::{DevicePluginOptions, RegisterRequest};
use crate::access::kubelet::proto::podresources::ListPodResourcesRequest;
use crate::access::kubelet::proto::podresources::pod_resources_lister_client::PodResourcesListerClient;

use super::slots::PREFIX;

/// The kubelet's socket in the device-plugin directory.
pub const KUBELET_SOCKET: &str = "kubelet.sock";

/// The device-plugin API version Ambit speaks.
pub const VERSION: &str = "v1beta1";

/// How long one call to the kubelet may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call to the kubelet failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// The socket could not be reached.
    #[error("cannot reach the kubelet: {0}")]
    Connect(#[from] ambit_discovery::TransportError),
    /// The kubelet answered with an error.
    #[error("the kubelet refused: {0}")]
    Refused(#[from] tonic::Status),
    /// The kubelet did not answer in time.
    #[error("the kubelet did not answer within {CALL_TIMEOUT:?}")]
    Timeout,
}

/// A file's identity: (device, inode).
pub type FileId = (u64, u64);

/// A file's identity, `None` when it does not exist.
pub fn identity(path: &Path) -> Option<FileId> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|meta| (meta.dev(), meta.ino()))
}

/// The plugin's options: no PreStartContainer, GetPreferredAllocation.
pub fn options() -> DevicePluginOptions {
    DevicePluginOptions {
        pre_start_required: false,
        get_preferred_allocation_available: true,
    }
}

/// Registers `resource`, served on `endpoint` (a file name in `dir`), with
/// the kubelet whose socket is in `dir`.
pub async fn register(dir: &Path, resource: &str, endpoint: &str) -> Result<(), KubeletError> {
    let call = async {
        let channel = ambit_discovery::connect(&dir.join(KUBELET_SOCKET)).await?;
        RegistrationClient::new(channel)
            .register(RegisterRequest {
                version: VERSION.to_owned(),
                endpoint: endpoint.to_owned(),
                resource_name: resource.to_owned(),
                options: Some(options()),
            })
            .await?;
        Ok(())
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| KubeletError::Timeout)?
}

/// Which pod holds which of Ambit's device IDs, by the kubelet's
/// pod-resources API: `(resource, device ID) → namespace/name`.
pub async fn pods_by_device(
    socket: &Path,
) -> Result<BTreeMap<(String, String), String>, KubeletError> {
    let call = async {
        let channel = ambit_discovery::connect(socket).await?;
        let response = PodResourcesListerClient::new(channel)
            .list(ListPodResourcesRequest {})
            .await?
            .into_inner();
        let mut pods = BTreeMap::new();
        for pod in response.pod_resources {
            let name = format!("{}/{}", pod.namespace, pod.name);
            for container in pod.containers {
                for devices in container.devices {
                    if !devices.resource_name.starts_with(PREFIX) {
                        continue;
                    }
                    for id in devices.device_ids {
                        pods.insert((devices.resource_name.clone(), id), name.clone());
                    }
                }
            }
        }
        Ok(pods)
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| KubeletError::Timeout)?
}
