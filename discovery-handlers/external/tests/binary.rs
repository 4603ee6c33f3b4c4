//! The built `ambit-handler` binary against a Rust agent side: registers,
//! serves debug-echo with its state directory, comes back after an agent
//! restart, and leaves cleanly on SIGTERM.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic fails the test"
)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ambit_discovery::{
    DeviceStream, DiscoverRequest, DiscoveryHandler, ExternalHandler, REGISTRATION_SOCKET,
    RegistrationEvent, RegistrationService, UnixServer,
};
use futures::StreamExt;
use serde_json::json;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

fn start_agent(dir: &Path) -> (UnixServer, mpsc::UnboundedReceiver<RegistrationEvent>) {
    let (service, events) = RegistrationService::new("node-1");
    (
        service.bind(&dir.join(REGISTRATION_SOCKET)).unwrap(),
        events,
    )
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<RegistrationEvent>) -> RegistrationEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event in time")
        .unwrap()
}

async fn next_ids(stream: &mut DeviceStream) -> Vec<String> {
    let set = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("a set in time")
        .unwrap()
        .unwrap();
    set.into_iter().map(|device| device.id).collect()
}

fn handler_binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ambit-handler"));
    command
        .env_remove("AMBIT_SOCKET_DIR")
        .env_remove("AMBIT_HANDLER")
        .env_remove("AMBIT_DEBUG_ECHO_DIR");
    command.stdin(Stdio::null()).kill_on_drop(true);
    command
}

async fn terminate(child: &mut Child) {
    let pid = child.id().unwrap().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits in time")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn serves_debug_echo_to_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let (sockets, state) = (dir.path().join("sockets"), dir.path().join("echo"));
    std::fs::create_dir_all(&state).unwrap();
    let (server, mut events) = start_agent(&sockets);
    let agent = tokio::spawn(server.run(std::future::pending()));

    let mut child = handler_binary()
        .env("AMBIT_SOCKET_DIR", &sockets)
        .args(["--handler", "debug-echo"])
        .arg("--debug-echo-dir")
        .arg(&state)
        .spawn()
        .unwrap();
    let socket = sockets.join("debug-echo.sock");
    let registered = RegistrationEvent::Registered {
        name: "debug-echo".into(),
        socket: socket.clone(),
    };
    assert_eq!(next_event(&mut events).await, registered);

    let handler = ExternalHandler::new("debug-echo", &socket);
    let details = json!({"devices": ["a", {"id": "b", "properties": {"ROOM": "lab"}}]});
    let mut stream = handler
        .discover(DiscoverRequest::new(details))
        .await
        .unwrap();
    assert_eq!(next_ids(&mut stream).await, ["a", "b"]);
    std::fs::write(state.join("offline"), "a\n").unwrap();
    assert_eq!(next_ids(&mut stream).await, ["b"]);

    // The agent restarts; the handler registers with the new one.
    agent.abort();
    assert_eq!(
        next_event(&mut events).await,
        RegistrationEvent::Deregistered {
            name: "debug-echo".into()
        }
    );
    let (server, mut events) = start_agent(&sockets);
    let _agent = tokio::spawn(server.run(std::future::pending()));
    assert_eq!(next_event(&mut events).await, registered);

    // SIGTERM: the agent sees the handler go; the socket is cleaned up.
    terminate(&mut child).await;
    assert_eq!(
        next_event(&mut events).await,
        RegistrationEvent::Deregistered {
            name: "debug-echo".into()
        }
    );
    assert!(
        tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap()
            .unwrap()
            .is_err()
    );
    assert!(!socket.exists());
}

#[tokio::test]
async fn unknown_handlers_are_refused_with_the_list_of_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let output = handler_binary()
        .args(["--handler", "zigbee", "--socket-dir"])
        .arg(dir.path())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "handler \"zigbee\" is not compiled into this binary (compiled in: {})",
        ambit_handlers::COMPILED_IN.join(", ")
    );
    assert!(stderr.contains(&expected), "{stderr}");
}
