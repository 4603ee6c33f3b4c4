use std::collections::BTreeMap;

use serde_json::json;

use super::*;

fn config(details: serde_json::Value, properties: &[(&str, &str)]) -> Result<Config, String> {
    let mut request = DiscoverRequest::new(details);
    request.properties = properties
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect::<BTreeMap<_, _>>();
    parse(&request).map_err(|e| e.message().to_owned())
}

#[test]
fn defaults() {
    let c = config(json!({}), &[]).unwrap();
    assert_eq!(c.types, ["dn:NetworkVideoTransmitter"]);
    assert_eq!(c.probe_interval, DEFAULT_PROBE_INTERVAL);
    assert_eq!(c.missed_probes, 2);
    assert!(c.ipv6 && c.streams);
    assert!(c.credentials.for_device("x").is_none());
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (
            json!({"probeInterval": "soon"}),
            "probeInterval: \"soon\" is not a duration",
        ),
        (
            json!({"matchTimeout": "90s"}),
            "matchTimeout: 90s is out of range",
        ),
        (
            json!({"probeInterval": "2s", "matchTimeout": "3s"}),
            "matchTimeout (3s) must be shorter than probeInterval (2s)",
        ),
        (
            json!({"missedProbes": 0}),
            "missedProbes: must be 1 to 100, not 0",
        ),
        (
            json!({"probeRepeat": 9}),
            "probeRepeat: must be 0 to 8, not 9",
        ),
        (
            json!({"types": ["NetworkVideoTransmitter"]}),
            "types[0]: \"NetworkVideoTransmitter\" must be dn:<Name>",
        ),
        (
            json!({"ipAddresses": {"include": ["10.0.0.300"]}}),
            "ipAddresses.include[0]",
        ),
        (json!({"interfaces": ["[x"]}), "interfaces[0]"),
        (json!({"scope": {}}), "unknown field `scope`"),
    ];
    for (details, expected) in cases {
        let error = config(details.clone(), &[]).unwrap_err();
        assert!(error.contains(expected), "{details}: {error}");
    }
}

#[test]
fn credentials_by_uuid_with_a_default() {
    let c = config(
        json!({}),
        &[
            ("ONVIF_USERNAME", "admin"),
            ("ONVIF_PASSWORD", "pw"),
            (
                "ONVIF_USERNAME_3FA1FE68_B915_4053_A3E1_AC15A21F5F91",
                "gate",
            ),
            (
                "onvif_password_3fa1fe68_b915_4053_a3e1_ac15a21f5f91",
                "gatepw",
            ),
        ],
    )
    .unwrap();
    let gate = c
        .credentials
        .for_device("3fa1fe68-b915-4053-a3e1-ac15a21f5f91")
        .unwrap();
    assert_eq!(
        (gate.username.as_str(), gate.password.as_str()),
        ("gate", "gatepw")
    );
    assert_eq!(c.credentials.for_device("other").unwrap().username, "admin");

    let half = config(json!({}), &[("ONVIF_PASSWORD_AB", "x")]).unwrap_err();
    assert_eq!(
        half,
        "properties: ONVIF_PASSWORD_AB is given but ONVIF_USERNAME_AB is not; give both"
    );
    assert_eq!(property_key("urn:uuid:a-b"), "URN_UUID_A_B");
}
