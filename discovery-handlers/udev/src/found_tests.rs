use super::*;

fn shape(group: bool) -> Shape {
    Shape {
        group,
        permissions: "rw".into(),
    }
}

fn found(devpath: &str, subsystem: &str, devnode: Option<&str>, identity: Identity) -> Found {
    Found {
        devpath: devpath.into(),
        sysname: devpath.rsplit('/').next().unwrap_or_default().into(),
        subsystem: Some(subsystem.into()),
        devnode: devnode.map(Into::into),
        identity,
    }
}

fn camera(port: &str, serial: Option<&str>, index: &str, node: &str) -> Found {
    found(
        &format!("/devices/usb1/{port}/{port}:1.0/video4linux/{node}"),
        "video4linux",
        Some(&format!("/dev/{node}")),
        Identity {
            bus: Some("usb".into()),
            vendor_id: Some("046d".into()),
            product_id: Some("0825".into()),
            serial: serial.map(Into::into),
            vendor: Some("Logitech".into()),
            product: Some("Webcam C270".into()),
            usb_devpath: Some(format!("/devices/usb1/{port}")),
            interface: Some("00".into()),
            index: Some(index.into()),
        },
    )
}

fn set(devices: &[Found], group: bool) -> Vec<Device> {
    let map = devices
        .iter()
        .map(|d| (d.devpath.clone(), d.clone()))
        .collect();
    device_set(&map, &shape(group))
}

#[test]
fn a_serial_makes_the_id_independent_of_the_port() {
    let before = set(&[camera("1-1", Some("ABC123"), "0", "video0")], false);
    let after = set(&[camera("1-4", Some("ABC123"), "0", "video2")], false);
    assert_eq!(before[0].id, "usb-046d:0825:ABC123/if00/video4linux/index0");
    assert_eq!(before[0].id, after[0].id);
    assert_eq!(after[0].properties[DEVNODE], "/dev/video2");
    assert_eq!(after[0].device_nodes[0].host_path, "/dev/video2");
    assert_eq!(
        after[0].properties[DEVPATH],
        "/devices/usb1/1-4/1-4:1.0/video4linux/video2"
    );
}

#[test]
fn without_a_serial_the_port_is_the_identity() {
    let one = set(&[camera("1-1", None, "0", "video0")], false);
    let same_port = set(&[camera("1-1", None, "0", "video3")], false);
    let other_port = set(&[camera("1-2", None, "0", "video0")], false);
    assert_eq!(
        one[0].id,
        "usb-port:/devices/usb1/1-1/if00/video4linux/index0"
    );
    assert_eq!(one[0].id, same_port[0].id, "a new kernel name keeps the id");
    assert_ne!(one[0].id, other_port[0].id);
}

#[test]
fn devices_outside_usb_are_known_by_devpath() {
    let serial = found(
        "/devices/platform/serial8250/tty/ttyS0",
        "tty",
        Some("/dev/ttyS0"),
        Identity::default(),
    );
    let devices = set(&[serial], false);
    assert_eq!(devices[0].id, "/devices/platform/serial8250/tty/ttyS0");
    assert!(!devices[0].properties.contains_key(SERIAL));
}

#[test]
fn two_nodes_of_one_camera_get_two_ids() {
    let devices = set(
        &[
            camera("1-1", Some("ABC123"), "0", "video0"),
            camera("1-1", Some("ABC123"), "1", "video1"),
        ],
        false,
    );
    let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "usb-046d:0825:ABC123/if00/video4linux/index0",
            "usb-046d:0825:ABC123/if00/video4linux/index1"
        ]
    );
}

#[test]
fn a_shared_serial_falls_back_to_devpaths() {
    let devices = set(
        &[
            camera("1-1", Some("0001"), "0", "video0"),
            camera("1-2", Some("0001"), "0", "video2"),
        ],
        false,
    );
    let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "/devices/usb1/1-1/1-1:1.0/video4linux/video0",
            "/devices/usb1/1-2/1-2:1.0/video4linux/video2"
        ]
    );
}

#[test]
fn properties_and_device_nodes() {
    let devices = set(&[camera("1-1", Some("ABC123"), "0", "video0")], false);
    let device = &devices[0];
    let properties: Vec<(&str, &str)> = device
        .properties
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        properties,
        [
            ("UDEV_DEVNODE", "/dev/video0"),
            (
                "UDEV_DEVPATH",
                "/devices/usb1/1-1/1-1:1.0/video4linux/video0"
            ),
            ("UDEV_PRODUCT", "Webcam C270"),
            ("UDEV_PRODUCT_ID", "0825"),
            ("UDEV_SERIAL", "ABC123"),
            ("UDEV_SUBSYSTEM", "video4linux"),
            ("UDEV_SYSNAME", "video0"),
            ("UDEV_VENDOR", "Logitech"),
            ("UDEV_VENDOR_ID", "046d"),
        ]
    );
    assert_eq!(
        device.device_nodes,
        [DeviceNode {
            host_path: "/dev/video0".into(),
            container_path: String::new(),
            permissions: "rw".into()
        }]
    );
    assert!(!device.shared);
}

#[test]
fn grouping_folds_matched_children_into_the_topmost_match() {
    let usb = found(
        "/devices/usb1/1-1",
        "usb",
        Some("/dev/bus/usb/001/002"),
        Identity {
            bus: Some("usb".into()),
            vendor_id: Some("046d".into()),
            product_id: Some("0825".into()),
            serial: Some("ABC123".into()),
            usb_devpath: Some("/devices/usb1/1-1".into()),
            ..Identity::default()
        },
    );
    let members = [
        usb,
        camera("1-1", Some("ABC123"), "0", "video0"),
        camera("1-1", Some("ABC123"), "1", "video1"),
        camera("1-2", Some("XYZ"), "0", "video2"),
    ];
    let grouped = set(&members, true);
    assert_eq!(grouped.len(), 2);
    let camera = &grouped[0];
    assert_eq!(camera.id, "usb-046d:0825:ABC123/usb");
    assert_eq!(
        camera.properties[DEVNODES],
        "/dev/bus/usb/001/002,/dev/video0,/dev/video1"
    );
    assert_eq!(camera.device_nodes.len(), 3);
    assert_eq!(grouped[1].id, "usb-046d:0825:XYZ/if00/video4linux/index0");
    assert_eq!(grouped[1].properties[DEVNODES], "/dev/video2");

    let ungrouped = set(&members, false);
    assert_eq!(ungrouped.len(), 4);
    assert!(
        ungrouped
            .iter()
            .all(|d| !d.properties.contains_key(DEVNODES))
    );
}

#[test]
fn empty_identity_values_are_ignored() {
    let mut identity = Identity {
        serial: Some("  ".into()),
        vendor: Some(" Acme ".into()),
        usb_devpath: Some("/devices/usb1/1-1".into()),
        ..Identity::default()
    };
    identity.tidy();
    assert_eq!(identity.serial, None);
    assert_eq!(identity.vendor.as_deref(), Some("Acme"));
}
