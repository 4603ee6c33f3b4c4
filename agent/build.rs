//! Compiles the kubelet's plugin APIs (`proto/kubelet`, copied from the
//! `k8s.io/kubelet` Go module) into Rust with tonic: servers for the plugin
//! side, clients for the kubelet side that the tests play.
//!
//! protox parses the protos, so building needs no `protoc` on the machine.

use std::error::Error;

const PROTOS: &[&str] = &[
    "kubelet/deviceplugin/v1beta1/api.proto",
    "kubelet/podresources/v1/api.proto",
    "kubelet/pluginregistration/v1/api.proto",
    "kubelet/dra/v1/api.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
