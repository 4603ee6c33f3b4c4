//! The modbus handler against a real Modbus RTU server (pymodbus) on one
//! end of a socat pty pair; the handler opens the other end.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic fails the test"
)]

mod support;

use std::time::Duration;

use ambit_discovery::{DiscoverRequest, DiscoveryHandler};
use ambit_modbus::Modbus;
use serde_json::json;
use support::{PtyPair, Simulator, assert_quiet, ids, next_set, until_ids};

const SCAN: Duration = Duration::from_secs(30);

#[tokio::test]
async fn finds_units_on_a_serial_bus_and_follows_them() {
    let pair = PtyPair::new().await;
    let plc = pair.a.to_str().unwrap();
    // Linux ptys refuse parity (tcsetattr: EINVAL), so the line is 8N2 here.
    let mut server = Simulator::start(&[
        "--serial",
        plc,
        "--baudrate",
        "9600",
        "--parity",
        "N",
        "--stopbits",
        "2",
        "--unit",
        "1",
        "--unit",
        "3",
        "--vendor",
        "Serial Works",
        "--product-code",
        "RTU-3",
    ])
    .await;

    let host_end = pair.b.to_str().unwrap().to_owned();
    // A glob that matches the handler's end only (the server holds its own).
    let pattern = format!("{}/ttyH*", pair.b.parent().unwrap().display());
    let mut stream = Modbus::new()
        .discover(DiscoverRequest::new(json!({
            "rtu": {
                "ports": [pattern],
                "baudRate": 9600,
                "parity": "none",
                "stopBits": 2,
                "unitIds": ["1-4"],
            },
            "probes": [{"name": "model", "register": "holding", "address": 0, "equals": [1234]}],
            // Generous: a loaded CI machine must not make the PLC "vanish".
            "timeout": "800ms",
            "interval": "200ms",
        })))
        .await
        .unwrap();

    let expected = [format!("rtu://{host_end}/1"), format!("rtu://{host_end}/3")];
    let set = next_set(&mut stream, SCAN).await;
    assert_eq!(ids(&set), expected);
    let device = &set[1];
    assert!(!device.shared);
    assert_eq!(device.device_nodes.len(), 1);
    assert_eq!(device.device_nodes[0].host_path, host_end);
    for (key, value) in [
        ("MODBUS_TRANSPORT", "rtu"),
        ("MODBUS_SERIAL_PORT", host_end.as_str()),
        ("MODBUS_BAUD_RATE", "9600"),
        ("MODBUS_PARITY", "none"),
        ("MODBUS_STOP_BITS", "2"),
        ("MODBUS_UNIT_ID", "3"),
        ("MODBUS_IDENTIFIED", "true"),
        ("MODBUS_VENDOR", "Serial Works"),
        ("MODBUS_PRODUCT_CODE", "RTU-3"),
        ("MODBUS_PROBE_MODEL", "1234"),
    ] {
        assert_eq!(
            device.properties.get(key).map(String::as_str),
            Some(value),
            "{key}"
        );
    }
    assert_quiet(&mut stream, Duration::from_secs(2)).await;

    // The port exists but cannot be opened as a serial port for a while (a
    // broker holds it, a driver hiccups): its devices stay, no new set.
    let real = std::fs::read_link(&pair.b).unwrap();
    let not_a_tty = pair.b.with_file_name("not-a-tty");
    std::fs::write(&not_a_tty, "").unwrap();
    relink(&pair.b, &not_a_tty);
    assert_quiet(&mut stream, Duration::from_secs(2)).await;
    relink(&pair.b, &real);
    assert_quiet(&mut stream, Duration::from_secs(2)).await;

    // The PLC goes off the bus, then comes back.
    server.kill().await;
    until_ids(&mut stream, &[], SCAN).await;
    server.restart().await;
    until_ids(&mut stream, &expected, SCAN).await;
}

#[tokio::test]
async fn a_missing_port_has_no_devices() {
    let dir = tempfile::tempdir().unwrap();
    let mut stream = Modbus::new()
        .discover(DiscoverRequest::new(json!({
            "rtu": {"ports": [format!("{}/ttyUSB*", dir.path().display()), "/dev/ambit-no-such-port"]},
            "interval": "100ms",
        })))
        .await
        .unwrap();
    assert!(next_set(&mut stream, SCAN).await.is_empty());
    assert_quiet(&mut stream, Duration::from_millis(500)).await;
}

/// Points the symlink `link` at `target`, atomically.
fn relink(link: &std::path::Path, target: &std::path::Path) {
    let temp = link.with_extension("new");
    std::os::unix::fs::symlink(target, &temp).unwrap();
    std::fs::rename(&temp, link).unwrap();
}
