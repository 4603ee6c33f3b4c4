//! The one trait every discovery handler implements, embedded in the agent
//! or served as an external plugin.
//!
//! ```text
//!   DeviceSet details ──► discover(request) ──► DeviceStream
//!                                               ├─ Ok(complete set)   at once
//!                                               ├─ Ok(complete set)   on every change
//!                                               └─ Err(..)            then the stream ends
//! ```
//!
//! The trait is dyn-compatible so the agent holds every handler, embedded or
//! external ([`crate::ExternalHandler`]), as `Arc<dyn DiscoveryHandler>`.

use std::future::Future;
use std::pin::Pin;

use futures::Stream;

use crate::error::DiscoveryError;
use crate::types::{Device, DiscoverRequest};

/// A boxed, sendable future, as returned by [`DiscoveryHandler::discover`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The stream of complete device sets a handler produces for one request.
pub type DeviceStream = Pin<Box<dyn Stream<Item = Result<Vec<Device>, DiscoveryError>> + Send>>;

/// A discovery handler.
///
/// Contract for `discover`:
/// - Validate the request first and fail with
///   [`DiscoveryError::InvalidDetails`] when it is wrong, before returning a
///   stream.
/// - The stream yields the COMPLETE current set of devices at once, then again
///   whenever that set changes (not when nothing changed).
/// - The stream stays open while discovery runs. A consumer treats an error,
///   or the end of the stream, as a failure and starts a new `discover` call
///   after a backoff. Dropping the stream stops discovery.
pub trait DiscoveryHandler: Send + Sync + 'static {
    /// The handler's name, a DNS-1123 label; DeviceSets select handlers by it.
    fn name(&self) -> &str;

    /// Starts discovery for one DeviceSet.
    fn discover(
        &self,
        request: DiscoverRequest,
    ) -> BoxFuture<'_, Result<DeviceStream, DiscoveryError>>;
}
