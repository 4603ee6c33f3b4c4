//! The README's demo, in its non-interactive mode: it must start, converge
//! (every DeviceSet Ready, every broker Running) and print its table, the
//! Sparkplug B edge node's devices in it. As root (as in CI) the ONVIF
//! camera and the mDNS printer must be there too: Devices that every node
//! sees (the camera described, with brokers), their namespaces gone after
//! the demo; without root the demo must say why it left them out.

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
    let last = converged_view(&stdout);
    the_sparkplug_devices_have_brokers(&stdout, last);
    if nix::unistd::geteuid().is_root() {
        the_camera_is_a_device_with_brokers(&stdout, last);
        the_printer_is_a_device(&stdout, last);
        the_namespaces_are_gone(&stdout);
    } else {
        assert!(
            stdout.contains("Note: no ONVIF camera and no mDNS printer in this run: it needs root"),
            "{stdout}"
        );
    }
}

/// The demo prints every view that differs from the one before: the last,
/// the converged one.
fn converged_view(stdout: &str) -> &str {
    stdout
        .rsplit_once(" after start ---")
        .map_or(stdout, |(_, view)| view)
}

/// Whether a line of `view` starts with `starts` and has every one of `has`.
fn has_line(view: &str, starts: &str, has: &[&str]) -> bool {
    view.lines()
        .any(|l| l.starts_with(starts) && has.iter().all(|h| l.contains(h)))
}

/// The Device line with `id`, which both nodes see; returns its name.
fn device_seen_by_both<'a>(stdout: &str, last: &'a str, id: &str) -> &'a str {
    let device = last
        .lines()
        .find(|l| l.contains(&format!(" {id} ")))
        .unwrap_or_else(|| panic!("no Device {id} in:\n{stdout}"));
    assert!(
        device.contains("demo-node-0") && device.contains("demo-node-1"),
        "both nodes see {id}: {device}"
    );
    device.split_whitespace().next().unwrap_or_default()
}

/// The Sparkplug set is Ready, each of the edge node's devices is a Device
/// that both nodes see (the broker is on loopback), with running brokers.
fn the_sparkplug_devices_have_brokers(stdout: &str, last: &str) {
    assert!(
        has_line(last, "sparkplug-devices ", &["mqtt", "True (Ready)"]),
        "the sparkplug-devices set is Ready:\n{stdout}"
    );
    let ids = ambit_tests::demo::sparkplug_ids();
    assert_eq!(ids.len(), 2, "{ids:?}");
    for id in ids {
        assert!(id.starts_with("spb://plant/line-1/"), "{id}");
        let name = device_seen_by_both(stdout, last, &id);
        assert!(
            has_line(last, &format!("{name}-"), &["Running"]),
            "{id} has a running broker:\n{stdout}"
        );
    }
}

/// The printers set is Ready and the announced printer is a Device that
/// both nodes see.
fn the_printer_is_a_device(stdout: &str, last: &str) {
    assert!(
        has_line(last, "office-printers ", &["mdns", "True (Ready)"]),
        "the office-printers set is Ready:\n{stdout}"
    );
    assert_eq!(
        ambit_tests::demo::PRINTER_ID,
        "Office Laser._ipp._tcp.local"
    );
    device_seen_by_both(stdout, last, ambit_tests::demo::PRINTER_ID);
}

/// The camera's set is Ready, its Device is described and seen by both
/// nodes, and its brokers run.
fn the_camera_is_a_device_with_brokers(stdout: &str, last: &str) {
    let line = |starts: &str, has: &[&str]| has_line(last, starts, has);
    assert!(
        line("cameras ", &["onvif", "True (Ready)"]),
        "the cameras set is Ready:\n{stdout}"
    );
    let id = format!("urn:uuid:{}", ambit_tests::demo::CAMERA_UUID);
    let name = device_seen_by_both(stdout, last, &id);
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
}

/// The LAN's two namespaces, which the demo names, are gone after it.
fn the_namespaces_are_gone(stdout: &str) {
    // "ONVIF camera ... and mDNS printer ... in network namespace <devices>;
    // the nodes' onvif and mdns handlers in <lan>."
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
