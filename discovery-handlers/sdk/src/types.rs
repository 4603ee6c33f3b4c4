//! The plain Rust types of the protocol: what a handler is asked
//! ([`DiscoverRequest`]) and what it answers ([`Device`]), with conversions
//! to and from the generated wire types in [`crate::v1`].
//!
//! Handlers, embedded or external, only ever see these types; the gRPC layer
//! converts at the socket.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::DiscoveryError;
use crate::v1;

/// What a handler is asked to discover: one DeviceSet's discovery section.
#[derive(Clone, PartialEq, Default)]
pub struct DiscoverRequest {
    /// The DeviceSet's `spec.discovery.details`, always a JSON object (an
    /// empty one when the DeviceSet gives none). Its shape is the handler's.
    pub details: Value,
    /// The DeviceSet's `spec.discovery.properties`, resolved from Secrets and
    /// ConfigMaps. May hold credentials: never log them, never copy them into
    /// device properties. `Debug` shows only the keys.
    pub properties: BTreeMap<String, String>,
    /// The node discovery runs on.
    pub node_name: String,
}

impl DiscoverRequest {
    /// A request with the given details, no properties and no node name.
    pub fn new(details: Value) -> Self {
        Self {
            details,
            ..Self::default()
        }
    }

    /// Deserializes `details` into the handler's own type, turning any error
    /// into [`DiscoveryError::InvalidDetails`] with a message that names the
    /// offending field, e.g. `devices[2].id: invalid type: integer `3`,
    /// expected a string`.
    pub fn details_as<T: DeserializeOwned>(&self) -> Result<T, DiscoveryError> {
        serde_path_to_error::deserialize(&self.details).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.inner();
            if path == "." {
                DiscoveryError::InvalidDetails(inner.to_string())
            } else {
                DiscoveryError::InvalidDetails(format!("{path}: {inner}"))
            }
        })
    }
}

impl fmt::Debug for DiscoverRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoverRequest")
            .field("details", &self.details)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .field("node_name", &self.node_name)
            .finish()
    }
}

/// One device a handler sees.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Stable identity: the same device always gets the same id.
    pub id: String,
    /// A network device that several nodes may see (vs. node-local).
    #[serde(default)]
    pub shared: bool,
    /// Properties handed to the pods that use the device.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Device nodes handed to the pods that use the device.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_nodes: Vec<DeviceNode>,
    /// Mounts handed to the pods that use the device.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
}

impl Device {
    /// A device with this id, node-local, with no properties.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            ..Self::default()
        }
    }
}

/// A device node (`/dev/...`) to give to a container.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    /// Path on the host.
    pub host_path: String,
    /// Path in the container; empty means `host_path`.
    #[serde(default)]
    pub container_path: String,
    /// cgroup permissions (`r`, `w`, `m`); empty means `rw`.
    #[serde(default)]
    pub permissions: String,
}

/// A host file or directory to mount into a container.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// Path on the host.
    pub host_path: String,
    /// Path in the container.
    pub container_path: String,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// Checks a complete device set as a handler sent it: every id non-empty
/// and unique. A violation is the handler's bug, reported as
/// [`DiscoveryError::Protocol`].
pub fn check_device_set(devices: &[Device]) -> Result<(), DiscoveryError> {
    let mut seen = BTreeSet::new();
    for device in devices {
        if device.id.is_empty() {
            return Err(DiscoveryError::Protocol(
                "a device has an empty id".to_owned(),
            ));
        }
        if !seen.insert(device.id.as_str()) {
            return Err(DiscoveryError::Protocol(format!(
                "device id {:?} appears twice in one device set",
                device.id
            )));
        }
    }
    Ok(())
}

impl TryFrom<v1::DiscoverRequest> for DiscoverRequest {
    type Error = DiscoveryError;

    fn try_from(wire: v1::DiscoverRequest) -> Result<Self, Self::Error> {
        let details = if wire.details.trim().is_empty() {
            Value::Object(serde_json::Map::new())
        } else {
            serde_json::from_str::<Value>(&wire.details).map_err(|error| {
                DiscoveryError::InvalidDetails(format!("details are not valid JSON: {error}"))
            })?
        };
        if !details.is_object() {
            return Err(DiscoveryError::InvalidDetails(format!(
                "details must be a JSON object, not {}",
                json_kind(&details)
            )));
        }
        Ok(Self {
            details,
            properties: wire.properties,
            node_name: wire.node_name,
        })
    }
}

impl From<DiscoverRequest> for v1::DiscoverRequest {
    fn from(request: DiscoverRequest) -> Self {
        Self {
            details: request.details.to_string(),
            properties: request.properties,
            node_name: request.node_name,
        }
    }
}

impl From<v1::Device> for Device {
    fn from(wire: v1::Device) -> Self {
        Self {
            id: wire.id,
            shared: wire.shared,
            properties: wire.properties,
            device_nodes: wire
                .device_nodes
                .into_iter()
                .map(DeviceNode::from)
                .collect(),
            mounts: wire.mounts.into_iter().map(Mount::from).collect(),
        }
    }
}

impl From<Device> for v1::Device {
    fn from(device: Device) -> Self {
        Self {
            id: device.id,
            shared: device.shared,
            properties: device.properties,
            device_nodes: device.device_nodes.into_iter().map(Into::into).collect(),
            mounts: device.mounts.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<v1::DeviceNode> for DeviceNode {
    fn from(wire: v1::DeviceNode) -> Self {
        Self {
            host_path: wire.host_path,
            container_path: wire.container_path,
            permissions: wire.permissions,
        }
    }
}

impl From<DeviceNode> for v1::DeviceNode {
    fn from(node: DeviceNode) -> Self {
        Self {
            host_path: node.host_path,
            container_path: node.container_path,
            permissions: node.permissions,
        }
    }
}

impl From<v1::Mount> for Mount {
    fn from(wire: v1::Mount) -> Self {
        Self {
            host_path: wire.host_path,
            container_path: wire.container_path,
            read_only: wire.read_only,
        }
    }
}

impl From<Mount> for v1::Mount {
    fn from(mount: Mount) -> Self {
        Self {
            host_path: mount.host_path,
            container_path: mount.container_path,
            read_only: mount.read_only,
        }
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[path = "types_tests.rs"]
mod tests;
