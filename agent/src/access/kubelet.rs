//! The kubelet's plugin APIs, generated from the upstream protos in
//! `proto/kubelet` (see its README): servers for Ambit's side, clients for
//! the tests that play the kubelet.

/// Generated code: the upstream definitions, not Ambit's API.
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
pub mod proto {
    /// Device plugins, `deviceplugin/v1beta1`.
    pub mod deviceplugin {
        tonic::include_proto!("v1beta1");
    }
    /// The kubelet's pod-resources API, `podresources/v1`.
    pub mod podresources {
        tonic::include_proto!("v1");
    }
    /// Plugin registration (the kubelet's plugin watcher), `pluginregistration/v1`.
    pub mod pluginregistration {
        tonic::include_proto!("pluginregistration");
    }
    /// Dynamic Resource Allocation's node side, `dra/v1`.
    pub mod dra {
        tonic::include_proto!("k8s.io.kubelet.pkg.apis.dra.v1");
    }
}
