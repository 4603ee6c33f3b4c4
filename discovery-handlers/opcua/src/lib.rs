//! # ambit-opcua: the `opcua` discovery handler
//!
//! Finds OPC UA servers: every discovery URL the DeviceSet names — a server,
//! or a Local Discovery Server (LDS) with servers registered — is asked
//! FindServers (and, when asked for, FindServersOnNetwork, for an LDS-ME
//! that hears mDNS announcements); the applications of the wanted types,
//! names and URIs are then asked GetEndpoints, and those that answer become
//! devices, keyed by their discovery URL, with their endpoints' security
//! policies and modes as properties so brokers can choose. OPC UA discovery
//! has no events, so the handler looks again every `interval` and sends a
//! new complete set only when it changed.
//!
//! ```text
//!   details ──details::plan──► Plan ──scan::device_sets──► stream of complete sets
//!                                       ├─ FindServers / FindServersOnNetwork per discovery URL ─┐
//!                                       └─ GetEndpoints per server named ◄─────────────────────┘
//!                                          (probe: each call bounded in time and size)
//! ```
//!
//! With `details.session`, each server found is also logged in to, with the
//! credentials and client certificate of `discovery.properties`, and its
//! BuildInfo reported.
//!
//! Built on async-opcua's client, pure Rust (RustCrypto, no OpenSSL).
//! `docs/handlers/opcua.md` describes the details and properties.

mod details;
mod device;
mod probe;
mod scan;
mod url;

use ambit_discovery::{BoxFuture, DeviceStream, DiscoverRequest, DiscoveryError, DiscoveryHandler};

pub use details::{CLIENT_CERTIFICATE, CLIENT_PRIVATE_KEY, PASSWORD, USERNAME};
pub use details::{
    DEFAULT_CONCURRENCY, DEFAULT_INTERVAL, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_SERVERS,
    DEFAULT_TIMEOUT, MAX_CONCURRENCY, MAX_DISCOVERY_URLS, MAX_SERVERS,
};
pub use device::{
    APPLICATION_NAME, APPLICATION_TYPE, APPLICATION_URI, BUILD_NUMBER, DISCOVERY_URL,
    ENDPOINT_COUNT, ENDPOINT_PREFIX, FOUND_VIA, MANUFACTURER_NAME, MAX_LISTED_ENDPOINTS,
    PRODUCT_NAME, PRODUCT_URI, SECURITY_MODES, SECURITY_POLICIES, SOFTWARE_VERSION,
};

/// The handler's name.
pub const NAME: &str = "opcua";

/// The opcua handler. It keeps no state between DeviceSets: each discovery
/// looks on its own.
#[derive(Debug, Default)]
pub struct OpcUa;

impl OpcUa {
    /// The handler.
    pub fn new() -> Self {
        Self
    }
}

impl DiscoveryHandler for OpcUa {
    fn name(&self) -> &str {
        NAME
    }

    fn discover(
        &self,
        request: DiscoverRequest,
    ) -> BoxFuture<'_, Result<DeviceStream, DiscoveryError>> {
        Box::pin(async move {
            let plan = details::plan(&request)?;
            let prober = probe::Prober::new(&plan).map_err(DiscoveryError::Failed)?;
            Ok(scan::device_sets(plan, prober))
        })
    }
}
