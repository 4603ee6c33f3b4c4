//! The modbus handler against real Modbus TCP servers (pymodbus), on
//! loopback addresses only: 127.0.0.2, 127.0.0.3, ... play different hosts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "tests: a panic fails the test; the scan time is printed for the record"
)]

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ambit_discovery::{DeviceStream, DiscoverRequest, DiscoveryHandler};
use ambit_modbus::Modbus;
use serde_json::{Value, json};
use support::{Simulator, assert_quiet, free_port, ids, next_set, until_ids};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SCAN: Duration = Duration::from_secs(20);

fn host(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

async fn discover(details: Value) -> DeviceStream {
    Modbus::new()
        .discover(DiscoverRequest::new(details))
        .await
        .expect("valid details")
}

/// Three "hosts" on one port: a PLC with identification and units 1 and 2,
/// one without identification, and one that answers every request with an
/// exception.
async fn plant(port: u16) -> [Simulator; 3] {
    let p = port;
    let (identified, plain, failing) = tokio::join!(
        Simulator::tcp(
            host(2),
            p,
            &[
                "--unit",
                "1",
                "--unit",
                "2",
                "--vendor",
                "ACME Controls",
                "--product-code",
                "PLC-9",
                "--revision",
                "2.1"
            ]
        ),
        Simulator::tcp(
            host(3),
            p,
            &["--no-identification", "--holding", "0=1234,7"]
        ),
        Simulator::tcp(host(4), p, &["--exceptions"]),
    );
    [identified, plain, failing]
}

#[tokio::test]
async fn finds_units_by_identification_and_probes() {
    let port = free_port(&[host(2), host(3), host(4), host(5)]);
    let _plant = plant(port).await;
    let hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];

    // Identification alone: only the PLC that supports it, both its units.
    let mut stream = discover(json!({
        "tcp": {"hosts": hosts, "ports": [port], "unitIds": ["1-3"]},
        "timeout": "2s",
    }))
    .await;
    let set = next_set(&mut stream, SCAN).await;
    assert_eq!(
        ids(&set),
        [
            format!("tcp://127.0.0.2:{port}/1"),
            format!("tcp://127.0.0.2:{port}/2")
        ]
    );
    let plc = &set[0];
    assert!(plc.shared);
    assert!(plc.device_nodes.is_empty());
    let expected = [
        ("MODBUS_TRANSPORT", "tcp"),
        ("MODBUS_HOST", "127.0.0.2"),
        ("MODBUS_PORT", &port.to_string()),
        ("MODBUS_UNIT_ID", "1"),
        ("MODBUS_IDENTIFIED", "true"),
        ("MODBUS_VENDOR", "ACME Controls"),
        ("MODBUS_PRODUCT_CODE", "PLC-9"),
        ("MODBUS_REVISION", "2.1"),
        ("MODBUS_PRODUCT_NAME", "Simulated PLC"),
    ];
    let got: Vec<(&str, &str)> = plc
        .properties
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut expected = expected.to_vec();
    expected.sort_unstable();
    assert_eq!(got, expected);

    // A probe recognises the device without identification too; the units
    // that answer with exceptions are no match.
    let mut stream = discover(json!({
        "tcp": {"hosts": hosts, "ports": [port], "unitIds": ["1-3"]},
        "probes": [{"name": "model", "register": "holding", "address": 0, "equals": [1234]}],
        "timeout": "2s",
    }))
    .await;
    let set = next_set(&mut stream, SCAN).await;
    assert_eq!(
        ids(&set),
        [
            format!("tcp://127.0.0.2:{port}/1"),
            format!("tcp://127.0.0.2:{port}/2"),
            format!("tcp://127.0.0.3:{port}/1"),
        ]
    );
    let plain = &set[2];
    assert_eq!(plain.properties["MODBUS_IDENTIFIED"], "false");
    assert_eq!(plain.properties["MODBUS_PROBE_MODEL"], "1234");
    assert!(!plain.properties.contains_key("MODBUS_VENDOR"));

    // Identification required, with a probe that only the PLC's registers
    // fail (127.0.0.3 has 7 in register 1, the PLC 0).
    let mut stream = discover(json!({
        "tcp": {"hosts": hosts, "ports": [port], "unitIds": [1]},
        "identification": "required",
        "probes": [{"name": "flags", "register": "holding", "address": 1, "max": 5, "report": true}],
        "timeout": "2s",
    }))
    .await;
    let set = next_set(&mut stream, SCAN).await;
    assert_eq!(ids(&set), [format!("tcp://127.0.0.2:{port}/1")]);
    assert_eq!(set[0].properties["MODBUS_PROBE_FLAGS"], "0");

    // Filters on vendor and product.
    for (filters, expected) in [
        (json!({"vendor": {"include": ["ACME*"]}}), 2),
        (json!({"vendor": {"exclude": ["ACME*"]}}), 0),
        (
            json!({"productCode": {"include": ["PLC-?"]}, "productName": {"exclude": ["*Robot*"]}}),
            2,
        ),
        (json!({"productCode": {"include": ["OTHER"]}}), 0),
    ] {
        let mut stream = discover(json!({
            "tcp": {"hosts": hosts, "ports": [port], "unitIds": [1, 2]},
            "filters": filters.clone(),
            "timeout": "2s",
        }))
        .await;
        let set = next_set(&mut stream, SCAN).await;
        assert_eq!(set.len(), expected, "{filters}");
    }
}

