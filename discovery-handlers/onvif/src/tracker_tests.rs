use std::net::Ipv4Addr;

use ambit_discovery::DiscoverRequest;
use serde_json::json;

use super::*;
use crate::details;
use crate::soap::DeviceInformation;

fn config() -> Config {
    details::parse(&DiscoverRequest::new(json!({}))).unwrap()
}

fn endpoint(address: &str, host: &str) -> Endpoint {
    Endpoint {
        address: address.into(),
        types: vec!["dn:NetworkVideoTransmitter".into()],
        scopes: vec![],
        xaddrs: vec![format!("http://{host}/onvif/device_service")],
        metadata_version: 1,
    }
}

fn message(id: &str, sequence: Option<(u64, u64)>, body: Body) -> Message {
    Message {
        message_id: Some(id.into()),
        relates_to: Some("probe-1".into()),
        app_sequence: sequence.map(|(instance_id, message_number)| AppSequence {
            instance_id,
            message_number,
        }),
        body,
    }
}

const FROM: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

fn described(tracker: &mut Tracker, config: &Config) -> usize {
    let jobs = tracker.jobs(config, 16);
    let n = jobs.len();
    for job in jobs {
        let info = Info {
            xaddr: job.xaddrs.first().cloned(),
            device: Some(DeviceInformation::default()),
            ..Info::default()
        };
        tracker.interrogated(job, info);
    }
    n
}

#[test]
fn duplicates_are_dropped() {
    let config = config();
    let mut tracker = Tracker::default();
    tracker.start_cycle("probe-1".into());
    let matches = || {
        message(
            "m-1",
            None,
            Body::ProbeMatches(vec![endpoint("urn:uuid:a", "10.0.0.2")]),
        )
    };
    assert!(tracker.observe(matches(), FROM));
    assert!(
        !tracker.observe(matches(), FROM),
        "a repeated MessageID is ignored"
    );
    // The same content under a new MessageID (answered twice) changes nothing.
    let again = message(
        "m-2",
        None,
        Body::ProbeMatches(vec![endpoint("urn:uuid:a", "10.0.0.2")]),
    );
    assert!(!tracker.observe(again, FROM));
    assert_eq!(
        described(&mut tracker, &config),
        1,
        "one camera, interrogated once"
    );
    assert_eq!(described(&mut tracker, &config), 0);
    assert_eq!(tracker.devices(&config).len(), 1);
    // Answers to somebody else's Probe are not ours.
    let mut foreign = message(
        "m-3",
        None,
        Body::ProbeMatches(vec![endpoint("urn:uuid:b", "10.0.0.3")]),
    );
    foreign.relates_to = Some("not-ours".into());
    assert!(!tracker.observe(foreign, FROM));
}

#[test]
fn hello_bye_and_stale_messages() {
    let config = config();
    let mut tracker = Tracker::default();
    tracker.start_cycle("probe-1".into());
    assert!(tracker.observe(
        message(
            "h1",
            Some((5, 1)),
            Body::Hello(endpoint("urn:uuid:a", "10.0.0.2"))
        ),
        FROM
    ));
    described(&mut tracker, &config);
    assert_eq!(tracker.devices(&config).len(), 1);
    assert!(tracker.observe(
        message(
            "b1",
            Some((5, 2)),
            Body::Bye(endpoint("urn:uuid:a", "10.0.0.2"))
        ),
        FROM
    ));
    assert!(tracker.devices(&config).is_empty(), "Bye removes at once");
    // A late Hello from before the Bye does not bring it back...
    assert!(!tracker.observe(
        message(
            "h0",
            Some((5, 0)),
            Body::Hello(endpoint("urn:uuid:a", "10.0.0.2"))
        ),
        FROM
    ));
    // ...but the device's next run (a higher InstanceId) does, under the same id.
    assert!(tracker.observe(
        message(
            "h2",
            Some((6, 1)),
            Body::Hello(endpoint("urn:uuid:a", "10.0.0.9"))
        ),
        FROM
    ));
    described(&mut tracker, &config);
    let devices = tracker.devices(&config);
    assert_eq!(devices[0].id, "urn:uuid:a");
    assert_eq!(devices[0].properties[crate::device::IP_ADDRESS], "10.0.0.9");
}

#[test]
fn a_camera_goes_only_after_missed_cycles() {
    let config = config();
    let mut tracker = Tracker::default();
    tracker.start_cycle("probe-1".into());
    tracker.observe(
        message(
            "m1",
            None,
            Body::ProbeMatches(vec![endpoint("urn:uuid:a", "10.0.0.2")]),
        ),
        FROM,
    );
    described(&mut tracker, &config);
    assert!(!tracker.end_cycle(2));
    tracker.start_cycle("probe-2".into());
    assert!(!tracker.end_cycle(2), "one lost reply keeps the camera");
    assert_eq!(tracker.devices(&config).len(), 1);
    tracker.start_cycle("probe-3".into());
    assert!(tracker.end_cycle(2), "two in a row remove it");
    assert!(tracker.devices(&config).is_empty());
}

#[test]
fn failed_interrogations_retry_once_per_cycle_and_keep_good_info() {
    let config = config();
    let mut tracker = Tracker::default();
    tracker.start_cycle("probe-1".into());
    tracker.observe(
        message(
            "m1",
            None,
            Body::ProbeMatches(vec![endpoint("urn:uuid:a", "10.0.0.2")]),
        ),
        FROM,
    );
    let job = tracker.jobs(&config, 16).remove(0);
    assert!(tracker.busy());
    let failed = Info {
        error: Some("no answer".into()),
        ..Info::default()
    };
    assert!(tracker.interrogated(job, failed.clone()));
    assert_eq!(
        tracker.devices(&config)[0].properties[crate::device::ERROR],
        "no answer"
    );
    assert!(
        tracker.jobs(&config, 16).is_empty(),
        "not again within the cycle"
    );
    tracker.start_cycle("probe-2".into());
    let job = tracker.jobs(&config, 16).remove(0);
    let good = Info {
        device: Some(DeviceInformation::default()),
        ..Info::default()
    };
    assert!(tracker.interrogated(job, good));
    // The endpoint changes; the new interrogation fails: the old description stays.
    let mut moved = endpoint("urn:uuid:a", "10.0.0.2");
    moved.metadata_version = 2;
    tracker.observe(message("m2", None, Body::ProbeMatches(vec![moved])), FROM);
    let job = tracker.jobs(&config, 16).remove(0);
    assert!(!tracker.interrogated(job, failed));
    assert!(
        !tracker.devices(&config)[0]
            .properties
            .contains_key(crate::device::ERROR)
    );
}
