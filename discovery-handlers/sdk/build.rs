//! Compiles `proto/ambit/discovery/v1/discovery.proto` into Rust with tonic.
//!
//! The proto is parsed by `protox`, a protobuf compiler written in Rust, so
//! building Ambit needs no `protoc` on the machine.

use std::error::Error;

const PROTO: &str = "proto/ambit/discovery/v1/discovery.proto";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile([PROTO], ["proto"])?;
    tonic_prost_build::configure()
        .btree_map(".")
        .compile_fds(descriptors)?;
    Ok(())
}
