//! The opcua handler against real OPC UA servers: asyncua (Python), on
//! 127.0.0.1 only. asyncua plays plain servers, a ClientAndServer
//! application (its default type, which Akri's handler skips), and a Local
//! Discovery Server with servers registered.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic fails the test"
)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{Simulator, assert_quiet, discover, free_port, ids, next_set, until_ids, url, urls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LOOK: Duration = Duration::from_secs(30);

/// A secured ClientAndServer boiler and a plain Server pump.
async fn plant() -> (Simulator, Simulator) {
    tokio::join!(
        Simulator::start(&[
            "--name",
            "Boiler 1",
            "--uri",
            "urn:plant:boiler:1",
            "--type",
            "clientAndServer",
            "--secure"
        ]),
        Simulator::start(&[
            "--name",
            "Pump 1",
            "--uri",
            "urn:plant:pump:1",
            "--type",
            "server"
        ]),
    )
}

#[tokio::test]
async fn finds_servers_and_reports_their_endpoints() {
    let (boiler, pump) = plant().await;
    let closed = free_port();
    let mut stream = discover(json!({
        "discoveryUrls": [boiler.url(), pump.url(), url(closed)],
        "timeout": "3s",
    }))
    .await;
    let set = next_set(&mut stream, LOOK).await;
    assert_eq!(
        ids(&set),
        urls(&[boiler.port, pump.port]),
        "the closed port is no device"
    );

    let boiler_device = set.iter().find(|d| d.id == boiler.url()).unwrap();
    assert!(boiler_device.shared);
    let p = &boiler_device.properties;
    assert_eq!(p["OPCUA_DISCOVERY_URL"], boiler.url());
    assert_eq!(p["OPCUA_FOUND_VIA"], boiler.url());
    assert_eq!(p["OPCUA_APPLICATION_URI"], "urn:plant:boiler:1");
    assert_eq!(p["OPCUA_APPLICATION_NAME"], "Boiler 1");
    assert_eq!(p["OPCUA_APPLICATION_TYPE"], "ClientAndServer");
    assert_eq!(p["OPCUA_PRODUCT_URI"], "urn:ambit.dev:opcua-simulator");
    assert_eq!(p["OPCUA_SECURITY_POLICIES"], "Basic256Sha256,None");
    assert_eq!(p["OPCUA_SECURITY_MODES"], "None,Sign,SignAndEncrypt");
    assert_eq!(p["OPCUA_ENDPOINT_COUNT"], "3");
    assert_eq!(p["OPCUA_ENDPOINT_0_SECURITY_MODE"], "SignAndEncrypt");
    assert_eq!(p["OPCUA_ENDPOINT_0_SECURITY_POLICY"], "Basic256Sha256");
    assert_eq!(p["OPCUA_ENDPOINT_0_URL"], boiler.url());
    assert!(p["OPCUA_ENDPOINT_0_USER_TOKENS"].contains("Anonymous"));
    assert_eq!(p["OPCUA_ENDPOINT_2_SECURITY_POLICY"], "None");

    let pump_device = set.iter().find(|d| d.id == pump.url()).unwrap();
    assert_eq!(pump_device.properties["OPCUA_APPLICATION_TYPE"], "Server");
    assert_eq!(pump_device.properties["OPCUA_SECURITY_POLICIES"], "None");

    // Nothing changed, so nothing is sent.
    assert_quiet(&mut stream, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn filters_by_name_uri_and_type() {
    let (boiler, pump) = plant().await;
    let both = [boiler.url(), pump.url()];
    let cases = [
        (
            json!({ "applicationNames": { "include": ["Boiler*"] } }),
            vec![boiler.port],
        ),
        (
            json!({ "applicationNames": { "exclude": ["Boiler*"] } }),
            vec![pump.port],
        ),
        (
            json!({ "applicationUris": { "include": ["urn:plant:*"], "exclude": ["urn:plant:pump:*"] } }),
            vec![boiler.port],
        ),
        (json!({ "applicationTypes": ["server"] }), vec![pump.port]),
        (
            json!({ "applicationTypes": ["ClientAndServer"] }),
            vec![boiler.port],
        ),
        (json!({ "applicationTypes": ["discoveryServer"] }), vec![]),
    ];
    for (filter, expected) in cases {
        let mut details = filter.clone();
        details["discoveryUrls"] = json!(both);
        let mut stream = discover(details).await;
        let set = next_set(&mut stream, LOOK).await;
        assert_eq!(ids(&set), urls(&expected), "{filter}");
    }
}

#[tokio::test]
async fn a_server_that_goes_is_dropped_and_comes_back_the_same() {
    let mut boiler = Simulator::start(&["--name", "Boiler 1"]).await;
    let mut stream = discover(json!({
        "discoveryUrls": [boiler.url()],
        "timeout": "2s",
        "interval": "200ms",
    }))
    .await;
    let first = next_set(&mut stream, LOOK).await;
    assert_eq!(ids(&first), [boiler.url()]);

    boiler.kill().await;
    let gone = next_set(&mut stream, LOOK).await;
    assert!(gone.is_empty(), "{gone:?}");

    boiler.restart().await;
    let back = next_set(&mut stream, LOOK).await;
    assert_eq!(back, first, "same id, same properties");
}

#[tokio::test]
async fn a_local_discovery_server_names_the_servers_registered_with_it() {
    let lds = Simulator::start(&["--name", "Plant LDS", "--type", "discoveryServer"]).await;
    let mut pump = Simulator::start(&[
        "--name",
        "Pump 2",
        "--uri",
        "urn:plant:pump:2",
        "--register-to",
        &lds.url(),
    ])
    .await;
    let mut stream = discover(json!({
        "discoveryUrls": [lds.url()],
        "timeout": "2s",
        "interval": "200ms",
    }))
    .await;
    let set = until_ids(&mut stream, &[pump.url()], LOOK).await;
    assert_eq!(set[0].properties["OPCUA_FOUND_VIA"], lds.url());
    assert_eq!(
        set[0].properties["OPCUA_APPLICATION_URI"],
        "urn:plant:pump:2"
    );

    // The LDS itself, when discovery servers are asked for.
    let mut with_lds = discover(json!({
        "discoveryUrls": [lds.url()],
        "applicationTypes": ["server", "discoveryServer"],
    }))
    .await;
    let set = next_set(&mut with_lds, LOOK).await;
    assert_eq!(ids(&set), urls(&[lds.port, pump.port]));

    // asyncua's LDS keeps naming a server that died; GetEndpoints tells.
    pump.kill().await;
    let gone = next_set(&mut stream, LOOK).await;
    assert!(gone.is_empty(), "{gone:?}");
    pump.restart().await;
    until_ids(&mut stream, &[pump.url()], LOOK).await;

    // Without its LDS the server is still asked, and stays.
    drop(lds);
    assert_quiet(&mut stream, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn find_servers_on_network_is_optional_for_servers_without_it() {
    // asyncua does not serve FindServersOnNetwork: FindServers still counts.
    let pump = Simulator::start(&["--name", "Pump 1", "--type", "server"]).await;
    let mut stream = discover(json!({
        "discoveryUrls": [pump.url()],
        "findServersOnNetwork": true,
        "timeout": "2s",
    }))
    .await;
    let set = next_set(&mut stream, LOOK).await;
    assert_eq!(ids(&set), [pump.url()]);
}

/// A peer that accepts and never says a word, and one that answers every
/// connection with an endless stream of bytes.
async fn hostile_peers() -> (u16, u16) {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let flood = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ports = (
        silent.local_addr().unwrap().port(),
        flood.local_addr().unwrap().port(),
    );
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = flood.accept().await {
            tokio::spawn(async move {
                let mut hello = [0u8; 256];
                let _ = socket.read(&mut hello).await;
                // An ACK claiming huge buffers, then garbage for ever.
                let mut ack = b"ACKF".to_vec();
                ack.extend_from_slice(&28u32.to_le_bytes());
                for value in [0u32, u32::MAX, u32::MAX, u32::MAX, u32::MAX, 0] {
                    ack.extend_from_slice(&value.to_le_bytes());
                }
                let junk = vec![0x4du8; 64 << 10];
                if socket.write_all(&ack).await.is_err() {
                    return;
                }
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(60) {
                    if socket.write_all(&junk).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    ports
}

#[tokio::test]
async fn silent_and_hostile_servers_do_not_stall_the_others() {
    let pump = Simulator::start(&["--name", "Pump 1"]).await;
    let (silent, flood) = hostile_peers().await;
    let started = Instant::now();
    let mut stream = discover(json!({
        "discoveryUrls": [url(silent), url(flood), pump.url()],
        "timeout": "1s",
        "concurrency": 4,
    }))
    .await;
    let set = next_set(&mut stream, LOOK).await;
    assert_eq!(ids(&set), [pump.url()]);
    // Each URL is asked at once and costs at most one timeout (FindServers);
    // a generous bound for a loaded machine, far below a stall.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}
