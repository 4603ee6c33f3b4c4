use std::collections::BTreeSet;
use std::time::Duration;

use ambit_discovery::DiscoverRequest;
use serde_json::{Value, json};

use super::*;
use crate::details::parse;

fn tracker(details: Value) -> Tracker {
    let config = parse(&DiscoverRequest::new(details)).unwrap();
    Tracker::new(Arc::new(config), "hci0")
}

fn advert(last_byte: u8, name: &str, rssi: i16) -> Advert {
    Advert {
        address: BDAddr::from([0xAA, 0xBB, 0xCC, 0xDD, 0xEE, last_byte]),
        random_address: Some(false),
        name: Some(name.to_owned()),
        rssi: Some(rssi),
        ..Advert::default()
    }
}

fn ids(tracker: &Tracker) -> Vec<String> {
    tracker
        .devices()
        .into_iter()
        .map(|device| device.id)
        .collect()
}

#[test]
fn a_heard_device_is_reported_with_its_properties() {
    let mut tracker = tracker(json!({}));
    let now = Instant::now();
    let mut sensor = advert(1, "Thermo-01", -50);
    sensor.services = BTreeSet::from([crate::uuids::parse_uuid("181a").unwrap()]);
    sensor.manufacturer_data = BTreeMap::from([(0xFFFF, vec![0x01, 0xab]), (0x004C, vec![])]);
    tracker.heard(sensor, now);
    let devices = tracker.devices();
    assert_eq!(devices.len(), 1);
    let device = &devices[0];
    assert_eq!(device.id, "ble://AA:BB:CC:DD:EE:01");
    assert!(!device.shared);
    let expected: BTreeMap<String, String> = [
        (ADDRESS, "AA:BB:CC:DD:EE:01"),
        (ADDRESS_TYPE, "public"),
        (ADAPTER, "hci0"),
        (NAME, "Thermo-01"),
        (SERVICES, "0000181a-0000-1000-8000-00805f9b34fb"),
        (MANUFACTURER_IDS, "004C,FFFF"),
        ("BLE_MANUFACTURER_004C", ""),
        ("BLE_MANUFACTURER_FFFF", "01ab"),
        (RSSI_BUCKET, "strong"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(device.properties, expected);
}

#[test]
fn rssi_jitter_does_not_change_the_set_but_a_real_move_does() {
    let mut tracker = tracker(json!({}));
    let now = Instant::now();
    tracker.heard(advert(1, "a", -62), now);
    let first = tracker.devices();
    assert_eq!(first[0].properties[RSSI_BUCKET], "medium");
    // Around the -60 threshold, within the 5 dB hysteresis.
    for rssi in [-59, -57, -61, -64, -56, -63] {
        tracker.heard(advert(1, "a", rssi), now);
        assert_eq!(tracker.devices(), first, "rssi {rssi}");
    }
    tracker.heard(advert(1, "a", -54), now);
    assert_eq!(tracker.devices()[0].properties[RSSI_BUCKET], "strong");
    tracker.heard(advert(1, "a", -64), now);
    assert_eq!(tracker.devices()[0].properties[RSSI_BUCKET], "strong");
    tracker.heard(advert(1, "a", -95), now);
    assert_eq!(tracker.devices()[0].properties[RSSI_BUCKET], "weak");
}

#[test]
fn bucket_hysteresis_never_skips_past_the_raw_bucket() {
    let buckets = Buckets::default();
    assert_eq!(Bucket::next(None, -70, &buckets), Bucket::Medium);
    assert_eq!(
        Bucket::next(Some(Bucket::Weak), -58, &buckets),
        Bucket::Medium
    );
    assert_eq!(
        Bucket::next(Some(Bucket::Weak), -30, &buckets),
        Bucket::Strong
    );
    assert_eq!(
        Bucket::next(Some(Bucket::Strong), -83, &buckets),
        Bucket::Medium
    );
    assert_eq!(
        Bucket::next(Some(Bucket::Strong), -120, &buckets),
        Bucket::Weak
    );
}

#[test]
fn rssi_can_be_left_out() {
    let mut tracker = tracker(json!({"reportRssiBucket": false, "reportManufacturerData": false}));
    let mut sensor = advert(1, "a", -40);
    sensor.manufacturer_data = BTreeMap::from([(7, vec![1])]);
    tracker.heard(sensor, Instant::now());
    let properties = &tracker.devices()[0].properties;
    assert!(!properties.contains_key(RSSI_BUCKET));
    assert!(!properties.contains_key("BLE_MANUFACTURER_0007"));
    assert_eq!(properties[MANUFACTURER_IDS], "0007");
}

#[test]
fn devices_expire_when_not_heard() {
    let mut tracker = tracker(json!({"expireAfterSeconds": 10}));
    let start = Instant::now();
    tracker.heard(advert(1, "a", -50), start);
    tracker.heard(advert(2, "b", -50), start + Duration::from_secs(5));
    assert_eq!(tracker.next_expiry(), Some(start + Duration::from_secs(10)));

    // Properties without an advertisement do not restart the clock.
    tracker.update(advert(1, "a2", -50));
    tracker.expire(start + Duration::from_secs(10));
    assert_eq!(ids(&tracker), ["ble://AA:BB:CC:DD:EE:02"]);
    tracker.heard(advert(2, "b", -50), start + Duration::from_secs(14));
    tracker.expire(start + Duration::from_secs(16));
    assert_eq!(ids(&tracker).len(), 1);
    tracker.expire(start + Duration::from_secs(24));
    assert!(ids(&tracker).is_empty());
    assert_eq!(tracker.next_expiry(), None);
}

#[test]
fn weak_advertisements_do_not_count_with_min_rssi() {
    let mut tracker = tracker(json!({"minRssi": -70, "expireAfterSeconds": 10}));
    let start = Instant::now();
    tracker.heard(advert(1, "a", -80), start);
    assert!(ids(&tracker).is_empty());
    tracker.heard(advert(1, "a", -60), start);
    assert_eq!(ids(&tracker).len(), 1);
    // Weak advertisements keep the properties fresh, not the device.
    tracker.heard(advert(1, "renamed", -90), start + Duration::from_secs(9));
    assert_eq!(tracker.devices()[0].properties[NAME], "renamed");
    tracker.expire(start + Duration::from_secs(10));
    assert!(ids(&tracker).is_empty());
}

#[test]
fn filters_apply_to_the_latest_properties() {
    let mut tracker = tracker(json!({"localName": {"glob": "Thermo-*"}}));
    let now = Instant::now();
    tracker.heard(advert(1, "unnamed", -50), now);
    assert!(ids(&tracker).is_empty());
    tracker.update(advert(1, "Thermo-1", -50));
    assert_eq!(ids(&tracker).len(), 1);
    tracker.update(advert(1, "Hygro-1", -50));
    assert!(ids(&tracker).is_empty());
}

#[test]
fn forgotten_devices_go_at_once() {
    let mut tracker = tracker(json!({}));
    let now = Instant::now();
    tracker.heard(advert(1, "a", -50), now);
    tracker.heard(advert(2, "b", -50), now);
    tracker.forget(&advert(1, "a", -50).address);
    assert_eq!(ids(&tracker), ["ble://AA:BB:CC:DD:EE:02"]);
    tracker.retain(|_| false);
    assert!(ids(&tracker).is_empty());
}

#[test]
fn with_gatt_a_device_waits_for_its_values_once_per_appearance() {
    let mut tracker = tracker(json!({
        "expireAfterSeconds": 10,
        "gatt": {"read": [{"service": "180a", "characteristic": "2a24"}]},
    }));
    let start = Instant::now();
    let sensor = advert(1, "a", -50);
    tracker.heard(sensor.clone(), start);
    assert!(ids(&tracker).is_empty());
    assert_eq!(tracker.take_gatt_reads(), [sensor.address]);
    assert!(tracker.take_gatt_reads().is_empty());
    tracker.heard(sensor.clone(), start);
    assert!(ids(&tracker).is_empty());

    tracker.gatt_read(
        &sensor.address,
        BTreeMap::from([("BLE_GATT_2A24".to_owned(), "4d31".to_owned())]),
    );
    assert_eq!(tracker.devices()[0].properties["BLE_GATT_2A24"], "4d31");
    assert!(tracker.take_gatt_reads().is_empty());

    // Gone and back: read again.
    tracker.expire(start + Duration::from_secs(10));
    tracker.heard(sensor.clone(), start + Duration::from_secs(11));
    assert_eq!(tracker.take_gatt_reads(), [sensor.address]);
}

#[test]
fn hex_is_lowercase_two_digits_a_byte() {
    assert_eq!(hex(&[0x00, 0x0f, 0xab]), "000fab");
    assert_eq!(hex(&[]), "");
}
