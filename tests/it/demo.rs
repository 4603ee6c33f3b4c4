//! The README's demo, in its non-interactive mode: it must start, converge
//! (every DeviceSet Ready, every broker Running) and print its table. As
//! root (as in CI) the ONVIF camera must be there too: a described Device
//! that every node sees, with brokers; without root the demo must say why
//! it left the camera out.

use std::process::Command;

#[test]
fn the_demo_converges_and_prints_its_table() {
    let output = Command::new(env!("CARGO_BIN_EXE_ambit-demo"))
        .args(["--until-converged", "--nodes", "2"])
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the demo failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("export KUBECONFIG="),
        "it says how to point kubectl at it:\n{stdout}"
    );
    assert!(stdout.contains("Converged"), "{stdout}");
    for expected in [
        "echo-sensors",
        "usb-cameras",
        "plcs",
        "ble-thermometers",
        "tcp://127.0.0.1:",
        "boilers",
        "opc.tcp://127.0.0.1:",
        "ble://",
        "Running",
        "True (Ready)",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    if nix::unistd::geteuid().is_root() {
        the_camera_is_a_device_with_brokers(&stdout);
    } else {
        assert!(
            stdout.contains("Note: no ONVIF camera in this run: it needs root"),
            "{stdout}"
        );
    }
}

/// The camera's set is Ready, its Device is described and seen by both
/// nodes, its brokers run, and its namespaces are gone after the demo.
fn the_camera_is_a_device_with_brokers(stdout: &str) {
    // The demo prints every view that differs from the one before: look at
    // the last, the converged one.
    let last = stdout
        .rsplit_once(" after start ---")
        .map_or(stdout, |(_, view)| view);
    let line = |starts: &str, has: &[&str]| {
        last.lines()
            .any(|l| l.starts_with(starts) && has.iter().all(|h| l.contains(h)))
    };
    assert!(
        line("cameras ", &["onvif", "True (Ready)"]),
        "the cameras set is Ready:\n{stdout}"
    );
    let id = format!("urn:uuid:{}", ambit_tests::demo::CAMERA_UUID);
    let device = last
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("no camera Device {id} in:\n{stdout}"));
    assert!(
        device.contains("demo-node-0") && device.contains("demo-node-1"),
        "both nodes see the camera: {device}"
    );
    let name = device.split_whitespace().next().unwrap_or_default();
    assert!(
        line(
            &format!("{name} "),
            &[
                "Ambit Demo Optics",
                "DemoCam 1080",
                "rtsp://10.78.0.2:8554/"
            ]
        ),
        "the camera is described (ONVIF device information, stream URI):\n{stdout}"
    );
    assert!(
        line(&format!("{name}-"), &["Running"]),
        "the camera has a running broker:\n{stdout}"
    );
    // "... in network namespace <camera>; the nodes' onvif handlers in <lan>."
    let namespaces = stdout
        .lines()
        .find(|l| l.starts_with("ONVIF camera "))
        .unwrap_or_else(|| panic!("the demo names its namespaces:\n{stdout}"));
    let names: Vec<&str> = namespaces
        .split([' ', ';'])
        .map(|word| word.trim_end_matches('.'))
        .filter(|word| word.starts_with("ambit-demo-"))
        .collect();
    assert_eq!(names.len(), 2, "two namespaces in: {namespaces}");
    for ns in names {
        assert!(
            !std::path::Path::new("/run/netns").join(ns).exists(),
            "the demo left network namespace {ns} behind"
        );
    }
}
