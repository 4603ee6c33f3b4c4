//! The demo's simulated ONVIF camera, in the devices' network namespace of
//! the demo's LAN (see `lan.rs` and the diagram in `demo.rs`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kube::Client;

use super::lan::CAMERA_ADDRESS;
use super::{apply_example, binary, create_secret, wait_for_line};
use crate::ControlPlane;
use crate::process::Process;

/// The demo camera's WS-Discovery identity: its Device's id is `urn:uuid:` and this.
pub const CAMERA_UUID: &str = "5c0ffee0-a3b1-4c2d-8e4f-00000000d3e0";
/// The demo camera's password, given to the handlers through the Secret that
/// `examples/onvif/cameras.yaml` names.
const CAMERA_PASSWORD: &str = "demo-only-password";
const CAMERA_PORT: u16 = 8080;

/// The simulated ONVIF camera (`ambit-demo-camera`): ONVIF on
/// 10.78.0.2:8080, WS-Discovery on :3702.
#[derive(Debug)]
pub struct OnvifCamera {
    /// The camera's ONVIF device service URL.
    pub device_service: String,
    camera: Process,
}

impl OnvifCamera {
    /// Starts the camera in network namespace `netns`.
    pub(super) fn start(
        control_plane: &ControlPlane,
        bin_dir: &Path,
        netns: &str,
    ) -> anyhow::Result<Self> {
        let mut camera = Command::new("ip");
        camera
            .args(["netns", "exec", netns])
            .arg(binary(bin_dir, "ambit-demo-camera")?)
            .args(["--address", CAMERA_ADDRESS, "--port"])
            .arg(CAMERA_PORT.to_string())
            .args(["--uuid", CAMERA_UUID])
            .env("AMBIT_DEMO_CAMERA_PASSWORD", CAMERA_PASSWORD);
        let camera = control_plane.spawn_process("onvif-camera", camera)?;
        Ok(Self {
            device_service: format!("http://{CAMERA_ADDRESS}:{CAMERA_PORT}/onvif/device_service"),
            camera,
        })
    }

    /// Waits until the camera serves (it prints `ready` then).
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        wait_for_line(
            &mut self.camera,
            "ready ",
            Duration::from_secs(30),
            "the ONVIF camera",
        )
        .await
    }

    /// Gives the handlers the camera's credentials (the Secret that
    /// `examples/onvif/cameras.yaml` names) and applies that DeviceSet.
    pub(super) async fn apply(client: &Client, examples_dir: &Path) -> anyhow::Result<()> {
        create_secret(
            client,
            "onvif-cameras",
            &[("username", "admin"), ("password", CAMERA_PASSWORD)],
        )
        .await?;
        // The simulated camera answers Probes at once, where real ones may
        // wait 500 ms: a shorter first probe cycle brings its Device sooner.
        apply_example(
            client,
            examples_dir,
            "onvif/cameras.yaml",
            &[("matchTimeout: 3s", "matchTimeout: 1s")],
        )
        .await
    }
}
