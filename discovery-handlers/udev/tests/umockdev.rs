//! The udev handler against umockdev: fake devices (a USB camera, a USB
//! serial adapter, a mouse) in a fake sysfs, and hot-plug uevents, seen
//! through the real libudev by the real handler (see `support`).

mod support;

use std::time::Instant;

use ambit_discovery::{DiscoverRequest, DiscoveryError, DiscoveryHandler};
use serde_json::json;
use support::{CAMERA_PORT1, CAMERA_PORT2, Discovery, SERIAL_ADAPTER, Testbed, device, ids};

const CAMERA: &str = "usb-046d:082d:8A3C52BF/if00/video4linux/index0";
const ADAPTER: &str = "usb-0403:6001:A10K3XYZ/if00/tty";

/// The entry point of the child processes the tests start; not a test.
#[tokio::test]
#[ignore = "entry point of the handler process the umockdev tests start"]
async fn child() {
    support::run_child().await;
}

#[tokio::test]
async fn enumerates_then_follows_hot_plug_and_re_plug() -> anyhow::Result<()> {
    let mut testbed = Testbed::start().await?;
    testbed.add("camera-port1").await?;
    testbed.add("mouse").await?;
    let details = json!({"rules": [
        r#"SUBSYSTEM=="video4linux", ATTR{index}=="0""#,
        r#"SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6001|6015""#,
    ]});
    let mut discovery = Discovery::start(&testbed, "child", &details)?;

    // Initial enumeration: the camera's first node; not its second
    // (index 1), not the mouse.
    let set = discovery.next_set().await?;
    assert_eq!(ids(&set), [CAMERA]);
    let camera = device(&set, CAMERA);
    assert_eq!(camera.properties["UDEV_DEVNODE"], "/dev/video0");
    assert_eq!(
        camera.properties["UDEV_DEVPATH"],
        format!("{CAMERA_PORT1}/1-1:1.0/video4linux/video0")
    );
    assert_eq!(camera.properties["UDEV_SUBSYSTEM"], "video4linux");
    assert_eq!(camera.properties["UDEV_VENDOR_ID"], "046d");
    assert_eq!(camera.properties["UDEV_PRODUCT_ID"], "082d");
    assert_eq!(camera.properties["UDEV_SERIAL"], "8A3C52BF");
    assert_eq!(camera.properties["UDEV_VENDOR"], "Logitech");
    assert_eq!(camera.properties["UDEV_PRODUCT"], "HD Pro Webcam C920");
    assert_eq!(camera.device_nodes.len(), 1);
    assert_eq!(camera.device_nodes[0].host_path, "/dev/video0");
    assert_eq!(camera.device_nodes[0].permissions, "rw");
    assert!(!camera.shared);

    // Hot-plug: the adapter's "add" events are pushed as a new set.
    let plugged = testbed.add("serial-adapter").await?;
    let set = discovery.next_set().await?;
    let latency = plugged.elapsed();
    assert_eq!(ids(&set), [ADAPTER, CAMERA], "sets are sorted by id");
    let adapter = device(&set, ADAPTER);
    assert_eq!(adapter.properties["UDEV_DEVNODE"], "/dev/ttyUSB0");
    assert_eq!(adapter.properties["UDEV_SYSNAME"], "ttyUSB0");
    assert_eq!(adapter.properties["UDEV_SERIAL"], "A10K3XYZ");
    assert_eq!(adapter.properties["UDEV_VENDOR"], "FTDI");
    eprintln!("hot-plug: set received {latency:?} after the add uevents");

    // A device no rule matches makes no new set: the next set is the
    // camera's removal, not something about the mouse.
    testbed
        .remove("/devices/pci0000:00/0000:00:14.0/usb1/1-4")
        .await?;
    testbed.remove(CAMERA_PORT1).await?;
    let set = discovery.next_set().await?;
    assert_eq!(ids(&set), [ADAPTER]);

    // Re-plugged on another port, with other device nodes: the same id,
    // the new node.
    testbed.add("camera-port2").await?;
    let set = discovery.next_set().await?;
    assert_eq!(ids(&set), [ADAPTER, CAMERA]);
    let camera = device(&set, CAMERA);
    assert_eq!(camera.properties["UDEV_DEVNODE"], "/dev/video2");
    assert_eq!(camera.device_nodes[0].host_path, "/dev/video2");
    assert_eq!(
        camera.properties["UDEV_DEVPATH"],
        format!("{CAMERA_PORT2}/1-2:1.0/video4linux/video2")
    );

    testbed.remove(SERIAL_ADAPTER).await?;
    let set = discovery.next_set().await?;
    assert_eq!(ids(&set), [CAMERA]);

    discovery.stop().await;
    testbed.stop().await;
    Ok(())
}

