//! Pod access: how pods on this node get the devices it sees.
//!
//! ```text
//!  enters: this node's offers (from the Device watch), the sets that want per-device
//!          resources (from the DeviceSet watch), the kubelet (its sockets), ResourceClaims
//!  offers ──► cdi (one CDI spec file per device) ──► which devices have a spec
//!         ├─► deviceplugin (a kubelet device plugin per resource; slots; reclaim via pod-resources)
//!         └─► dra (ResourceSlices of local devices; the kubelet DRA plugin: claims → CDI ids)
//!  kubelet: the generated kubelet APIs (device plugin, pod resources, plugin registration, DRA)
//!  leaves: sockets the kubelet dials, CDI spec files, slot entries on Devices, ResourceSlices
//! ```

pub mod cdi;
pub mod deviceplugin;
pub mod dra;
pub mod kubelet;
pub mod offers;