#[tokio::test]
async fn garbage_and_silence_are_no_match() {
    // One peer answers every request with noise, another never answers.
    let noisy = TcpListener::bind((host(6), 0)).await.unwrap();
    let port = noisy.local_addr().unwrap().port();
    let silent = TcpListener::bind((host(7), port)).await.unwrap();
    let noise = tokio::spawn(async move {
        let mut seed = 7u8;
        loop {
            let Ok((mut socket, _)) = noisy.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 260];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    // A well-formed MBAP header around garbage, then raw garbage.
                    let mut reply = buf[..4].to_vec();
                    reply.extend_from_slice(&[0, 6, buf[6], 0x2b, 0x0e, 0xff, 0x00, 0x13]);
                    reply.extend((0..40).map(|i| i ^ seed));
                    seed = seed.wrapping_add(13);
                    if socket.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });

    let started = Instant::now();
    let mut stream = discover(json!({
        "tcp": {"hosts": ["127.0.0.6", "127.0.0.7"], "ports": [port], "unitIds": [1, 2]},
        "probes": [{"name": "any", "register": "input", "address": 0}],
        "timeout": "300ms",
    }))
    .await;
    assert!(next_set(&mut stream, SCAN).await.is_empty());
    // Bounded by the timeouts: 2 units x (identification + probe) x 300 ms.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    noise.abort();
    hold.abort();
}

#[tokio::test]
async fn scanning_a_slash_24_takes_seconds() {
    let live = [host(10), host(20), host(30)];
    let everyone: Vec<Ipv4Addr> = (1..=254).map(host).collect();
    let port = free_port(&everyone);
    let _servers = futures::future::join_all(
        live.iter()
            .map(|h| Simulator::tcp(*h, port, &["--unit", "1"])),
    )
    .await;
    let details = json!({"tcp": {"hosts": ["127.0.0.0/24"], "ports": [port], "unitIds": [1]}});
    let expected = [
        format!("tcp://127.0.0.10:{port}/1"),
        format!("tcp://127.0.0.20:{port}/1"),
        format!("tcp://127.0.0.30:{port}/1"),
    ];

    // The other 251 addresses refuse the connection, as absent hosts on a
    // LAN answer with a reset (or an ICMP error).
    let started = Instant::now();
    let mut stream = discover(details.clone()).await;
    let set = next_set(&mut stream, SCAN).await;
    let refused = started.elapsed();
    assert_eq!(ids(&set), expected);

    // Worst case: every other address accepts the connection and never
    // answers, so each costs a full timeout; 64 at a time.
    let mut silent = Vec::new();
    for address in everyone.iter().filter(|a| !live.contains(a)) {
        silent.push(std::net::TcpListener::bind((*address, port)).unwrap());
    }
    let started = Instant::now();
    let mut stream = discover(details).await;
    let set = next_set(&mut stream, SCAN).await;
    let held = started.elapsed();
    assert_eq!(ids(&set), expected);
    println!(
        "scan of 127.0.0.0/24 (254 addresses, {} live Modbus servers; defaults: concurrency 64, \
         timeout 500ms): {refused:?} when the other addresses refuse, {held:?} when they all \
         accept and stay silent",
        live.len()
    );
    assert!(refused < Duration::from_secs(5), "a /24 took {refused:?}");
    assert!(held < Duration::from_secs(10), "a /24 took {held:?}");
}

#[tokio::test]
async fn devices_go_away_and_come_back() {
    let port = free_port(&[host(40), host(41)]);
    let (mut first, mut second) = tokio::join!(
        Simulator::tcp(host(40), port, &[]),
        Simulator::tcp(host(41), port, &["--unit", "1", "--unit", "3"]),
    );
    let mut stream = discover(json!({
        "tcp": {"hosts": ["127.0.0.40", "127.0.0.41"], "ports": [port], "unitIds": ["1-3"]},
        "interval": "200ms",
        "timeout": "2s",
    }))
    .await;
    let all = [
        format!("tcp://127.0.0.40:{port}/1"),
        format!("tcp://127.0.0.41:{port}/1"),
        format!("tcp://127.0.0.41:{port}/3"),
    ];
    assert_eq!(ids(&next_set(&mut stream, SCAN).await), all);
    // Nothing changes: nothing is sent, scan after scan.
    assert_quiet(&mut stream, Duration::from_secs(1)).await;

    second.kill().await;
    until_ids(&mut stream, &all[..1], SCAN).await;
    first.kill().await;
    until_ids(&mut stream, &[], SCAN).await;

    second.restart().await;
    until_ids(&mut stream, &all[1..], SCAN).await;
    first.restart().await;
    until_ids(&mut stream, &all, SCAN).await;
    assert_quiet(&mut stream, Duration::from_millis(600)).await;
}
