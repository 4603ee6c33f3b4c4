//! Errors of discovery, as a handler reports them and as the agent sees them.
//!
//! The retry rule follows from the variant: [`DiscoveryError::InvalidDetails`]
//! is the DeviceSet author's to fix, so the agent waits for the DeviceSet to
//! change; every other variant is retried with capped backoff. On the wire,
//! `InvalidDetails` is gRPC `INVALID_ARGUMENT` with the message unchanged, so
//! what a handler writes is what the user reads in the DeviceSet's status.

use std::io;
use std::path::PathBuf;

use tonic::{Code, Status};

/// Why discovery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The DeviceSet's `details` or `properties` are not valid for this
    /// handler. The message is written for the DeviceSet's author. Not
    /// retried until the DeviceSet changes.
    #[error("invalid discovery details: {0}")]
    InvalidDetails(String),
    /// The handler cannot be reached: not registered, its socket is gone, or
    /// the connection broke. Retried with backoff.
    #[error("discovery handler unavailable: {0}")]
    Unavailable(String),
    /// The handler ran but discovery failed (device I/O, a peer that does not
    /// answer, ...). Retried with backoff.
    #[error("discovery failed: {0}")]
    Failed(String),
    /// The handler broke the protocol (a device without an id, an id twice in
    /// one set). Retried with backoff, in case the handler is fixed.
    #[error("discovery handler broke the protocol: {0}")]
    Protocol(String),
}

impl DiscoveryError {
    /// A short, fixed label for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::InvalidDetails(_) => "invalid_details",
            Self::Unavailable(_) => "unavailable",
            Self::Failed(_) => "failed",
            Self::Protocol(_) => "protocol",
        }
    }

    /// Whether retrying without a change of the DeviceSet can help.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::InvalidDetails(_))
    }

    /// The message without the variant's prefix: what goes on the wire.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidDetails(m)
            | Self::Unavailable(m)
            | Self::Failed(m)
            | Self::Protocol(m) => m,
        }
    }
}

impl From<DiscoveryError> for Status {
    fn from(error: DiscoveryError) -> Self {
        let code = match &error {
            DiscoveryError::InvalidDetails(_) => Code::InvalidArgument,
            DiscoveryError::Unavailable(_) => Code::Unavailable,
            DiscoveryError::Failed(_) => Code::Unknown,
            DiscoveryError::Protocol(_) => Code::Internal,
        };
        Status::new(code, error.message())
    }
}

impl From<Status> for DiscoveryError {
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::InvalidArgument => Self::InvalidDetails(message),
            Code::Unavailable | Code::Cancelled => Self::Unavailable(message),
            code => Self::Failed(format!("{code:?}: {message}")),
        }
    }
}

/// Failure to serve or reach a unix socket.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The socket's directory could not be created.
    #[error("failed to create socket directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another live server already listens on the socket.
    #[error("socket {0} is in use by another live server")]
    InUse(PathBuf),
    /// A stale socket file could not be removed.
    #[error("failed to remove stale socket {path}")]
    RemoveStale {
        /// The socket file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Binding the socket failed.
    #[error("failed to bind unix socket {path}")]
    Bind {
        /// The socket file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server on {path} failed")]
    Serve {
        /// The socket file.
        path: PathBuf,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// Connecting to a socket failed.
    #[error("failed to connect to {path}")]
    Connect {
        /// The socket file.
        path: PathBuf,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_details_round_trips_with_message_unchanged() {
        let error = DiscoveryError::InvalidDetails("devices[0].id: missing field `id`".into());
        let status = Status::from(error.clone());
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "devices[0].id: missing field `id`");
        assert_eq!(DiscoveryError::from(status), error);
    }

    #[test]
    fn only_invalid_details_is_final() {
        assert!(!DiscoveryError::InvalidDetails(String::new()).is_retryable());
        assert!(DiscoveryError::Unavailable(String::new()).is_retryable());
        assert!(DiscoveryError::Failed(String::new()).is_retryable());
        assert!(DiscoveryError::Protocol(String::new()).is_retryable());
    }

    #[test]
    fn other_codes_keep_their_code_in_the_message() {
        let error = DiscoveryError::from(Status::internal("boom"));
        assert_eq!(error, DiscoveryError::Failed("Internal: boom".into()));
        assert_eq!(error.category(), "failed");
    }
}
