//! The bluetooth handler against a mocked BlueZ (python-dbusmock's `bluez5`
//! template) on a private D-Bus bus: what the agent sees through the
//! `DiscoveryHandler` trait as devices come, advertise, change and go.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic fails the test"
)]

mod mockbluez;

use std::collections::BTreeMap;
use std::time::Duration;

use ambit_bluetooth::Bluetooth;
use ambit_discovery::{Device, DeviceStream, DiscoverRequest, DiscoveryError, DiscoveryHandler};
use futures::StreamExt;
use mockbluez::{Mock, manufacturer_data, value};
use serde_json::{Value, json};

/// Long enough for BlueZ's events to have arrived and been handled.
const QUIET: Duration = Duration::from_millis(700);
/// The tests' resync interval (5 s by default).
const RESYNC: Duration = Duration::from_millis(300);

fn handler() -> Bluetooth {
    Bluetooth::new().with_resync_interval(RESYNC)
}

async fn start(handler: &Bluetooth, details: Value) -> DeviceStream {
    handler
        .discover(DiscoverRequest::new(details))
        .await
        .unwrap()
}

async fn next_set(stream: &mut DeviceStream) -> Vec<Device> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a device set in time")
        .expect("the stream is open")
        .expect("no discovery error")
}

fn ids(set: &[Device]) -> Vec<&str> {
    set.iter().map(|device| device.id.as_str()).collect()
}

async fn assert_quiet(stream: &mut DeviceStream) {
    let next = tokio::time::timeout(QUIET, stream.next()).await;
    assert!(next.is_err(), "expected no new device set, got {next:?}");
}

