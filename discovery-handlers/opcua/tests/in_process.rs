//! The opcua handler against async-opcua's own server, run in the test
//! process on 127.0.0.1: found, filtered, gone, back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic fails the test"
)]

mod support;

use std::time::Duration;

use opcua::crypto::SecurityPolicy;
use opcua::types::MessageSecurityMode;
use opcua_server::diagnostics::NamespaceMetadata;
use opcua_server::node_manager::memory::simple_node_manager;
use opcua_server::{ANONYMOUS_USER_TOKEN_ID, ServerBuilder, ServerEndpoint, ServerHandle};
use serde_json::json;
use support::{discover, ids, next_set, url};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const LOOK: Duration = Duration::from_secs(30);

/// An async-opcua server with an unsecured and a signed-and-encrypted
/// endpoint; stopped when dropped.
struct InProcess {
    port: u16,
    handle: ServerHandle,
    task: JoinHandle<Result<(), String>>,
    _pki: tempfile::TempDir,
}

impl InProcess {
    /// Serves on `port` (0: any free port).
    async fn start(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let pki = tempfile::tempdir().unwrap();
        let anonymous = [ANONYMOUS_USER_TOKEN_ID];
        // Discovery needs no address space: one small in-memory namespace
        // satisfies the server's need for a node manager, without the
        // generated core namespace (a long compile).
        let namespace = NamespaceMetadata {
            namespace_uri: "urn:ambit.dev:in-process".to_owned(),
            ..Default::default()
        };
        let (server, handle) = ServerBuilder::new()
            .with_node_manager(simple_node_manager(namespace, "mixer"))
            .application_name("Mixer 1")
            .application_uri("urn:plant:mixer:1")
            .product_uri("urn:ambit.dev:in-process")
            .host("127.0.0.1")
            .port(port)
            .pki_dir(pki.path())
            .create_sample_keypair(false)
            .discovery_urls(vec!["/".to_owned()])
            .add_endpoint(
                "none",
                ServerEndpoint::new_none("/", &[ANONYMOUS_USER_TOKEN_ID.to_owned()]),
            )
            .add_endpoint(
                "basic256sha256",
                (
                    "/",
                    SecurityPolicy::Basic256Sha256,
                    MessageSecurityMode::SignAndEncrypt,
                    &anonymous as &[&str],
                ),
            )
            .build()
            .unwrap();
        let task = tokio::spawn(server.run_with(listener));
        Self {
            port,
            handle,
            task,
            _pki: pki,
        }
    }

    async fn stop(self) {
        self.handle.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

#[tokio::test]
async fn found_filtered_gone_and_back() {
    let mixer = InProcess::start(0).await;
    let port = mixer.port;
    let mut stream = discover(json!({
        "discoveryUrls": [url(port)],
        "timeout": "2s",
        "interval": "200ms",
    }))
    .await;
    let found = next_set(&mut stream, LOOK).await;
    assert_eq!(ids(&found), [url(port)]);
    let p = &found[0].properties;
    assert_eq!(p["OPCUA_APPLICATION_NAME"], "Mixer 1");
    assert_eq!(p["OPCUA_APPLICATION_URI"], "urn:plant:mixer:1");
    assert_eq!(p["OPCUA_APPLICATION_TYPE"], "Server");
    assert_eq!(p["OPCUA_PRODUCT_URI"], "urn:ambit.dev:in-process");
    assert_eq!(p["OPCUA_SECURITY_POLICIES"], "Basic256Sha256,None");
    assert_eq!(p["OPCUA_SECURITY_MODES"], "None,SignAndEncrypt");
    assert_eq!(p["OPCUA_ENDPOINT_0_SECURITY_MODE"], "SignAndEncrypt");
    assert_eq!(p["OPCUA_ENDPOINT_0_URL"], url(port));

    for filter in [
        json!({ "applicationUris": { "exclude": ["urn:plant:mixer:*"] } }),
        json!({ "applicationNames": { "include": ["Boiler*"] } }),
        json!({ "applicationTypes": ["clientAndServer"] }),
    ] {
        let mut details = filter.clone();
        details["discoveryUrls"] = json!([url(port)]);
        let set = next_set(&mut discover(details).await, LOOK).await;
        assert!(set.is_empty(), "{filter}: {set:?}");
    }

    mixer.stop().await;
    let gone = next_set(&mut stream, LOOK).await;
    assert!(gone.is_empty(), "{gone:?}");

    let _mixer = InProcess::start(port).await;
    let back = next_set(&mut stream, LOOK).await;
    assert_eq!(back, found, "same id, same properties");
}
