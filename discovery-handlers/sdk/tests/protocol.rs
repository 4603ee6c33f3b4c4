//! The protocol end to end over real unix sockets: a handler served with
//! `run_plugin`, an agent side made of `RegistrationService` and
//! `ExternalHandler`, and what each sees when the other comes and goes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic fails the test"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_discovery::v1::registration_client::RegistrationClient as RawClient;
use ambit_discovery::{
    BoxFuture, Device, DeviceStream, DiscoverRequest, DiscoveryError, DiscoveryHandler,
    ExternalHandler, REGISTRATION_SOCKET, RegistrationEvent, RegistrationService, connect,
    run_plugin, v1,
};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::WatchStream;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(5);

/// A handler whose device set the test sets through a watch channel.
struct ScriptedHandler {
    sets: watch::Receiver<Vec<Device>>,
}

impl DiscoveryHandler for ScriptedHandler {
    fn name(&self) -> &str {
        "scripted"
    }

    fn discover(
        &self,
        request: DiscoverRequest,
    ) -> BoxFuture<'_, Result<DeviceStream, DiscoveryError>> {
        Box::pin(async move {
            if let Some(bad) = request.details.get("bad") {
                return Err(DiscoveryError::InvalidDetails(format!(
                    "bad: {bad} is not allowed"
                )));
            }
            let stream = WatchStream::new(self.sets.clone()).map(Ok);
            Ok(Box::pin(stream) as DeviceStream)
        })
    }
}

struct Agent {
    service: RegistrationService,
    events: mpsc::UnboundedReceiver<RegistrationEvent>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Agent {
    fn start(dir: &Path) -> Self {
        let (service, events) = RegistrationService::new("node-a");
        let server = service.bind(&dir.join(REGISTRATION_SOCKET)).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async { stopped.await.unwrap_or(()) })
                .await
                .unwrap();
        });
        Self {
            service,
            events,
            stop: Some(stop),
            task,
        }
    }

    async fn next_event(&mut self) -> RegistrationEvent {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("no event in time")
            .expect("open")
    }

    async fn stop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("agent stops")
            .unwrap();
    }
}

fn start_plugin(
    dir: &Path,
    sets: watch::Receiver<Vec<Device>>,
) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let handler: Arc<dyn DiscoveryHandler> = Arc::new(ScriptedHandler { sets });
    let dir = dir.to_path_buf();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        run_plugin(handler, &dir, async { stopped.await.unwrap_or(()) })
            .await
            .unwrap();
    });
    (stop, task)
}

fn registered(dir: &Path) -> RegistrationEvent {
    RegistrationEvent::Registered {
        name: "scripted".into(),
        socket: dir.join("scripted.sock"),
    }
}

fn deregistered() -> RegistrationEvent {
    RegistrationEvent::Deregistered {
        name: "scripted".into(),
    }
}

async fn next_set(stream: &mut DeviceStream) -> Result<Vec<Device>, DiscoveryError> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("no set in time")
        .expect("stream open")
}

#[tokio::test]
async fn registration_is_announced_and_survives_an_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(dir.path());
    let (_sets, sets) = watch::channel(vec![]);
    let (_stop, _plugin) = start_plugin(dir.path(), sets);

    assert_eq!(agent.next_event().await, registered(dir.path()));
    assert_eq!(
        agent.service.handlers().get("scripted"),
        Some(&dir.path().join("scripted.sock"))
    );

    // The agent restarts: the old one drops the registration, the handler
    // comes back to the new one within a second.
    agent.stop().await;
    assert_eq!(agent.next_event().await, deregistered());
    let restarted = Instant::now();
    let mut agent = Agent::start(dir.path());
    assert_eq!(agent.next_event().await, registered(dir.path()));
    let elapsed = restarted.elapsed();
    assert!(
        elapsed < Duration::from_secs(1),
        "re-registered after {elapsed:?}"
    );
}