#[tokio::test]
async fn parent_keys_grouping_and_permissions() -> anyhow::Result<()> {
    let mut testbed = Testbed::start().await?;
    testbed.add("camera-port1").await?;
    testbed.add("serial-adapter").await?;
    let details = json!({
        "rules": [
            // The camera's USB device and everything under it...
            r#"SUBSYSTEM=="usb", ENV{DEVTYPE}=="usb_device", ATTR{idVendor}=="046d""#,
            r#"SUBSYSTEM=="video4linux", DRIVERS=="uvcvideo""#,
            // ...and the tty of whatever ftdi_sio drives.
            r#"SUBSYSTEM=="tty", DRIVERS=="ftdi_sio", KERNELS=="1-3:1.0""#,
        ],
        "group": true,
        "permissions": "r",
    });
    let mut discovery = Discovery::start(&testbed, "child", &details)?;
    // Both were there before discovery started: the first set has them.
    let set = discovery.next_set().await?;
    assert_eq!(ids(&set), [ADAPTER, "usb-046d:082d:8A3C52BF/usb"]);
    let camera = device(&set, "usb-046d:082d:8A3C52BF/usb");
    assert_eq!(
        camera.properties["UDEV_DEVNODES"],
        "/dev/bus/usb/001/002,/dev/video0,/dev/video1"
    );
    let nodes: Vec<(&str, &str)> = camera
        .device_nodes
        .iter()
        .map(|n| (n.host_path.as_str(), n.permissions.as_str()))
        .collect();
    assert_eq!(
        nodes,
        [
            ("/dev/bus/usb/001/002", "r"),
            ("/dev/video0", "r"),
            ("/dev/video1", "r")
        ]
    );
    assert_eq!(
        device(&set, ADAPTER).properties["UDEV_DEVNODES"],
        "/dev/ttyUSB0"
    );

    // Unplugging the camera takes the whole group.
    let started = Instant::now();
    testbed.remove(CAMERA_PORT1).await?;
    let set = discovery.until(|set| set.len() == 1).await?;
    assert_eq!(ids(&set), [ADAPTER]);
    eprintln!(
        "remove: set received {:?} after the command",
        started.elapsed()
    );

    discovery.stop().await;
    testbed.stop().await;
    Ok(())
}

#[tokio::test]
async fn no_match_is_an_empty_set() -> anyhow::Result<()> {
    let mut testbed = Testbed::start().await?;
    testbed.add("serial-adapter").await?;
    let details = json!({"rules": [r#"SUBSYSTEM=="tty", ATTRS{idVendor}!="0403""#]});
    let mut discovery = Discovery::start(&testbed, "child", &details)?;
    assert_eq!(discovery.next_set().await?, []);
    discovery.stop().await;
    testbed.stop().await;
    Ok(())
}

#[tokio::test]
async fn bad_rules_are_refused_before_discovery() {
    let handler = ambit_udev::Udev::new();
    let request = DiscoverRequest::new(json!({
        "rules": [r#"SUBSYSTEM=="tty""#, r#"SUBSYSTEM=="tty", ATTRS{idVendor}="0403""#]
    }));
    match handler.discover(request).await {
        Err(DiscoveryError::InvalidDetails(message)) => assert_eq!(
            message,
            "rules[1], column 34: `=` assigns, and rules here only match: use `==` or `!=`"
        ),
        Err(other) => panic!("expected invalid details, got {other}"),
        Ok(_) => panic!("expected invalid details, got a stream"),
    }
}

/// The example DeviceSets are valid DeviceSets, and find the fake camera
/// and serial adapter.
#[tokio::test]
async fn the_examples_find_what_they_say() -> anyhow::Result<()> {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/udev");
    let mut testbed = Testbed::start().await?;
    testbed.add("camera-port1").await?;
    testbed.add("serial-adapter").await?;
    testbed.add("mouse").await?;
    for (file, expected) in [("cameras.yaml", CAMERA), ("serial-adapters.yaml", ADAPTER)] {
        let text = std::fs::read_to_string(examples.join(file))?;
        let set: ambit_crds::v1alpha1::DeviceSet = serde_yaml_ng::from_str(&text)?;
        assert_eq!(set.spec.discovery.handler, ambit_udev::NAME, "{file}");
        let details = serde_json::Value::Object(set.spec.discovery.details.unwrap_or_default());
        ambit_udev::check_details(details.clone())
            .map_err(|error| anyhow::anyhow!("{file}: {error}"))?;
        let mut discovery = Discovery::start(&testbed, "child", &details)?;
        assert_eq!(ids(&discovery.next_set().await?), [expected], "{file}");
        discovery.stop().await;
    }
    testbed.stop().await;
    Ok(())
}
