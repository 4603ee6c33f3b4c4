#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ambit_discovery::DiscoverRequest;
use serde_json::{Value, json};

use super::*;
use crate::details::plan;
use crate::device::{ADDRESS, ADDRESSES, HOST, INSTANCE, PORT, SERVICE_TYPE, TXT_COUNT};

fn rules(details: Value) -> Rules {
    plan(&DiscoverRequest::new(details)).unwrap().rules
}

fn new_index(details: Value) -> Index {
    Index::new(rules(details), Duration::from_secs(60))
}

fn printer(instance: &str, txt: &[(&str, Option<&str>)]) -> Service {
    Service {
        fullname: format!("{instance}._ipp._tcp.local."),
        service_type: "_ipp._tcp.local.".into(),
        host: "printer-3.local.".into(),
        port: 631,
        addresses: ["fe80::1", "192.0.2.7", "2001:db8::7"]
            .iter()
            .map(|a| a.parse::<IpAddr>().unwrap())
            .collect(),
        txt: txt
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(|v| v.as_bytes().to_vec())))
            .collect(),
    }
}

fn ids(index: &Index) -> Vec<String> {
    index.devices().into_iter().map(|d| d.id).collect()
}

#[test]
fn a_resolved_service_is_a_shared_device_with_its_properties() {
    let mut index = new_index(json!({"serviceTypes": ["_ipp._tcp"]}));
    let now = Instant::now();
    let service = printer(
        "Office Printer",
        &[
            ("ty", Some("HP LaserJet")),
            ("Color", Some("T")),
            ("duplex", None),
        ],
    );
    assert_eq!(index.resolved(&service, now), Ok(true));
    assert_eq!(
        index.resolved(&service, now),
        Ok(false),
        "a replay changes nothing"
    );
    let devices = index.devices();
    assert_eq!(devices.len(), 1);
    let d = &devices[0];
    assert_eq!(d.id, "Office Printer._ipp._tcp.local");
    assert!(d.shared);
    let p = &d.properties;
    assert_eq!(p[INSTANCE], "Office Printer");
    assert_eq!(p[SERVICE_TYPE], "_ipp._tcp");
    assert_eq!(p[HOST], "printer-3.local");
    assert_eq!(p[PORT], "631");
    assert_eq!(p[ADDRESS], "192.0.2.7");
    assert_eq!(p[ADDRESSES], "192.0.2.7,2001:db8::7,fe80::1");
    assert_eq!(p[TXT_COUNT], "3");
    assert_eq!(p["MDNS_TXT_TY"], "HP LaserJet");
    assert_eq!(p["MDNS_TXT_COLOR"], "T");
    assert_eq!(p["MDNS_TXT_DUPLEX"], "");
}

#[test]
fn removal_update_and_case_insensitive_names() {
    let mut index = new_index(json!({"serviceTypes": ["_ipp._tcp"]}));
    let now = Instant::now();
    index
        .resolved(&printer("A", &[("v", Some("1"))]), now)
        .unwrap();
    assert_eq!(
        index.resolved(&printer("A", &[("v", Some("2"))]), now),
        Ok(true)
    );
    assert_eq!(index.devices()[0].properties["MDNS_TXT_V"], "2");
    assert!(
        index.removed("a._IPP._tcp.local."),
        "DNS names are case-insensitive"
    );
    assert!(!index.removed("a._ipp._tcp.local."));
    assert!(index.devices().is_empty());
}

