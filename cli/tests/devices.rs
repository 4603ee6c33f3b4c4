//! `ambit devices` as a user runs it: the real binary, a kubeconfig, and a
//! real API server holding Devices.

use std::process::Command;

use ambit_crds::v1alpha1::Device;
use ambit_tests::TestEnv;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn lists_the_namespaces_devices_with_nodes_and_slots() -> anyhow::Result<()> {
    let env = TestEnv::new("cli-devices").await?;
    ambit_tests::crds::install(&env.client).await?;
    let devices: Api<Device> = env.api();
    let device: Device = serde_json::from_value(json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "Device",
        "metadata": { "name": "plcs-0123456789abcdef" },
        "spec": { "deviceSet": "plcs", "id": "10.0.0.5:502/1", "shared": true, "capacity": 2 },
    }))?;
    devices.create(&PostParams::default(), &device).await?;
    let status = json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "Device",
        "status": {
            "nodes": [{ "node": "edge-1", "since": "2026-01-01T00:00:00Z" }],
            "allocations": [{ "slot": 1, "node": "edge-1" }],
        },
    });
    devices
        .patch_status(
            "plcs-0123456789abcdef",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&status),
        )
        .await?;

    let output = Command::new(env!("CARGO_BIN_EXE_ambit"))
        .args(["devices", "-n", &env.namespace])
        .env("KUBECONFIG", &env.control_plane.kubeconfig)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let row = stdout
        .lines()
        .find(|l| l.contains("plcs-0123456789abcdef"))
        .ok_or_else(|| anyhow::anyhow!("no row for the Device in:\n{stdout}"))?;
    for part in ["plcs", "true", "edge-1", "1/2"] {
        assert!(row.contains(part), "{part} missing from {row:?}");
    }

    // A set filter that matches nothing prints only the header.
    let output = Command::new(env!("CARGO_BIN_EXE_ambit"))
        .args(["devices", "-n", &env.namespace, "--set", "cams"])
        .env("KUBECONFIG", &env.control_plane.kubeconfig)
        .output()?;
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1);
    Ok(())
}
