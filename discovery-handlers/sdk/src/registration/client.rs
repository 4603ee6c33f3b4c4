//! The handler side of registration: registers with the agent and registers
//! again whenever the registration ends, for the life of the handler.
//!
//! ```text
//!   loop: connect ─► Register ─► first response: registered, reset backoff
//!            ▲                    └─ hold the stream until it ends or fails
//!            └──── sleep(backoff: 100 ms doubling to 1 s, jittered) ◄─┘
//! ```

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use tonic::Status;
use tracing::{debug, info, warn};

use super::PROTOCOL_VERSION;
use crate::backoff::Backoff;
use crate::error::TransportError;
use crate::name::validate_handler_name;
use crate::transport::connect;
use crate::v1;
use crate::v1::registration_client::RegistrationClient as GrpcClient;

/// Why a registration client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationClientError {
    /// The handler's name is not a DNS-1123 label.
    #[error("invalid handler name: {0}")]
    InvalidName(String),
    /// The handler's endpoint is not an absolute path.
    #[error("handler endpoint {0} is not an absolute path")]
    RelativeEndpoint(PathBuf),
}

/// Why one registration attempt ended.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("agent not reachable")]
    Connect(#[source] TransportError),
    #[error("agent refused the registration: {}", .0.message())]
    Refused(Status),
    #[error("agent ended the registration without accepting it")]
    NotAccepted,
}

/// Keeps one handler registered with the agent.
#[derive(Debug, Clone)]
pub struct RegistrationClient {
    name: String,
    endpoint: PathBuf,
    agent_socket: PathBuf,
    backoff: Backoff,
}

impl RegistrationClient {
    /// A client registering handler `name`, served on `endpoint`, with the
    /// agent listening on `agent_socket`.
    pub fn new(
        name: impl Into<String>,
        endpoint: impl Into<PathBuf>,
        agent_socket: impl Into<PathBuf>,
    ) -> Result<Self, RegistrationClientError> {
        let name = name.into();
        let endpoint = endpoint.into();
        validate_handler_name(&name).map_err(RegistrationClientError::InvalidName)?;
        if !endpoint.is_absolute() {
            return Err(RegistrationClientError::RelativeEndpoint(endpoint));
        }
        Ok(Self {
            name,
            endpoint,
            agent_socket: agent_socket.into(),
            backoff: Backoff::default(),
        })
    }

    /// Uses `backoff` between attempts instead of the default.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The agent's registration socket.
    pub fn agent_socket(&self) -> &Path {
        &self.agent_socket
    }

    /// Registers, and registers again each time the registration ends, for
    /// ever. Drop the future to stop (the agent then sees the connection
    /// close and deregisters the handler).
    pub async fn run(mut self) -> Infallible {
        let mut failures: u32 = 0;
        loop {
            match self.attempt().await {
                Ok(()) => {
                    failures = 0;
                    info!(handler = %self.name, "registration ended; registering again");
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let agent = self.agent_socket.display();
                    // Say it once per outage, then once a minute.
                    if failures == 1 || failures.is_multiple_of(60) {
                        warn!(handler = %self.name, %agent, error = %error_chain(&error), "registration failed; retrying");
                    } else {
                        debug!(handler = %self.name, %agent, failures, error = %error_chain(&error), "registration failed");
                    }
                }
            }
            tokio::time::sleep(self.backoff.next_delay()).await;
        }
    }

    /// One registration: returns Ok when an accepted registration ended.
    async fn attempt(&mut self) -> Result<(), AttemptError> {
        // A fresh connection each time, never a reused channel: after an
        // agent restart the old connection leads to the old agent.
        let channel = connect(&self.agent_socket)
            .await
            .map_err(AttemptError::Connect)?;
        let request = v1::RegisterRequest {
            name: self.name.clone(),
            endpoint: self.endpoint.to_string_lossy().into_owned(),
            version: PROTOCOL_VERSION.to_owned(),
        };
        let mut stream = GrpcClient::new(channel)
            .register(request)
            .await
            .map_err(AttemptError::Refused)?
            .into_inner();
        match stream.next().await {
            Some(Ok(accepted)) => {
                self.backoff.reset();
                info!(handler = %self.name, node = %accepted.node_name, "registered with the agent");
            }
            Some(Err(status)) => return Err(AttemptError::Refused(status)),
            None => return Err(AttemptError::NotAccepted),
        }
        // Hold the registration; the agent sends nothing more in v1, and
        // anything it may send in a later minor version is ignored.
        while let Some(message) = stream.next().await {
            if let Err(status) = message {
                debug!(handler = %self.name, code = ?status.code(), message = status.message(), "registration stream broke");
                break;
            }
        }
        Ok(())
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