#[test]
fn instance_and_txt_filters_and_a_txt_update_that_leaves_them() {
    let mut index = new_index(json!({
        "serviceTypes": ["_ipp._tcp"],
        "instances": {"include": ["Office*"], "exclude": ["*test*"]},
        "txt": {"TY": "*Laser*", "rp": "*"}
    }));
    let now = Instant::now();
    let good = [("ty", Some("HP LaserJet")), ("rp", Some("ipp/print"))];
    assert_eq!(
        index.resolved(&printer("Lab", &good), now),
        Err(Ignored::Filtered)
    );
    assert_eq!(
        index.resolved(&printer("Office test", &good), now),
        Err(Ignored::Filtered)
    );
    let no_rp = [("ty", Some("HP LaserJet"))];
    assert_eq!(
        index.resolved(&printer("Office 2", &no_rp), now),
        Err(Ignored::Filtered)
    );
    let inkjet = [("ty", Some("Inkjet")), ("rp", Some("x"))];
    assert_eq!(
        index.resolved(&printer("Office 3", &inkjet), now),
        Err(Ignored::Filtered)
    );
    assert_eq!(index.resolved(&printer("Office 1", &good), now), Ok(true));
    assert_eq!(ids(&index), ["Office 1._ipp._tcp.local"]);
    // Its TXT changes so that the filter no longer holds: it leaves.
    assert_eq!(index.resolved(&printer("Office 1", &inkjet), now), Ok(true));
    assert!(index.devices().is_empty());
}

#[test]
fn address_families_and_the_address_bound() {
    let now = Instant::now();
    let mut v6 = new_index(json!({"serviceTypes": ["_ipp._tcp"], "ipv4": false}));
    v6.resolved(&printer("A", &[]), now).unwrap();
    let p = &v6.devices()[0].properties;
    assert_eq!(p[ADDRESS], "2001:db8::7");
    assert_eq!(p[ADDRESSES], "2001:db8::7,fe80::1");
    let mut v4 =
        new_index(json!({"serviceTypes": ["_ipp._tcp"], "ipv6": false, "maxAddresses": 1}));
    v4.resolved(&printer("A", &[]), now).unwrap();
    assert_eq!(v4.devices()[0].properties[ADDRESSES], "192.0.2.7");
    let mut only_v4 = printer("B", &[]);
    only_v4.addresses.retain(IpAddr::is_ipv4);
    assert_eq!(v6.resolved(&only_v4, now), Err(Ignored::NoAddress));
}

#[test]
fn txt_entries_are_bounded_sanitised_and_first_wins() {
    let mut index =
        new_index(json!({"serviceTypes": ["_ipp._tcp"], "maxTxtEntries": 3, "maxTxtBytes": 40}));
    let long = "x".repeat(1000);
    let txt = [
        ("a-b.c", Some("one")),
        ("A_B_C", Some("shadowed")),
        ("big", Some(long.as_str())),
        ("ctl", Some("a\u{7}b\nc")),
        ("=", Some("no key")),
        ("d", Some("d")),
        ("e", Some("over the entry bound")),
    ];
    index.resolved(&printer("A", &txt), Instant::now()).unwrap();
    let p = &index.devices()[0].properties;
    assert_eq!(p["MDNS_TXT_A_B_C"], "one");
    assert!(!p.contains_key("MDNS_TXT_BIG"), "over maxTxtBytes");
    assert_eq!(p["MDNS_TXT_CTL"], "abc");
    assert_eq!(p["MDNS_TXT__"], "no key");
    assert!(!p.contains_key("MDNS_TXT_D") && !p.contains_key("MDNS_TXT_E"));
    assert_eq!(p[TXT_COUNT], "7");
    let mut wide = new_index(json!({"serviceTypes": ["_ipp._tcp"], "maxTxtBytes": 65536}));
    let bytes = vec![0xff_u8; 5000];
    let mut service = printer("B", &[("big", Some(long.as_str()))]);
    service.txt.push(("bin".into(), Some(bytes)));
    wide.resolved(&service, Instant::now()).unwrap();
    let p = &wide.devices()[0].properties;
    assert_eq!(p["MDNS_TXT_BIG"].chars().count(), crate::MAX_VALUE_CHARS);
    assert!(p["MDNS_TXT_BIN"].chars().all(|c| c == '\u{fffd}'));
}