#[tokio::test]
async fn discover_streams_complete_sets_and_fails_when_the_handler_goes() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(dir.path());
    let (sets_tx, sets) = watch::channel(vec![Device::new("a")]);
    let (stop_plugin, plugin) = start_plugin(dir.path(), sets);
    let RegistrationEvent::Registered { name, socket } = agent.next_event().await else {
        panic!("expected a registration");
    };

    let handler: Arc<dyn DiscoveryHandler> = Arc::new(ExternalHandler::new(name, socket));
    let mut stream = handler
        .discover(DiscoverRequest::new(json!({})))
        .await
        .unwrap();
    assert_eq!(next_set(&mut stream).await.unwrap(), vec![Device::new("a")]);

    let mut b = Device::new("b");
    b.shared = true;
    b.properties.insert("B".into(), "2".into());
    sets_tx.send(vec![Device::new("a"), b.clone()]).unwrap();
    assert_eq!(
        next_set(&mut stream).await.unwrap(),
        vec![Device::new("a"), b]
    );
    sets_tx.send(vec![]).unwrap();
    assert_eq!(next_set(&mut stream).await.unwrap(), vec![]);

    // The handler stops: the agent sees both the stream fail and the
    // registration end, and later calls fail fast.
    stop_plugin.send(()).unwrap();
    let error = next_set(&mut stream).await.unwrap_err();
    assert_eq!(error.category(), "unavailable", "{error}");
    assert!(
        tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(agent.next_event().await, deregistered());
    plugin.await.unwrap();
    let error = handler
        .discover(DiscoverRequest::new(json!({})))
        .await
        .err()
        .expect("handler gone");
    assert_eq!(error.category(), "unavailable", "{error}");
}

#[tokio::test]
async fn a_handler_task_that_is_dropped_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(dir.path());
    let (_sets, sets) = watch::channel(vec![Device::new("a")]);
    let (_stop, plugin) = start_plugin(dir.path(), sets);
    let RegistrationEvent::Registered { name, socket } = agent.next_event().await else {
        panic!("expected a registration");
    };
    let handler = ExternalHandler::new(name, socket);
    let mut stream = handler
        .discover(DiscoverRequest::new(json!({})))
        .await
        .unwrap();
    assert_eq!(next_set(&mut stream).await.unwrap(), vec![Device::new("a")]);

    plugin.abort();
    assert_eq!(agent.next_event().await, deregistered());
    assert!(next_set(&mut stream).await.is_err());
}

#[tokio::test]
async fn invalid_details_carry_the_handlers_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(dir.path());
    let (_sets, sets) = watch::channel(vec![]);
    let (_stop, _plugin) = start_plugin(dir.path(), sets);
    let RegistrationEvent::Registered { name, socket } = agent.next_event().await else {
        panic!("expected a registration");
    };
    let handler = ExternalHandler::new(name, socket);
    let error = handler
        .discover(DiscoverRequest::new(json!({"bad": 7})))
        .await
        .err()
        .unwrap();
    assert_eq!(
        error,
        DiscoveryError::InvalidDetails("bad: 7 is not allowed".into())
    );
}

async fn raw_register(
    dir: &Path,
    name: &str,
    endpoint: &str,
    version: &str,
) -> Result<tonic::Streaming<v1::RegisterResponse>, tonic::Status> {
    let channel = connect(&dir.join(REGISTRATION_SOCKET)).await.unwrap();
    let request = v1::RegisterRequest {
        name: name.into(),
        endpoint: endpoint.into(),
        version: version.into(),
    };
    RawClient::new(channel)
        .register(request)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn registration_rules() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(dir.path());

    let status = raw_register(dir.path(), "Bad_Name", "/x.sock", "v1")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = raw_register(dir.path(), "h", "x.sock", "v1")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = raw_register(dir.path(), "h", "/x.sock", "v2")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("\"v1\""), "{}", status.message());

    // The first registration holds the name; another endpoint is refused,
    // the same endpoint replaces it (ending the old stream) without a
    // deregistration in between.
    let mut first = raw_register(dir.path(), "h", "/a.sock", "v1")
        .await
        .unwrap();
    assert_eq!(first.next().await.unwrap().unwrap().node_name, "node-a");
    let h_on = |socket: &str| RegistrationEvent::Registered {
        name: "h".into(),
        socket: PathBuf::from(socket),
    };
    assert_eq!(agent.next_event().await, h_on("/a.sock"));
    let status = raw_register(dir.path(), "h", "/b.sock", "v1")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);

    let mut second = raw_register(dir.path(), "h", "/a.sock", "v1")
        .await
        .unwrap();
    assert!(second.next().await.unwrap().is_ok());
    assert!(
        tokio::time::timeout(WAIT, first.next())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(agent.next_event().await, h_on("/a.sock"));

    drop(second);
    assert_eq!(
        agent.next_event().await,
        RegistrationEvent::Deregistered { name: "h".into() }
    );
    assert!(agent.service.handlers().is_empty());
}
