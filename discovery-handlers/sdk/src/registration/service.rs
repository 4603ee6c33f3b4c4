//! The agent side of registration: serves `Registration` on the agent's
//! socket, keeps the table of live registrations and tells the agent about
//! every change through a channel of [`RegistrationEvent`]s.
//!
//! Each registration owns a guard that lives inside its response stream.
//! The stream is dropped when the handler's connection closes, when a newer
//! registration of the same handler replaces it, or when the server stops;
//! the guard then removes the entry (if still its own) and sends
//! `Deregistered`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::{Stream, StreamExt, stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::PROTOCOL_VERSION;
use crate::error::TransportError;
use crate::name::validate_handler_name;
use crate::transport::UnixServer;
use crate::v1;
use crate::v1::registration_server::RegistrationServer;

/// A change in the set of registered external handlers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RegistrationEvent {
    /// A handler registered, or registered again (after a restart of either
    /// side): (re)connect to it and (re)start its discoveries.
    Registered {
        /// The handler's name.
        name: String,
        /// Where it serves `DiscoveryHandler`.
        socket: PathBuf,
    },
    /// A handler's registration ended: it went away.
    Deregistered {
        /// The handler's name.
        name: String,
    },
}

/// The agent's registration service. Cheap to clone; clones share the table.
#[derive(Debug, Clone)]
pub struct RegistrationService {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    node_name: String,
    table: Mutex<Table>,
    /// Unbounded: at most one event per registration, and registrations are
    /// paced by the handlers' backoff; never blocks the gRPC task.
    events: mpsc::UnboundedSender<RegistrationEvent>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    socket: PathBuf,
    /// Cancelled to end this registration's stream when it is replaced.
    replaced: CancellationToken,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        // The table stays consistent across a panic: every update is a
        // single insert or remove.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, event: RegistrationEvent) {
        // A closed receiver means the agent is shutting down; nothing to tell.
        let _ = self.events.send(event);
    }
}

impl RegistrationService {
    /// A service for the agent on `node_name`, and the receiver of its
    /// events.
    pub fn new(node_name: impl Into<String>) -> (Self, mpsc::UnboundedReceiver<RegistrationEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let shared = Shared {
            node_name: node_name.into(),
            table: Mutex::default(),
            events,
        };
        (
            Self {
                shared: Arc::new(shared),
            },
            receiver,
        )
    }

    /// The handlers registered now, by name, with their sockets.
    pub fn handlers(&self) -> BTreeMap<String, PathBuf> {
        let table = self.shared.table();
        table
            .entries
            .iter()
            .map(|(name, entry)| (name.clone(), entry.socket.clone()))
            .collect()
    }

    /// Binds the registration socket (usually
    /// `<socket_dir>/`[`REGISTRATION_SOCKET`](super::REGISTRATION_SOCKET)).
    /// Must be called within a Tokio runtime.
    pub fn bind(&self, socket_path: &Path) -> Result<UnixServer, TransportError> {
        let stop = CancellationToken::new();
        let service = RegistrationGrpc {
            shared: self.shared.clone(),
            stop: stop.clone(),
        };
        UnixServer::bind(
            socket_path,
            Routes::new(RegistrationServer::new(service)),
            stop,
        )
    }

    /// Serves registration on `socket_path` until `shutdown` completes. On
    /// the way out every registration ends (each handler then registers
    /// again with the next agent) and the socket file is removed.
    pub async fn serve(
        &self,
        socket_path: &Path,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), TransportError> {
        self.bind(socket_path)?.run(shutdown).await
    }
}

/// Ends a registration when dropped, unless a newer one replaced it.
struct Lease {
    shared: Arc<Shared>,
    name: String,
    id: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut table = self.shared.table();
        if table
            .entries
            .get(&self.name)
            .is_some_and(|entry| entry.id == self.id)
        {
            table.entries.remove(&self.name);
            info!(handler = %self.name, "discovery handler deregistered");
            self.shared.send(RegistrationEvent::Deregistered {
                name: self.name.clone(),
            });
        }
    }
}

/// The gRPC face of the service, one per bound socket.
struct RegistrationGrpc {
    shared: Arc<Shared>,
    stop: CancellationToken,
}

type RegisterStream = Pin<Box<dyn Stream<Item = Result<v1::RegisterResponse, Status>> + Send>>;

#[tonic::async_trait]
impl v1::registration_server::Registration for RegistrationGrpc {
    type RegisterStream = RegisterStream;

    async fn register(
        &self,
        request: Request<v1::RegisterRequest>,
    ) -> Result<Response<Self::RegisterStream>, Status> {
        if self.stop.is_cancelled() {
            return Err(Status::unavailable("the agent is shutting down"));
        }
        let v1::RegisterRequest {
            name,
            endpoint,
            version,
        } = request.into_inner();
        validate_handler_name(&name).map_err(Status::invalid_argument)?;
        if version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "handler {name} speaks protocol version {version:?}; this agent speaks {PROTOCOL_VERSION:?}"
            )));
        }
        let socket = PathBuf::from(&endpoint);
        if !socket.is_absolute() {
            return Err(Status::invalid_argument(format!(
                "endpoint {endpoint:?} of handler {name} is not an absolute socket path"
            )));
        }

        let replaced = CancellationToken::new();
        let id = {
            let mut table = self.shared.table();
            if let Some(existing) = table.entries.get(&name) {
                if existing.socket != socket {
                    warn!(handler = %name, endpoint, existing = %existing.socket.display(), "name already registered");
                    return Err(Status::already_exists(format!(
                        "handler {name} is already registered by a live handler on {}",
                        existing.socket.display()
                    )));
                }
                existing.replaced.cancel();
            }
            table.next_id += 1;
            let id = table.next_id;
            let entry = Entry {
                id,
                socket: socket.clone(),
                replaced: replaced.clone(),
            };
            table.entries.insert(name.clone(), entry);
            info!(handler = %name, socket = %socket.display(), "discovery handler registered");
            self.shared.send(RegistrationEvent::Registered {
                name: name.clone(),
                socket,
            });
            id
        };

        let lease = Lease {
            shared: self.shared.clone(),
            name,
            id,
        };
        let stop = self.stop.clone();
        let accepted = v1::RegisterResponse {
            node_name: self.shared.node_name.clone(),
        };
        let held = stream::once(async move {
            let _lease = lease;
            tokio::select! {
                () = replaced.cancelled() => {}
                () = stop.cancelled() => {}
            }
        })
        .filter_map(|()| async { None });
        Ok(Response::new(Box::pin(
            stream::once(async { Ok(accepted) }).chain(held),
        )))
    }
}
