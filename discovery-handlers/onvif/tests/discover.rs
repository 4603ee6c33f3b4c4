//! The onvif handler against real peers, on a veth link between two
//! network namespaces each test creates (and deletes, pass or fail):
//! `onvif-server` cameras and the PyPI `WSDiscovery` publisher.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use ambit_discovery::{DiscoverRequest, DiscoveryHandler};
use ambit_onvif::Onvif;
use serde_json::json;
use support::{CAMERA_IP, Camera, CameraSpec, Netns, Publisher, assert_quiet, next_set, until};

const GATE: &str = "3fa1fe68-b915-4053-a3e1-ac15a21f5f91";
const YARD: &str = "5b0e9a55-7d3c-4b8e-9f21-0c6d2e4a1b77";

fn request(details: serde_json::Value, properties: &[(&str, &str)]) -> DiscoverRequest {
    let mut request = DiscoverRequest::new(details);
    request.properties = properties
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect::<BTreeMap<_, _>>();
    request.node_name = "edge-1".into();
    request
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

#[test]
fn camera_found_with_device_info_and_stream_uris() {
    init_tracing();
    let net = Netns::new();
    let _camera = Camera::start(
        &net.camera,
        CameraSpec {
            uuid: GATE,
            port: 8080,
            discovery: true,
            password: "secret",
        },
    );
    let key = GATE.replace('-', "_").to_uppercase();
    let user = format!("ONVIF_USERNAME_{key}");
    let pass = format!("ONVIF_PASSWORD_{key}");
    let request = request(
        json!({"probeInterval": "2s", "matchTimeout": "1s"}),
        &[
            (user.as_str(), "admin"),
            (pass.as_str(), "secret"),
            ("ONVIF_USERNAME", "admin"),
            ("ONVIF_PASSWORD", "wrong-for-others"),
        ],
    );
    Netns::run(&net.host, move || async move {
        let mut stream = Onvif::new().discover(request).await.unwrap();
        let set = until(&mut stream, Duration::from_secs(30), |set| set.len() == 1).await;
        let device = &set[0];
        assert_eq!(device.id, format!("urn:uuid:{GATE}"));
        assert!(device.shared);
        let p = &device.properties;
        let url = format!("http://{CAMERA_IP}:8080/onvif/device_service");
        assert_eq!(p[ambit_onvif::UUID], GATE);
        assert_eq!(p[ambit_onvif::DEVICE_SERVICE_URL], url);
        assert_eq!(p[ambit_onvif::IP_ADDRESS], CAMERA_IP);
        assert_eq!(p[ambit_onvif::MANUFACTURER], "Ambit Test Optics");
        assert_eq!(p[ambit_onvif::MODEL], "Sim-1");
        assert_eq!(p[ambit_onvif::FIRMWARE_VERSION], "1.2.3");
        assert_eq!(p[ambit_onvif::SERIAL_NUMBER], "SN-0042");
        assert_eq!(p[ambit_onvif::MAC_ADDRESS], "02:00:5e:10:00:01");
        assert!(
            p[ambit_onvif::TYPES].contains("NetworkVideoTransmitter"),
            "{p:?}"
        );
        let token = &p["ONVIF_PROFILE_0_TOKEN"];
        let uri = format!("rtsp://{CAMERA_IP}:8554/{token}?port=8080");
        assert_eq!(p[ambit_onvif::STREAM_URI], uri);
        assert_eq!(p["ONVIF_PROFILE_0_STREAM_URI"], uri);
        assert_eq!(p["ONVIF_PROFILE_0_RESOLUTION"], "1920x1080");
        assert!(!p.contains_key(ambit_onvif::ERROR), "{p:?}");
        // Steady state: probe cycles come and go, nothing changes.
        assert_quiet(&mut stream, Duration::from_secs(5)).await;
    });
}

#[test]
fn bye_removes_a_camera_and_hello_brings_it_back_under_the_same_id() {
    init_tracing();
    let net = Netns::new();
    // SOAP from onvif-server; Hello, ProbeMatches (each sent twice) and Bye from WSDiscovery.
    let _camera = Camera::start(
        &net.camera,
        CameraSpec {
            uuid: YARD,
            port: 8081,
            discovery: false,
            password: "pw",
        },
    );
    let xaddr = format!("http://{CAMERA_IP}:8081/onvif/device_service");
    let scope = "onvif://www.onvif.org/location/yard";
    let publisher = Publisher::start(&net.camera, YARD, &xaddr, &[scope]);
    let camera_ns = net.camera.clone();
    // A long probe interval: removal and return must come from Bye and Hello.
    // IPv4 only: the publisher queues every unicast answer on both its IPv4
    // and IPv6 threads, and the thread of the other family dies on it, so
    // an IPv6 Probe would kill its IPv4 thread (WSDiscovery 2.1.2).
    let request = request(
        json!({"probeInterval": "10m", "matchTimeout": "2s", "ipv6": false,
               "scopes": {"include": ["*/location/yard"]}}),
        &[("ONVIF_USERNAME", "admin"), ("ONVIF_PASSWORD", "pw")],
    );
    Netns::run(&net.host, move || async move {
        let mut stream = Onvif::new().discover(request).await.unwrap();
        let set = until(&mut stream, Duration::from_secs(30), |set| set.len() == 1).await;
        let id = set[0].id.clone();
        assert_eq!(id, format!("urn:uuid:{YARD}"));
        assert_eq!(set[0].properties[ambit_onvif::SCOPES], scope);
        assert_eq!(
            set[0].properties[ambit_onvif::MANUFACTURER],
            "Ambit Test Optics"
        );
        // The publisher repeats every message (SOAP-over-UDP) and answers twice:
        // the repeats make no new set.
        assert_quiet(&mut stream, Duration::from_secs(4)).await;

        let stop = tokio::task::spawn_blocking(move || publisher.stop());
        let set = next_set(&mut stream, Duration::from_secs(20)).await;
        assert!(set.is_empty(), "Bye removes the camera at once: {set:?}");
        stop.await.unwrap();

        let publisher = tokio::task::spawn_blocking(move || {
            Publisher::start(&camera_ns, YARD, &xaddr, &[scope])
        })
        .await
        .unwrap();
        let set = next_set(&mut stream, Duration::from_secs(20)).await;
        assert_eq!(set.len(), 1, "Hello brings it back");
        assert_eq!(set[0].id, id, "under the same id");
        drop(publisher);
    });
}

#[test]
fn wrong_or_missing_credentials_are_reported_on_the_device() {
    init_tracing();
    let net = Netns::new();
    let _camera = Camera::start(
        &net.camera,
        CameraSpec {
            uuid: GATE,
            port: 8082,
            discovery: true,
            password: "right",
        },
    );
    for (properties, expected) in [
        (
            vec![("ONVIF_USERNAME", "admin"), ("ONVIF_PASSWORD", "wrong")],
            "refused the credentials of user \"admin\"",
        ),
        (vec![], "the camera requires credentials"),
    ] {
        let request = request(
            json!({"probeInterval": "2s", "matchTimeout": "1s"}),
            &properties,
        );
        Netns::run(&net.host, move || async move {
            let mut stream = Onvif::new().discover(request).await.unwrap();
            let set = until(&mut stream, Duration::from_secs(30), |set| set.len() == 1).await;
            let p = &set[0].properties;
            let error = &p[ambit_onvif::ERROR];
            assert!(error.contains(expected), "{error}");
            assert!(error.contains("GetDeviceInformation"), "{error}");
            assert!(!p.contains_key(ambit_onvif::MANUFACTURER));
            assert_eq!(
                p[ambit_onvif::UUID],
                GATE,
                "what discovery told is still there"
            );
            // The same error every cycle is no change.
            assert_quiet(&mut stream, Duration::from_secs(5)).await;
        });
    }
}

#[test]
fn filters_keep_cameras_out_before_they_are_asked() {
    init_tracing();
    let net = Netns::new();
    let _camera = Camera::start(
        &net.camera,
        CameraSpec {
            uuid: GATE,
            port: 8083,
            discovery: true,
            password: "pw",
        },
    );
    let request = request(
        json!({"probeInterval": "2s", "matchTimeout": "1s", "ipAddresses": {"exclude": ["10.77.0.0/24"]}}),
        &[],
    );
    Netns::run(&net.host, move || async move {
        let mut stream = Onvif::new().discover(request).await.unwrap();
        let set = next_set(&mut stream, Duration::from_secs(30)).await;
        assert!(set.is_empty(), "{set:?}");
        assert_quiet(&mut stream, Duration::from_secs(5)).await;
    });
}
