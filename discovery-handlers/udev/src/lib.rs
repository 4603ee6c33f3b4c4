//! # ambit-udev: the `udev` discovery handler
//!
//! Finds the devices attached to this node that match a DeviceSet's udev
//! rules — USB cameras, serial adapters, anything udev knows — and pushes a
//! new complete set the moment udev reports a change: a udev monitor for
//! add, remove, change, bind and unbind, after one enumeration at start. A
//! device keeps its id when it is re-plugged (on another port too, when it
//! has a serial number), so its Device object is updated in place with the
//! new device node rather than left on a stale path.
//!
//! ```text
//!   details ──details::parse──► Config { Rules, Shape }
//!                                   │
//!   libudev (monitor + enumerate) ──watch (own thread)──► {devpath: Found}
//!                                   ──found::device_set──► complete sets ──► stream
//! ```
//!
//! The user-facing description of `details`, the properties and the ids is
//! `docs/handlers/udev.md`.

mod details;
mod found;
mod node;
mod rules;
mod watch;

use std::sync::Arc;

use ambit_discovery::{BoxFuture, DeviceStream, DiscoverRequest, DiscoveryError, DiscoveryHandler};

pub use details::{DEFAULT_PERMISSIONS, MAX_RULE_LENGTH, MAX_RULES};
pub use found::{
    DEVNODE, DEVNODES, DEVPATH, PRODUCT, PRODUCT_ID, SERIAL, SUBSYSTEM, SYSNAME, VENDOR, VENDOR_ID,
};

/// The handler's name.
pub const NAME: &str = "udev";

/// The udev handler. Each discovery runs its own monitor on a thread of its
/// own; nothing is shared between DeviceSets.
#[derive(Debug, Default)]
pub struct Udev;

impl Udev {
    /// The handler.
    pub fn new() -> Self {
        Self
    }
}

impl DiscoveryHandler for Udev {
    fn name(&self) -> &str {
        NAME
    }

    fn discover(
        &self,
        request: DiscoverRequest,
    ) -> BoxFuture<'_, Result<DeviceStream, DiscoveryError>> {
        Box::pin(async move {
            let config = Arc::new(details::parse(&request)?);
            watch::start(config).await
        })
    }
}

/// Checks a DeviceSet's `details` for this handler without discovering
/// anything: the error `discover` would return, or `Ok`.
pub fn check_details(details: serde_json::Value) -> Result<(), DiscoveryError> {
    details::parse(&DiscoverRequest::new(details)).map(drop)
}
