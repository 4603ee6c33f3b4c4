use serde_json::{Value, json};

use super::*;

fn config(details: Value) -> Config {
    parse(&DiscoverRequest::new(details)).unwrap()
}

fn error(details: Value) -> String {
    match parse(&DiscoverRequest::new(details)) {
        Err(DiscoveryError::InvalidDetails(message)) => message,
        other => panic!("expected invalid details, got {other:?}"),
    }
}

#[test]
fn empty_details_take_every_device_on_the_first_adapter() {
    let config = config(json!({}));
    assert_eq!(config.adapter, AdapterChoice::First);
    assert_eq!(config.expire_after, DEFAULT_EXPIRE_AFTER);
    assert_eq!(config.buckets, Some(Buckets::default()));
    assert!(config.manufacturer_data);
    assert!(config.gatt.is_none());
    assert!(config.filter.services.is_empty());
}

#[test]
fn every_field_is_read() {
    let config = config(json!({
        "adapter": "hci1",
        "localName": {"glob": "Thermo-*", "regex": "[0-9]$"},
        "serviceUuids": ["181a", "6e400001-b5a3-f393-e0a9-e50e24dcca9e"],
        "manufacturerIds": [65535, "0x004C", "76"],
        "minRssi": -90,
        "addresses": {"allow": ["aa:bb:cc:dd:ee:ff"], "deny": ["AA:BB:CC:DD:EE:00"]},
        "expireAfterSeconds": 120,
        "rssiBuckets": {"strong": -55, "medium": -75, "hysteresis": 3},
        "reportManufacturerData": false,
        "gatt": {
            "timeoutSeconds": 5,
            "read": [
                {"service": "180a", "characteristic": "2a24", "name": "MODEL", "format": "utf8"},
                {"service": "180a", "characteristic": "2a26"},
            ],
        },
    }));
    assert_eq!(config.adapter, AdapterChoice::Name("hci1".into()));
    assert!(
        config
            .filter
            .name_glob
            .as_ref()
            .unwrap()
            .is_match("Thermo-1")
    );
    assert_eq!(config.filter.services.len(), 2);
    assert_eq!(
        config.filter.manufacturer_ids,
        BTreeSet::from([0xFFFF, 0x004C])
    );
    assert_eq!(config.filter.min_rssi, Some(-90));
    assert_eq!(
        config.filter.allow,
        BTreeSet::from(["AA:BB:CC:DD:EE:FF".parse().unwrap()])
    );
    assert_eq!(config.expire_after, Duration::from_secs(120));
    assert_eq!(
        config.buckets,
        Some(Buckets {
            strong: -55,
            medium: -75,
            hysteresis: 3
        })
    );
    assert!(!config.manufacturer_data);
    let gatt = config.gatt.unwrap();
    assert_eq!(gatt.timeout, Duration::from_secs(5));
    assert_eq!(gatt.reads[0].property, "BLE_GATT_MODEL");
    assert_eq!(gatt.reads[0].format, ValueFormat::Utf8);
    assert_eq!(gatt.reads[1].property, "BLE_GATT_2A26");
    assert_eq!(gatt.reads[1].format, ValueFormat::Hex);
}

#[test]
fn the_adapter_is_a_name_or_an_index() {
    assert_eq!(
        config(json!({"adapter": 1})).adapter,
        AdapterChoice::Index(1)
    );
    assert_eq!(
        config(json!({"adapter": "hci0"})).adapter,
        AdapterChoice::Name("hci0".into())
    );
}

#[test]
fn rssi_can_be_left_out() {
    assert_eq!(config(json!({"reportRssiBucket": false})).buckets, None);
}

