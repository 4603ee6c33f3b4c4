//! # ambit-discovery: Ambit's discovery-handler protocol
//!
//! Everything both sides of the protocol need, in one crate:
//!
//! ```text
//!  handler process                                   node agent
//!  ───────────────                                   ──────────
//!  impl DiscoveryHandler ─► run_plugin / serve       RegistrationService ─► RegistrationEvent
//!     (or embedded in the agent directly)             ExternalHandler: impl DiscoveryHandler
//!                    ◄──── gRPC over unix sockets (ambit.discovery.v1) ────►
//! ```
//!
//! - [`DiscoveryHandler`]: the trait every handler implements, embedded or
//!   external; [`DiscoverRequest`] in, a stream of complete [`Device`] sets
//!   out, [`DiscoveryError`] when it fails.
//! - Handler side: [`serve`] / [`run_plugin`] serve a handler on a unix
//!   socket; [`RegistrationClient`] keeps it registered with the agent.
//! - Agent side: [`RegistrationService`] serves the registration socket and
//!   emits [`RegistrationEvent`]s; [`ExternalHandler`] calls a registered
//!   handler over its socket.
//! - [`v1`]: the generated protobuf types and gRPC stubs
//!   (`proto/ambit/discovery/v1/discovery.proto`).
//!
//! The protocol is described for handler authors in
//! `docs/handler-protocol.md`.

mod authority;
mod backoff;
mod error;
mod external;
pub mod fields;
mod handler;
mod name;
mod plugin;
mod registration;
mod server;
mod transport;
mod types;

/// Generated from `proto/ambit/discovery/v1/discovery.proto`.
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
pub mod v1 {
    tonic::include_proto!("ambit.discovery.v1");
}

pub use backoff::Backoff;
pub use error::{DiscoveryError, TransportError};
pub use external::ExternalHandler;
pub use handler::{BoxFuture, DeviceStream, DiscoveryHandler};
pub use name::validate_handler_name;
pub use plugin::{PluginError, handler_socket, run_plugin};
pub use registration::{
    DEFAULT_SOCKET_DIR, PROTOCOL_VERSION, REGISTRATION_SOCKET, RegistrationClient,
    RegistrationClientError, RegistrationEvent, RegistrationService,
};
pub use server::{bind_handler, serve};
pub use transport::{UnixServer, connect, connect_lazy};
pub use types::{Device, DeviceNode, DiscoverRequest, Mount, check_device_set};