#[test]
fn devices_present_and_added_mid_scan_appear() {
    mockbluez::run(
        "devices_present_and_added_mid_scan_appear",
        |mock| async move {
            mock.add_adapter("hci0");
            mock.add_device("hci0", "AA:BB:CC:DD:EE:01", "Thermo-01");
            let handler = handler();
            let mut stream = start(&handler, json!({})).await;

            let first = next_set(&mut stream).await;
            assert_eq!(ids(&first), ["ble://AA:BB:CC:DD:EE:01"]);
            let expected: BTreeMap<String, String> = [
                ("BLE_ADDRESS", "AA:BB:CC:DD:EE:01"),
                ("BLE_ADDRESS_TYPE", "public"),
                ("BLE_ADAPTER", "hci0"),
                ("BLE_NAME", "Thermo-01"),
                ("BLE_RSSI_BUCKET", "medium"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            assert_eq!(first[0].properties, expected);
            assert!(!first[0].shared);

            mock.add_device("hci0", "AA:BB:CC:DD:EE:02", "Thermo-02");
            let second = next_set(&mut stream).await;
            assert_eq!(
                ids(&second),
                ["ble://AA:BB:CC:DD:EE:01", "ble://AA:BB:CC:DD:EE:02"]
            );
            assert_quiet(&mut stream).await;
        },
    );
}

#[test]
fn advertisement_changes_make_a_new_set_and_rssi_jitter_does_not() {
    mockbluez::run(
        "advertisement_changes_make_a_new_set_and_rssi_jitter_does_not",
        |mock| async move {
            mock.add_adapter("hci0");
            let sensor = mock.add_device("hci0", "AA:BB:CC:DD:EE:01", "Thermo-01");
            let handler = handler();
            let mut stream = start(&handler, json!({})).await;
            let first = next_set(&mut stream).await;
            assert_eq!(first[0].properties["BLE_RSSI_BUCKET"], "medium");

            // RSSI moving around the -80 threshold, within the hysteresis.
            for rssi in [-78, -82, -84, -76, -81] {
                mock.rssi(&sensor, rssi);
            }
            assert_quiet(&mut stream).await;

            // New manufacturer data: a new set.
            mock.update(
                &sensor,
                vec![(
                    "ManufacturerData",
                    manufacturer_data(&[(0xFFFF, &[0x01, 0x02])]),
                )],
            );
            let set = next_set(&mut stream).await;
            assert_eq!(set[0].properties["BLE_MANUFACTURER_FFFF"], "0102");
            assert_eq!(set[0].properties["BLE_MANUFACTURER_IDS"], "FFFF");

            // The same data again (BlueZ repeats it on every advertisement): no set.
            mock.update(
                &sensor,
                vec![(
                    "ManufacturerData",
                    manufacturer_data(&[(0xFFFF, &[0x01, 0x02])]),
                )],
            );
            assert_quiet(&mut stream).await;

            // A new name with an advertisement, and a new name alone (BlueZ
            // sends no event btleplug passes on for that: the resync finds it).
            mock.update(
                &sensor,
                vec![
                    ("Name", value("Thermo-01b".to_owned())),
                    ("ManufacturerData", manufacturer_data(&[(0xFFFF, &[0x03])])),
                ],
            );
            let set = next_set(&mut stream).await;
            assert_eq!(set[0].properties["BLE_NAME"], "Thermo-01b");
            assert_eq!(set[0].properties["BLE_MANUFACTURER_FFFF"], "03");
            mock.update(
                &sensor,
                vec![
                    ("Name", value("Thermo-01c".to_owned())),
                    ("Alias", value("Thermo-01c".to_owned())),
                ],
            );
            let set = next_set(&mut stream).await;
            assert_eq!(set[0].properties["BLE_NAME"], "Thermo-01c");

            // Advertised services.
            mock.update(
                &sensor,
                vec![(
                    "UUIDs",
                    value(vec!["0000181a-0000-1000-8000-00805f9b34fb".to_owned()]),
                )],
            );
            let set = next_set(&mut stream).await;
            assert_eq!(
                set[0].properties["BLE_SERVICES"],
                "0000181a-0000-1000-8000-00805f9b34fb"
            );

            // A real move in signal strength.
            mock.rssi(&sensor, -50);
            let set = next_set(&mut stream).await;
            assert_eq!(set[0].properties["BLE_RSSI_BUCKET"], "strong");
            assert_quiet(&mut stream).await;
        },
    );
}

#[test]
fn silent_devices_expire_and_removed_devices_go() {
    mockbluez::run(
        "silent_devices_expire_and_removed_devices_go",
        |mock| async move {
            mock.add_adapter("hci0");
            let chatty = mock.add_device("hci0", "AA:BB:CC:DD:EE:01", "chatty");
            let silent = mock.add_device("hci0", "AA:BB:CC:DD:EE:02", "silent");
            let handler = handler();
            let mut stream = start(&handler, json!({"expireAfterSeconds": 2})).await;
            assert_eq!(next_set(&mut stream).await.len(), 2);

            // One keeps advertising (its RSSI jitters), the other falls silent.
            let started = tokio::time::Instant::now();
            let advertise = {
                let chatty = chatty.clone();
                async move {
                    loop {
                        for rssi in [-70, -71] {
                            mock.rssi(&chatty, rssi);
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                    }
                }
            };
            let set = tokio::select! {
                set = next_set(&mut stream) => set,
                () = advertise => unreachable!(),
            };
            assert_eq!(ids(&set), ["ble://AA:BB:CC:DD:EE:01"]);
            let waited = started.elapsed();
            assert!(
                waited >= Duration::from_millis(1500) && waited < Duration::from_secs(6),
                "expired after {waited:?}"
            );
            let _ = silent;
            drop(stream);

            // BlueZ dropping a device removes it without waiting for expiry.
            let (mock, mut stream) = {
                let mock = mockbluez_reconnect();
                let stream = start(&handler, json!({"expireAfterSeconds": 600})).await;
                (mock, stream)
            };
            let set = next_set(&mut stream).await;
            assert_eq!(set.len(), 2, "{set:?}");
            mock.remove_device("hci0", &chatty);
            let set = next_set(&mut stream).await;
            assert_eq!(ids(&set), ["ble://AA:BB:CC:DD:EE:02"]);

            // And a device BlueZ finds again comes back.
            mock.add_device("hci0", "AA:BB:CC:DD:EE:01", "chatty");
            assert_eq!(next_set(&mut stream).await.len(), 2);
        },
    );
}

/// A second control connection to the test's bus (the first moved into
/// the advertising loop).
fn mockbluez_reconnect() -> Mock {
    mockbluez::connect_from_env()
}

#[test]
fn filters_choose_the_devices() {
    mockbluez::run("filters_choose_the_devices", |mock| async move {
        mock.add_adapter("hci0");
        let thermo = mock.add_device("hci0", "AA:BB:CC:DD:EE:01", "Thermo-01");
        mock.update(
            &thermo,
            vec![("ManufacturerData", manufacturer_data(&[(0xFFFF, &[1])]))],
        );
        let other_vendor = mock.add_device("hci0", "AA:BB:CC:DD:EE:02", "Thermo-02");
        mock.update(
            &other_vendor,
            vec![("ManufacturerData", manufacturer_data(&[(0x004C, &[1])]))],
        );
        let denied = mock.add_device("hci0", "AA:BB:CC:DD:EE:03", "Thermo-03");
        mock.update(
            &denied,
            vec![("ManufacturerData", manufacturer_data(&[(0xFFFF, &[1])]))],
        );
        mock.add_device("hci0", "AA:BB:CC:DD:EE:04", "Phone");

        let handler = handler();
        let details = json!({
            "localName": {"glob": "Thermo-*"},
            "manufacturerIds": ["0xFFFF"],
            "addresses": {"deny": ["aa:bb:cc:dd:ee:03"]},
        });
        let mut stream = start(&handler, details).await;
        assert_eq!(
            ids(&next_set(&mut stream).await),
            ["ble://AA:BB:CC:DD:EE:01"]
        );

        // A device that starts to match joins.
        mock.update(
            &other_vendor,
            vec![(
                "ManufacturerData",
                manufacturer_data(&[(0x004C, &[1]), (0xFFFF, &[2])]),
            )],
        );
        assert_eq!(
            ids(&next_set(&mut stream).await),
            ["ble://AA:BB:CC:DD:EE:01", "ble://AA:BB:CC:DD:EE:02"]
        );

        // minRssi: a device heard only weakly does not count.
        let mut strong_only = start(&handler, json!({"minRssi": -60})).await;
        assert!(next_set(&mut strong_only).await.is_empty());
        mock.rssi(&thermo, -55);
        assert_eq!(
            ids(&next_set(&mut strong_only).await),
            ["ble://AA:BB:CC:DD:EE:01"]
        );
        assert_quiet(&mut strong_only).await;
    });
}

#[test]
fn gatt_values_are_read_when_asked() {
    mockbluez::run("gatt_values_are_read_when_asked", |mock| async move {
        mock.add_adapter("hci0");
        let sensor = mock.add_device("hci0", "AA:BB:CC:DD:EE:01", "Thermo-01");
        mock.add_gatt_characteristic(
            &sensor,
            "0000180a-0000-1000-8000-00805f9b34fb",
            "00002a24-0000-1000-8000-00805f9b34fb",
            b"TH-1\0",
        );
        let handler = handler();
        let details = json!({"gatt": {"read": [
            {"service": "180a", "characteristic": "2a24", "name": "MODEL", "format": "utf8"},
            {"service": "180a", "characteristic": "2a24"},
            {"service": "180a", "characteristic": "2a99", "name": "MISSING"},
        ]}});
        let mut stream = start(&handler, details).await;
        let mut set = next_set(&mut stream).await;
        if set.is_empty() {
            // The first set may come before the read is done.
            set = next_set(&mut stream).await;
        }
        assert_eq!(ids(&set), ["ble://AA:BB:CC:DD:EE:01"]);
        assert_eq!(set[0].properties["BLE_GATT_MODEL"], "TH-1");
        assert_eq!(set[0].properties["BLE_GATT_2A24"], "54482d3100");
        assert!(!set[0].properties.contains_key("BLE_GATT_MISSING"));
        assert!(!mock.connected(&sensor), "disconnected after reading");
        assert_quiet(&mut stream).await;
    });
}

#[test]
fn scanning_resumes_when_bluez_stops_it() {
    mockbluez::run("scanning_resumes_when_bluez_stops_it", |mock| async move {
        mock.add_adapter("hci0");
        let handler = handler();
        let mut stream = start(&handler, json!({})).await;
        assert!(next_set(&mut stream).await.is_empty());
        assert!(mock.discovering("hci0"));

        // As if bluetoothd restarted: nobody scans any more.
        mock.stop_discovery("hci0");
        assert!(!mock.discovering("hci0"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !mock.discovering("hci0") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "scanning did not resume"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // The scan stops with the last discovery on the adapter.
        drop(stream);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while mock.discovering("hci0") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "scanning did not stop"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

#[test]
fn a_missing_adapter_is_unavailable_not_invalid() {
    mockbluez::run(
        "a_missing_adapter_is_unavailable_not_invalid",
        |mock| async move {
            mock.add_adapter("hci0");
            mock.add_adapter("hci1");
            let handler = handler();
            let error = handler
                .discover(DiscoverRequest::new(json!({"adapter": "hci7"})))
                .await
                .err()
                .unwrap();
            assert_eq!(
                error,
                DiscoveryError::Unavailable(
                    "no Bluetooth adapter \"hci7\" on this node (BlueZ has hci0, hci1)".into()
                )
            );
            // By index, in the order hci0, hci1.
            mock.add_device("hci1", "AA:BB:CC:DD:EE:11", "on-hci1");
            mock.add_device("hci0", "AA:BB:CC:DD:EE:01", "on-hci0");
            let mut stream = start(&handler, json!({"adapter": 1})).await;
            let set = next_set(&mut stream).await;
            assert_eq!(ids(&set), ["ble://AA:BB:CC:DD:EE:11"]);
            assert_eq!(set[0].properties["BLE_ADAPTER"], "hci1");
        },
    );
}

#[tokio::test]
async fn invalid_details_fail_before_touching_bluez() {
    let error = Bluetooth::new()
        .discover(DiscoverRequest::new(json!({"minRssi": "loud"})))
        .await
        .err()
        .unwrap();
    assert_eq!(
        error,
        DiscoveryError::InvalidDetails(
            "minRssi: invalid type: string \"loud\", expected i16".into()
        )
    );
}
