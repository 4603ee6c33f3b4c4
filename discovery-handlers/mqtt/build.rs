//! Compiles `proto/sparkplug_b.proto` (Eclipse Tahu's Sparkplug B payload,
//! kept unchanged) into Rust with prost.
//!
//! The proto is parsed by `protox`, a protobuf compiler written in Rust, so
//! building Ambit needs no `protoc` on the machine.

use std::error::Error;

const PROTO: &str = "proto/sparkplug_b.proto";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile([PROTO], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
