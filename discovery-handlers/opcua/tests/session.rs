//! Sessions with credentials from `discovery.properties`, against asyncua
//! servers on 127.0.0.1: a user name and password, and a client certificate
//! on a signed-and-encrypted endpoint.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic fails the test"
)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Simulator, client_certificate, discover_with, ids, next_set};

const LOOK: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_session_checks_the_credentials_and_reads_build_info() {
    let vault = Simulator::start(&["--name", "Vault 1", "--user", "operator:s3cret"]).await;
    let required = json!({
        "discoveryUrls": [vault.url()],
        "timeout": "5s",
        "session": { "required": true },
    });

    let right = [("username", "operator"), ("password", "s3cret")];
    let set = next_set(&mut discover_with(required.clone(), &right).await, LOOK).await;
    assert_eq!(ids(&set), [vault.url()]);
    let p = &set[0].properties;
    assert_eq!(p["OPCUA_MANUFACTURER_NAME"], "Ambit");
    assert_eq!(p["OPCUA_PRODUCT_NAME"], "Vault 1");
    assert_eq!(p["OPCUA_SOFTWARE_VERSION"], "1.2.3");
    assert_eq!(p["OPCUA_BUILD_NUMBER"], "42");
    assert_eq!(p["OPCUA_ENDPOINT_0_USER_TOKENS"], "UserName");
    assert!(
        !p.values().any(|value| value.contains("s3cret")),
        "credentials never become properties"
    );

    // Wrong password, or none: a required session keeps the server out.
    let wrong = [("username", "operator"), ("password", "guess")];
    let set = next_set(&mut discover_with(required.clone(), &wrong).await, LOOK).await;
    assert!(set.is_empty(), "{set:?}");
    let set = next_set(&mut discover_with(required, &[]).await, LOOK).await;
    assert!(set.is_empty(), "{set:?}");

    // An optional session that fails leaves the server a device, without BuildInfo.
    let optional = json!({
        "discoveryUrls": [vault.url()],
        "timeout": "5s",
        "session": { "required": false },
    });
    let set = next_set(&mut discover_with(optional, &wrong).await, LOOK).await;
    assert_eq!(ids(&set), [vault.url()]);
    assert!(!set[0].properties.contains_key("OPCUA_PRODUCT_NAME"));
}

#[tokio::test]
async fn a_client_certificate_opens_a_signed_and_encrypted_session() {
    let (boiler, (cert, key)) = tokio::join!(
        Simulator::start(&["--name", "Boiler 9", "--secure"]),
        async { client_certificate("urn:ambit.dev:test:client") },
    );
    let details = json!({
        "discoveryUrls": [boiler.url()],
        "timeout": "10s",
        "session": {
            "securityPolicy": "Basic256Sha256",
            "securityMode": "SignAndEncrypt",
            "applicationUri": "urn:ambit.dev:test:client",
            "required": true,
        },
    });
    let properties = [
        ("clientCertificate", cert.as_str()),
        ("clientPrivateKey", key.as_str()),
    ];
    let set = next_set(&mut discover_with(details, &properties).await, LOOK).await;
    assert_eq!(ids(&set), [boiler.url()]);
    assert_eq!(set[0].properties["OPCUA_PRODUCT_NAME"], "Boiler 9");
}
