#![allow(clippy::unwrap_used, reason = "tests")]

use serde_json::{Value, json};

use super::*;

fn check(details: Value) -> Result<Plan, String> {
    plan(&DiscoverRequest::new(details)).map_err(|e| e.message().to_owned())
}

#[test]
fn the_defaults_and_service_types_in_mdns_sd_form() {
    let p =
        check(json!({"serviceTypes": ["_ipp._tcp", "_http._tcp.local.", "_opcua-tcp._tcp.local"]}))
            .unwrap();
    assert_eq!(
        p.service_types,
        [
            "_ipp._tcp.local.",
            "_http._tcp.local.",
            "_opcua-tcp._tcp.local."
        ]
    );
    assert!(p.interfaces.is_empty());
    assert_eq!(p.requery, DEFAULT_REQUERY);
    assert!(p.rules.ipv4 && p.rules.ipv6);
    assert_eq!(p.rules.limits, Limits::default());
    assert!(p.rules.instances.passes("anything"));
    let p = check(json!({"serviceTypes": ["_printer._sub._http._tcp"]})).unwrap();
    assert_eq!(p.service_types, ["_printer._sub._http._tcp.local."]);
}

#[test]
fn every_error_names_its_field() {
    let cases = [
        (json!({}), "serviceTypes"),
        (json!({"serviceTypes": []}), "serviceTypes:"),
        (json!({"serviceTypes": ["ipp._tcp"]}), "serviceTypes[0]:"),
        (json!({"serviceTypes": ["_ipp._sctp"]}), "serviceTypes[0]:"),
        (json!({"serviceTypes": ["_ipp"]}), "serviceTypes[0]:"),
        (
            json!({"serviceTypes": ["_ipp._tcp", "_i p._tcp"]}),
            "serviceTypes[1]:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp", "_ipp._tcp.local."]}),
            "serviceTypes[1]:",
        ),
        (json!({"serviceTypes": ["_-x._tcp"]}), "serviceTypes[0]:"),
        (
            json!({"serviceTypes": ["._sub._x._tcp"]}),
            "serviceTypes[0]:",
        ),
        (json!({"serviceTypes": [3]}), "serviceTypes[0]:"),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "instances": {"include": ["[x"]}}),
            "instances.include[0]:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "instances": {"exclude": ["a", "[x"]}}),
            "instances.exclude[1]:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "instances": {"only": ["a"]}}),
            "instances.only:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "txt": {"ty": "[x"}}),
            "txt.ty:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "txt": {"": "x"}}),
            "txt.:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "txt": {"a=b": "x"}}),
            "txt.a=b:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "txt": {"ty": 3}}),
            "txt.ty:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "ipv4": false, "ipv6": false}),
            "ipv6:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "ipv4": "yes"}),
            "ipv4:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "interfaces": ["eth0", ""]}),
            "interfaces[1]:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "interfaces": ["a-very-long-interface"]}),
            "interfaces[0]:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "requery": "1s"}),
            "requery:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "requery": "soon"}),
            "requery:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "maxDevices": 0}),
            "maxDevices:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "maxAddresses": 65}),
            "maxAddresses:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "maxTxtEntries": 0}),
            "maxTxtEntries:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "maxTxtBytes": 70000}),
            "maxTxtBytes:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "maxDevices": -1}),
            "maxDevices:",
        ),
        (
            json!({"serviceTypes": ["_ipp._tcp"], "interval": "5s"}),
            "unknown field `interval`",
        ),
    ];
    for (details, field) in cases {
        let error = check(details.clone()).unwrap_err();
        assert!(
            error.starts_with(field) || error.contains(field),
            "{details}: {error:?} does not name {field}"
        );
    }
}

#[test]
fn filters_and_limits_are_read() {
    let p = check(json!({
        "serviceTypes": ["_ipp._tcp"],
        "instances": {"include": ["Office*"], "exclude": ["*test*"]},
        "txt": {"TY": "*Laser*"},
        "ipv6": false,
        "interfaces": ["veth0"],
        "requery": "30s",
        "maxDevices": 5, "maxAddresses": 2, "maxTxtEntries": 3, "maxTxtBytes": 100
    }))
    .unwrap();
    assert!(p.rules.instances.passes("Office 1"));
    assert!(!p.rules.instances.passes("Office test"));
    assert!(!p.rules.instances.passes("Lab"));
    assert_eq!(p.rules.txt.len(), 1);
    assert_eq!(
        p.rules.txt[0].0, "ty",
        "TXT keys compare case-insensitively"
    );
    assert!(p.rules.ipv4 && !p.rules.ipv6);
    assert_eq!(p.interfaces, ["veth0"]);
    assert_eq!(p.requery, Duration::from_secs(30));
    assert_eq!(
        p.rules.limits,
        Limits {
            max_devices: 5,
            max_addresses: 2,
            max_txt_entries: 3,
            max_txt_bytes: 100
        }
    );
}

#[test]
fn the_examples_details_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mdns");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let set: Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(
            set["spec"]["discovery"]["handler"],
            "mdns",
            "{}",
            path.display()
        );
        let result = check(set["spec"]["discovery"]["details"].clone());
        assert!(result.is_ok(), "{}: {result:?}", path.display());
        checked += 1;
    }
    assert_eq!(checked, 2);
}
