//! Registration: how external handlers announce themselves to the agent.
//!
//! ```text
//!   handler: RegistrationClient ──Register{name, endpoint, "v1"}──► agent: RegistrationService
//!                               ◄── RegisterResponse, stream held open ──   │
//!                                                                           ├─► Registered{name, socket}
//!   stream ends (agent restarted,         connection closes (handler gone)  └─► Deregistered{name}
//!   connection broke): register again
//!   with capped backoff
//! ```
//!
//! The open stream is the lease: neither side polls, and each learns at once
//! when the other goes, because a unix socket connection closes with its
//! process.

mod client;
mod service;

pub use client::{RegistrationClient, RegistrationClientError};
pub use service::{RegistrationEvent, RegistrationService};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: &str = "v1";

/// The file name of the agent's registration socket in its socket directory.
pub const REGISTRATION_SOCKET: &str = "registration.sock";

/// The agent's and handlers' default socket directory.
pub const DEFAULT_SOCKET_DIR: &str = "/var/lib/ambit";
