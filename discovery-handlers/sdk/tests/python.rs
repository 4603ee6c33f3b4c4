//! Interoperability with gRPC's own implementation: the Python example
//! handler (examples/python-handler, grpcio) registers with the Rust
//! `RegistrationService` and serves Discover to the Rust `ExternalHandler`,
//! over real unix sockets, through an agent restart and a `kill -9`.
//!
//! Needs python3 with grpcio and grpcio-tools (the project setup installs
//! them from scripts/setup-pip.txt); fails, never skips, without them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic fails the test"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ambit_discovery::{
    Device, DeviceStream, DiscoverRequest, DiscoveryError, DiscoveryHandler, ExternalHandler,
    REGISTRATION_SOCKET, RegistrationEvent, RegistrationService,
};
use futures::StreamExt;
use serde_json::json;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Python's start-up (importing grpc) is slow on a busy machine.
const WAIT: Duration = Duration::from_secs(30);

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python-handler")
}

/// Generates the stubs from the proto, or fails saying how to get Python's
/// gRPC.
async fn generate_stubs(out: &Path) {
    let output = Command::new("python3")
        .arg(example_dir().join("generate.py"))
        .arg(out)
        .output()
        .await
        .expect("python3 is needed for this test: run the project setup");
    assert!(
        output.status.success(),
        "generating the Python stubs failed; python3 needs grpcio and grpcio-tools: run the \
         project setup (pip install -r scripts/setup-pip.txt)\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts the example handler as `name`, sending `authority` as
/// `:authority` (empty: grpcio's default, the socket path).
fn start_handler(socket_dir: &Path, stubs: &Path, name: &str, authority: &str) -> Child {
    Command::new("python3")
        .arg(example_dir().join("handler.py"))
        .args(["--name", name, "--authority", authority, "--socket-dir"])
        .arg(socket_dir)
        .arg("--stubs")
        .arg(stubs)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 starts")
}

struct Agent {
    events: mpsc::UnboundedReceiver<RegistrationEvent>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Agent {
    fn start(dir: &Path) -> Self {
        let (service, events) = RegistrationService::new("node-py");
        let server = service.bind(&dir.join(REGISTRATION_SOCKET)).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async { stopped.await.unwrap_or(()) })
                .await
                .unwrap();
        });
        Self { events, stop, task }
    }

    async fn next_event(&mut self) -> RegistrationEvent {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("no event in time")
            .unwrap()
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

async fn next_set(stream: &mut DeviceStream) -> Result<Vec<Device>, DiscoveryError> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("no set in time")
        .expect("open")
}

async fn registered_pair(agent: &mut Agent) -> BTreeSet<RegistrationEvent> {
    let mut events = BTreeSet::new();
    events.insert(agent.next_event().await);
    events.insert(agent.next_event().await);
    events
}

#[tokio::test]
async fn python_grpcio_handler_interoperates() {
    let dir = tempfile::tempdir().unwrap();
    let stubs = dir.path().join("stubs");
    let sockets = dir.path().join("sockets");
    generate_stubs(&stubs).await;

    // Two handlers: one sends `:authority: localhost` as the protocol asks,
    // the other grpcio's default, the percent-encoded socket path.
    let mut agent = Agent::start(&sockets);
    let mut python = start_handler(&sockets, &stubs, "python-echo", "localhost");
    let _raw = start_handler(&sockets, &stubs, "python-raw", "");
    let socket = sockets.join("python-echo.sock");
    let registered = |name: &str| RegistrationEvent::Registered {
        name: name.into(),
        socket: sockets.join(format!("{name}.sock")),
    };
    let both = BTreeSet::from([registered("python-echo"), registered("python-raw")]);
    assert_eq!(registered_pair(&mut agent).await, both);

    let handler = ExternalHandler::new("python-echo", &socket);
    let mut request = DiscoverRequest::new(json!({
        "devices": ["a", {"id": "b", "properties": {"K": "v"}}],
        "shared": true,
    }));
    request
        .properties
        .insert("password".into(), "secret".into());
    request.node_name = "node-py".into();
    let mut stream = handler.discover(request).await.unwrap();
    let devices = next_set(&mut stream).await.unwrap();
    let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(devices.iter().all(|d| d.shared));
    assert_eq!(
        devices[1].properties.get("K").map(String::as_str),
        Some("v")
    );
    assert_eq!(
        devices[1]
            .properties
            .get("PYTHON_HANDLER_ID")
            .map(String::as_str),
        Some("b")
    );

    // A Python handler's INVALID_ARGUMENT reaches the agent word for word.
    let error = handler
        .discover(DiscoverRequest::new(json!({"devices": [""]})))
        .await
        .err()
        .unwrap();
    assert_eq!(
        error,
        DiscoveryError::InvalidDetails("devices[0].id: expected a non-empty string".into())
    );

    // The agent restarts: both handlers register again.
    agent.stop().await;
    let mut agent = Agent::start(&sockets);
    assert_eq!(registered_pair(&mut agent).await, both);

    // kill -9: the agent notices at once, on both connections.
    python.start_kill().unwrap();
    assert_eq!(
        agent.next_event().await,
        RegistrationEvent::Deregistered {
            name: "python-echo".into()
        }
    );
    let error = next_set(&mut stream).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    python.wait().await.unwrap();
}

/// Several calls on one grpcio connection with grpcio's default authority:
/// after the first, grpcio sends `:authority` as a reference into its HPACK
/// table, which must still resolve on the Rust side after the rewrite.
#[tokio::test]
async fn repeated_calls_on_one_grpcio_connection_with_a_path_authority() {
    let dir = tempfile::tempdir().unwrap();
    let stubs = dir.path().join("stubs");
    generate_stubs(&stubs).await;
    let agent = Agent::start(dir.path());
    let script = r#"
import sys
sys.path.insert(0, sys.argv[1])
import grpc
from ambit.discovery.v1 import discovery_pb2 as pb, discovery_pb2_grpc as pb_grpc
with grpc.insecure_channel("unix:" + sys.argv[2]) as channel:
    stub = pb_grpc.RegistrationStub(channel)
    for _ in range(3):
        try:
            next(stub.Register(pb.RegisterRequest(name="x", endpoint="/x.sock", version="v0"), timeout=10))
        except grpc.RpcError as error:
            print(error.code().name)
"#;
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(&stubs)
        .arg(dir.path().join(REGISTRATION_SOCKET))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.split_whitespace().collect::<Vec<_>>(),
        ["FAILED_PRECONDITION"; 3],
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    agent.stop().await;
}
