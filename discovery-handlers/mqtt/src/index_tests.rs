use std::time::{Duration, Instant};

use prost::Message;
use serde_json::json;

use super::*;
use crate::details::plan;
use crate::proto::Payload;
use crate::proto::payload::{Metric, PropertySet, PropertyValue, metric, property_value};
use crate::sparkplug::Ignored;

const BROKER_URL: &str = "tcp://127.0.0.1:1883";

fn index(details: serde_json::Value) -> Index {
    let plan = plan(&ambit_discovery::DiscoverRequest::new(details)).unwrap();
    Index::new(&plan.watch, plan.limits, BROKER_URL)
}

fn sparkplug(extra: serde_json::Value) -> Index {
    let mut details = json!({"brokers": [BROKER_URL]});
    details
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    index(details)
}

fn metric(name: &str, datatype: u32, unit: Option<&str>) -> Metric {
    Metric {
        name: Some(name.into()),
        datatype: Some(datatype),
        value: Some(metric::Value::DoubleValue(1.5)),
        properties: unit.map(|u| PropertySet {
            keys: vec!["engUnit".into()],
            values: vec![PropertyValue {
                r#type: Some(12),
                value: Some(property_value::Value::StringValue(u.into())),
                ..Default::default()
            }],
        }),
        ..Default::default()
    }
}

fn bd_seq(seq: u64) -> Metric {
    Metric {
        name: Some("bdSeq".into()),
        datatype: Some(8),
        value: Some(metric::Value::LongValue(seq)),
        ..Default::default()
    }
}

fn payload(metrics: Vec<Metric>) -> Vec<u8> {
    Payload {
        timestamp: Some(1),
        metrics,
        seq: Some(0),
        ..Default::default()
    }
    .encode_to_vec()
}

fn ids(index: &Index) -> Vec<String> {
    index.devices().into_iter().map(|d| d.id).collect()
}

fn now() -> Instant {
    Instant::now()
}

#[test]
fn births_make_devices_with_metric_properties() {
    let mut ix = sparkplug(json!({}));
    let t = now();
    assert_eq!(
        ix.apply("spBv1.0/g/NBIRTH/n", &payload(vec![bd_seq(0)]), t),
        Ok(false)
    );
    let birth = payload(vec![
        metric("Temperature", 10, Some("degC")),
        metric("On", 11, None),
    ]);
    assert_eq!(ix.apply("spBv1.0/g/DBIRTH/n/d1", &birth, t), Ok(true));
    assert_eq!(
        ix.apply("spBv1.0/g/DBIRTH/n/d1", &birth, t),
        Ok(false),
        "same birth again"
    );
    let devices = ix.devices();
    assert_eq!(devices.len(), 1);
    let d = &devices[0];
    assert_eq!(d.id, "spb://g/n/d1");
    assert!(d.shared);
    let p = |k: &str| d.properties.get(k).map(String::as_str);
    assert_eq!(p("SPARKPLUG_GROUP"), Some("g"));
    assert_eq!(p("SPARKPLUG_EDGE_NODE"), Some("n"));
    assert_eq!(p("SPARKPLUG_DEVICE"), Some("d1"));
    assert_eq!(p("SPARKPLUG_METRIC_COUNT"), Some("2"));
    assert_eq!(p("SPARKPLUG_METRIC_0_NAME"), Some("Temperature"));
    assert_eq!(p("SPARKPLUG_METRIC_0_DATATYPE"), Some("Double"));
    assert_eq!(p("SPARKPLUG_METRIC_0_UNIT"), Some("degC"));
    assert_eq!(p("SPARKPLUG_METRIC_1_DATATYPE"), Some("Boolean"));
    assert_eq!(p("MQTT_BROKER"), Some(BROKER_URL));
    for key in d.properties.keys() {
        assert!(
            key.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
            "{key} is not an env var name"
        );
    }
}