#[test]
fn errors_name_the_bad_field() {
    let cases = [
        (
            json!({"adapter": -1}),
            "adapter: invalid value: integer `-1`, expected an adapter name like \"hci0\" or an index like 0",
        ),
        (
            json!({"adapter": "/org/bluez/hci0"}),
            "adapter: invalid value: string \"/org/bluez/hci0\", expected an adapter name like \"hci0\" or an index like 0",
        ),
        (
            json!({"localName": {}}),
            "localName: give `glob`, `regex` or both",
        ),
        (
            json!({"localName": {"regex": "("}}),
            "localName.regex: not a valid regular expression: regex parse error:\n    (\n    ^\nerror: unclosed group",
        ),
        (
            json!({"localName": {"pattern": "x"}}),
            "localName.pattern: unknown field `pattern`, expected `glob` or `regex`",
        ),
        (
            json!({"serviceUuids": ["181a", "nope"]}),
            "serviceUuids[1]: \"nope\" is not a UUID: give 16 or 32 bits in hex (\"180a\") or 128 bits (\"0000180a-0000-1000-8000-00805f9b34fb\")",
        ),
        (
            json!({"manufacturerIds": [70000]}),
            "manufacturerIds[0]: invalid value: integer `70000`, expected a company id from 0 to 65535, or a hex string like \"0x004C\"",
        ),
        (
            json!({"manufacturerIds": ["0xZZ"]}),
            "manufacturerIds[0]: invalid value: string \"0xZZ\", expected a company id from 0 to 65535, or a hex string like \"0x004C\"",
        ),
        (
            json!({"minRssi": -200}),
            "minRssi: -200 dBm is outside the range of RSSI values (-127 to 20)",
        ),
        (
            json!({"addresses": {"allow": ["AA:BB:CC:DD:EE:FF", "AA:BB"]}}),
            "addresses.allow[1]: \"AA:BB\" is not a Bluetooth address like \"AA:BB:CC:DD:EE:FF\"",
        ),
        (
            json!({"addresses": {"allow": ["AA:BB:CC:DD:EE:FF"], "deny": ["aa:bb:cc:dd:ee:ff"]}}),
            "addresses: AA:BB:CC:DD:EE:FF is both allowed and denied",
        ),
        (
            json!({"expireAfterSeconds": 0}),
            "expireAfterSeconds: must be at least 1",
        ),
        (
            json!({"expireAfterSeconds": 100_000}),
            "expireAfterSeconds: 100000 is more than the limit of 86400 (a day)",
        ),
        (
            json!({"rssiBuckets": {"strong": -80, "medium": -60}}),
            "rssiBuckets: medium (-60) must be below strong (-80)",
        ),
        (
            json!({"rssiBuckets": {"hysteresis": 30}}),
            "rssiBuckets.hysteresis: 30 dB is outside 0 to 20",
        ),
        (
            json!({"gatt": {}}),
            "gatt.read: list at least one characteristic to read (leave `gatt` out not to connect)",
        ),
        (
            json!({"gatt": {"read": [{"service": "180a", "characteristic": "2a24"}], "timeoutSeconds": 0}}),
            "gatt.timeoutSeconds: 0 is outside 1 to 300",
        ),
        (
            json!({"gatt": {"read": [{"service": "180a"}]}}),
            "gatt.read[0]: missing field `characteristic`",
        ),
        (
            json!({"gatt": {"read": [{"service": "180a", "characteristic": "2a24", "format": "base64"}]}}),
            "gatt.read[0].format: unknown variant `base64`, expected `hex` or `utf8`",
        ),
        (
            json!({"gatt": {"read": [{"service": "180a", "characteristic": "2a24", "name": "model"}]}}),
            "gatt.read[0].name: \"model\" must be upper-case letters, digits and '_' (it becomes the property BLE_GATT_<name>)",
        ),
        (
            json!({"gatt": {"read": [
                {"service": "180a", "characteristic": "2a24"},
                {"service": "180a", "characteristic": "2a25", "name": "2A24"},
            ]}}),
            "gatt.read[1]: property BLE_GATT_2A24 is already read by an earlier entry; give it another `name`",
        ),
        (
            json!({"colour": "blue"}),
            "colour: unknown field `colour`, expected one of `adapter`, `localName`, `serviceUuids`, `manufacturerIds`, `minRssi`, `addresses`, `expireAfterSeconds`, `rssiBuckets`, `reportRssiBucket`, `reportManufacturerData`, `gatt`",
        ),
    ];
    for (details, expected) in cases {
        assert_eq!(error(details.clone()), expected, "{details}");
    }
}