#[test]
fn max_devices_refuses_new_services_but_updates_known_ones() {
    let mut index = new_index(json!({"serviceTypes": ["_ipp._tcp"], "maxDevices": 2}));
    let now = Instant::now();
    index.resolved(&printer("A", &[]), now).unwrap();
    index.resolved(&printer("B", &[]), now).unwrap();
    assert_eq!(index.resolved(&printer("C", &[]), now), Err(Ignored::Limit));
    assert_eq!(
        index.resolved(&printer("A", &[("v", Some("2"))]), now),
        Ok(true)
    );
    assert!(index.removed("B._ipp._tcp.local."));
    assert_eq!(index.resolved(&printer("C", &[]), now), Ok(true));
    assert_eq!(index.len(), 2);
}

#[test]
fn unconfirmed_services_expire_with_the_clock_passed_in() {
    let mut index = new_index(json!({"serviceTypes": ["_ipp._tcp"]}));
    let t0 = Instant::now();
    assert_eq!(index.next_deadline(), None);
    index.resolved(&printer("A", &[]), t0).unwrap();
    index
        .resolved(&printer("B", &[]), t0 + Duration::from_secs(30))
        .unwrap();
    assert_eq!(index.next_deadline(), Some(t0 + Duration::from_secs(60)));
    // A replay confirms A.
    index
        .resolved(&printer("A", &[]), t0 + Duration::from_secs(50))
        .unwrap();
    assert!(!index.expire(t0 + Duration::from_secs(89)));
    assert!(index.expire(t0 + Duration::from_secs(90)));
    assert_eq!(ids(&index), ["A._ipp._tcp.local"]);
    assert!(index.expire(t0 + Duration::from_secs(110)));
    assert_eq!(index.next_deadline(), None);
}

#[test]
fn malformed_names_are_not_devices() {
    let mut index = new_index(json!({"serviceTypes": ["_ipp._tcp"]}));
    let now = Instant::now();
    for fullname in [
        "",
        ".",
        "_ipp._tcp.local.",
        "x._http._tcp.local.",
        "a\u{0}b._ipp._tcp.local.",
    ] {
        let mut s = printer("A", &[]);
        s.fullname = fullname.into();
        assert_eq!(
            index.resolved(&s, now),
            Err(Ignored::Malformed),
            "{fullname:?}"
        );
    }
    let mut s = printer(&"n".repeat(300), &[]);
    assert_eq!(index.resolved(&s, now), Err(Ignored::Malformed));
    s = printer("A", &[]);
    s.service_type = String::new();
    assert_eq!(index.resolved(&s, now), Err(Ignored::Malformed));
    // Multi-byte names never split a char.
    let s = printer("Drucker für Büro", &[]);
    assert_eq!(index.resolved(&s, now), Ok(true));
    assert_eq!(index.devices()[0].properties[INSTANCE], "Drucker für Büro");
}

#[test]
fn random_and_mangled_input_never_panics() {
    let details = json!({"serviceTypes": ["_ipp._tcp", "_http._tcp"], "maxDevices": 20,
        "maxTxtEntries": 4, "maxTxtBytes": 64, "txt": {"k": "*"}});
    let open = json!({"serviceTypes": ["_ipp._tcp"], "maxDevices": 20});
    let mut rng = fastrand::Rng::with_seed(7);
    for round in 0..5000 {
        let len = rng.usize(0..600);
        let mut data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        if round % 3 == 0 {
            // Plausible shapes: small lengths, ASCII text, '=' in TXT.
            for b in &mut data {
                if rng.bool() {
                    *b = b"ak=_. 9"[rng.usize(0..7)];
                } else if rng.u8(..4) == 0 {
                    *b %= 12;
                }
            }
        }
        crate::fuzzing::services(
            if round % 2 == 0 {
                details.clone()
            } else {
                open.clone()
            },
            &data,
        );
    }
}