#[test]
fn deaths_remove_and_stale_deaths_are_ignored() {
    let mut ix = sparkplug(json!({"includeEdgeNodes": true}));
    let t = now();
    assert_eq!(
        ix.apply("spBv1.0/g/NBIRTH/n", &payload(vec![bd_seq(3)]), t),
        Ok(true)
    );
    for d in ["a", "b"] {
        assert_eq!(
            ix.apply(&format!("spBv1.0/g/DBIRTH/n/{d}"), &payload(vec![]), t),
            Ok(true)
        );
    }
    assert_eq!(ids(&ix), ["spb://g/n", "spb://g/n/a", "spb://g/n/b"]);
    assert_eq!(
        ix.apply("spBv1.0/g/DDEATH/n/a", &payload(vec![]), t),
        Ok(true)
    );
    assert_eq!(ids(&ix), ["spb://g/n", "spb://g/n/b"]);
    // The death of an earlier session (bdSeq 2) does not remove session 3.
    assert_eq!(
        ix.apply("spBv1.0/g/NDEATH/n", &payload(vec![bd_seq(2)]), t),
        Err(Ignored::StaleDeath)
    );
    assert_eq!(
        ix.apply("spBv1.0/g/NDEATH/n", &payload(vec![]), t),
        Err(Ignored::StaleDeath),
        "a death without bdSeq cannot prove it is current"
    );
    assert_eq!(ids(&ix).len(), 2);
    assert_eq!(
        ix.apply("spBv1.0/g/NDEATH/n", &payload(vec![bd_seq(3)]), t),
        Ok(true)
    );
    assert!(ids(&ix).is_empty());
}

#[test]
fn a_reborn_node_survives_its_old_sessions_death() {
    let mut ix = sparkplug(json!({}));
    let t = now();
    ix.apply("spBv1.0/g/NBIRTH/n", &payload(vec![bd_seq(0)]), t)
        .unwrap();
    ix.apply("spBv1.0/g/DBIRTH/n/d", &payload(vec![]), t)
        .unwrap();
    // Rebirth: NBIRTH drops the old devices (they rebirth after it).
    assert_eq!(
        ix.apply("spBv1.0/g/NBIRTH/n", &payload(vec![bd_seq(1)]), t),
        Ok(true)
    );
    assert!(ids(&ix).is_empty());
    ix.apply("spBv1.0/g/DBIRTH/n/d", &payload(vec![]), t)
        .unwrap();
    // The old session's will arrives late.
    assert_eq!(
        ix.apply("spBv1.0/g/NDEATH/n", &payload(vec![bd_seq(0)]), t),
        Err(Ignored::StaleDeath)
    );
    assert_eq!(ids(&ix), ["spb://g/n/d"]);
}

#[test]
fn a_dbirth_before_its_nbirth_counts_until_the_node_dies_or_rebirths() {
    let mut ix = sparkplug(json!({"includeEdgeNodes": true}));
    let t = now();
    assert_eq!(
        ix.apply("spBv1.0/g/DBIRTH/n/d", &payload(vec![]), t),
        Ok(true)
    );
    assert_eq!(
        ids(&ix),
        ["spb://g/n/d"],
        "the node is not reported without its NBIRTH"
    );
    // bdSeq unknown: any NDEATH of the node removes it.
    assert_eq!(
        ix.apply("spBv1.0/g/NDEATH/n", &payload(vec![bd_seq(9)]), t),
        Ok(true)
    );
    assert!(ids(&ix).is_empty());
    ix.apply("spBv1.0/g/DBIRTH/n/d", &payload(vec![]), t)
        .unwrap();
    assert_eq!(
        ix.apply("spBv1.0/g/NBIRTH/n", &payload(vec![bd_seq(1)]), t),
        Ok(true)
    );
    assert_eq!(ids(&ix), ["spb://g/n"]);
}

#[test]
fn filters_limits_and_bad_payloads_change_nothing() {
    let mut ix = sparkplug(
        json!({"groups": ["plant-*"], "devices": ["pump*"], "maxDevices": 2, "maxMetrics": 1, "maxPayloadBytes": 64}),
    );
    let t = now();
    assert_eq!(
        ix.apply("spBv1.0/other/DBIRTH/n/pump1", &payload(vec![]), t),
        Err(Ignored::Filtered)
    );
    assert_eq!(
        ix.apply("spBv1.0/plant-a/DBIRTH/n/valve", &payload(vec![]), t),
        Err(Ignored::Filtered)
    );
    let two = payload(vec![metric("a", 3, None), metric("b", 3, None)]);
    assert_eq!(
        ix.apply("spBv1.0/plant-a/DBIRTH/n/pump1", &two, t),
        Ok(true)
    );
    let d = &ix.devices()[0];
    assert_eq!(d.properties["SPARKPLUG_METRIC_COUNT"], "2");
    assert!(
        !d.properties.contains_key("SPARKPLUG_METRIC_1_NAME"),
        "maxMetrics 1"
    );
    for bad in [&b"\xff\xff\xff\xff"[..], &two[..two.len() - 1], b"\x12\x7f"] {
        assert_eq!(
            ix.apply("spBv1.0/plant-a/DBIRTH/n/pump2", bad, t),
            Err(Ignored::Payload)
        );
        assert_eq!(
            ix.apply("spBv1.0/plant-a/NDEATH/n", bad, t),
            Err(Ignored::Payload)
        );
    }
    assert_eq!(
        ix.apply("spBv1.0/plant-a/DBIRTH/n/pump2", &[0; 65], t),
        Err(Ignored::Oversize)
    );
    assert_eq!(
        ix.apply("spBv1.0/plant-a/NDATA/n", &[], t),
        Err(Ignored::Topic)
    );
    assert_eq!(
        ix.apply("spBv1.0/plant-a/DBIRTH/n", &[], t),
        Err(Ignored::Topic)
    );
    assert_eq!(
        ix.apply("spBv1.0/plant-a/DBIRTH/n/d/extra", &[], t),
        Err(Ignored::Topic)
    );
    assert_eq!(ids(&ix), ["spb://plant-a/n/pump1"]);
    let birth = |ix: &mut Index, d: &str| {
        ix.apply(
            &format!("spBv1.0/plant-a/DBIRTH/n/{d}"),
            &payload(vec![]),
            t,
        )
    };
    assert_eq!(birth(&mut ix, "pump2"), Ok(true));
    assert_eq!(birth(&mut ix, "pump3"), Err(Ignored::Limit), "maxDevices");
    assert_eq!(
        birth(&mut ix, "pump2"),
        Ok(false),
        "a known device is reborn"
    );
    assert_eq!(ids(&ix).len(), 2);
    assert!(ix.reset());
    assert!(ids(&ix).is_empty());
}

#[test]
fn subscriptions_name_literal_groups_or_every_group() {
    let ix = sparkplug(json!({"groups": ["a", "b"]}));
    assert_eq!(ix.subscriptions().len(), 8);
    assert!(
        ix.subscriptions()
            .contains(&"spBv1.0/b/DDEATH/#".to_owned())
    );
    let ix = sparkplug(json!({"groups": ["a*"]}));
    assert!(
        ix.subscriptions()
            .iter()
            .all(|s| s.starts_with("spBv1.0/+/"))
    );
}

#[test]
fn topics_presence_from_retained_status() {
    let mut ix = index(
        json!({"brokers": [BROKER_URL], "mode": "topics", "topic": "site/+/status", "idLevel": 1, "onlineValue": "online"}),
    );
    let t = now();
    assert_eq!(ix.subscriptions(), ["site/+/status"]);
    assert_eq!(ix.apply("site/pump-1/status", b"online", t), Ok(true));
    assert_eq!(ix.apply("site/pump-1/status", b"online", t), Ok(false));
    assert_eq!(ix.apply("site/pump-2/status", b"offline", t), Ok(false));
    assert_eq!(
        ix.apply("site/pump-1/other", b"online", t),
        Err(Ignored::Topic)
    );
    let d = &ix.devices()[0];
    assert_eq!(d.id, "mqtt://127.0.0.1:1883/pump-1");
    assert_eq!(d.properties["MQTT_ID"], "pump-1");
    assert_eq!(d.properties["MQTT_TOPIC"], "site/pump-1/status");
    assert_eq!(d.properties["MQTT_BROKER"], BROKER_URL);
    assert!(
        !ix.expire(t + Duration::from_secs(86_400)),
        "no timeout with onlineValue"
    );
    assert_eq!(
        ix.apply("site/pump-1/status", b"", t),
        Ok(true),
        "retained status cleared"
    );
    assert!(ids(&ix).is_empty());
}

#[test]
fn topics_presence_from_timeout_uses_the_clock_given() {
    let mut ix = index(
        json!({"brokers": [BROKER_URL], "mode": "topics", "topic": "+/hello", "idLevel": 0, "timeout": "10s"}),
    );
    let t = now();
    ix.apply("a/hello", b"anything", t).unwrap();
    ix.apply("b/hello", b"", t + Duration::from_secs(5))
        .unwrap();
    assert_eq!(ix.next_deadline(), Some(t + Duration::from_secs(10)));
    assert!(!ix.expire(t + Duration::from_secs(9)));
    assert!(ix.expire(t + Duration::from_secs(10)));
    assert_eq!(ids(&ix), ["mqtt://127.0.0.1:1883/b"]);
    assert!(ix.expire(t + Duration::from_secs(15)));
    assert_eq!(ix.next_deadline(), None);
}

/// Thousands of random and mangled topics and payloads never panic
/// (valid births mangled byte by byte, truncated, random bytes).
#[test]
fn random_and_mangled_messages_never_panic() {
    let mut rng = fastrand::Rng::with_seed(12);
    let valid = payload(vec![bd_seq(1), metric("Temperature", 10, Some("degC"))]);
    let kinds = ["NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "NDATA", "STATE", ""];
    let mut messages = Vec::new();
    for _ in 0..5000 {
        let mut topic = format!(
            "spBv1.0/g{}/{}/n{}",
            rng.u8(..3),
            kinds[rng.usize(..kinds.len())],
            rng.u8(..3)
        );
        if rng.bool() {
            topic.push_str(&format!("/d{}", rng.u8(..4)));
        }
        if rng.u8(..10) == 0 {
            topic = (0..rng.usize(..20)).map(|_| rng.char('!'..='~')).collect();
        }
        let payload = match rng.u8(..4) {
            0 => valid.clone(),
            1 => {
                let mut p = valid.clone();
                for _ in 0..rng.usize(1..4) {
                    let i = rng.usize(..p.len());
                    p[i] = rng.u8(..);
                }
                p
            }
            2 => valid[..rng.usize(..valid.len())].to_vec(),
            _ => (0..rng.usize(..300)).map(|_| rng.u8(..)).collect(),
        };
        messages.push((topic, payload));
    }
    let _ = crate::fuzzing::messages(
        json!({"brokers": [BROKER_URL], "includeEdgeNodes": true, "maxDevices": 5}),
        &messages,
    );
    let topics: Vec<_> = messages
        .iter()
        .map(|(t, p)| (t.replace("spBv1.0", "x"), p.clone()))
        .collect();
    let _ = crate::fuzzing::messages(
        json!({"brokers": [BROKER_URL], "mode": "topics", "topic": "x/+/+/+", "idLevel": 3, "timeout": "1s"}),
        &topics,
    );
}

/// The fuzz target's framing (fuzz/fuzz_targets/messages.rs) reaches the
/// index in every mode: well-formed births and statuses, framed, make
/// devices, so the fuzzer explores past the details check.
#[test]
fn fuzz_framing_reaches_devices_in_every_mode() {
    fn framed(mode: u8, messages: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut data = vec![mode];
        for (topic, payload) in messages {
            data.push(u8::try_from(topic.len()).unwrap());
            data.extend_from_slice(topic.as_bytes());
            data.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
            data.extend_from_slice(payload);
        }
        data
    }
    let births = |group: &str| {
        vec![
            (
                format!("spBv1.0/{group}/NBIRTH/n"),
                payload(vec![bd_seq(0)]),
            ),
            (
                format!("spBv1.0/{group}/DBIRTH/n/d"),
                payload(vec![metric("T", 10, None)]),
            ),
        ]
    };
    // Mode 0 counts the edge node too; mode 1 filters groups on g*.
    assert_eq!(crate::fuzzing::bytes(&framed(0, &births("g1"))), 2);
    assert_eq!(crate::fuzzing::bytes(&framed(1, &births("g1"))), 1);
    assert_eq!(crate::fuzzing::bytes(&framed(1, &births("h"))), 0);
    let status = [("d/pump/s/x".to_owned(), b"on".to_vec())];
    assert_eq!(crate::fuzzing::bytes(&framed(2, &status)), 1);
    // Cut anywhere, the input still never panics.
    let whole = framed(0, &births("g1"));
    for end in 0..whole.len() {
        let _ = crate::fuzzing::bytes(&whole[..end]);
    }
}
