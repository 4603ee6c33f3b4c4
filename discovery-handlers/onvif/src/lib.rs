//! # ambit-onvif: the `onvif` discovery handler
//!
//! Finds ONVIF IP cameras with WS-Discovery and describes each one over its
//! ONVIF device and media services. Event-driven where the protocol allows:
//! a camera's Hello adds it and its Bye removes it at once; a Probe every
//! `probeInterval` (repeated with SOAP-over-UDP's back-off) catches the
//! cameras that came before us or whose messages were lost, and a camera
//! goes only after it missed `missedProbes` probe cycles in a row, so one
//! lost reply never removes a camera.
//!
//! ```text
//!   details ──details::parse──► Config (filters, credentials, timing)
//!                                  │
//!   UDP 3702 (v4, v6) ──wsd::parse──► discovery task ──Tracker──► complete sets ──► stream
//!                                        └─ interrogate (SOAP over HTTP, WS-Security digest):
//!                                           device information, MAC, profiles, RTSP URIs
//! ```
//!
//! The user-facing description of `details` and the properties is
//! `docs/handlers/onvif.md`.

mod details;
mod device;
mod discovery;
mod filter;
mod http;
mod interrogate;
mod net;
mod security;
mod soap;
mod tracker;
mod wsd;
mod xml;

use std::sync::Arc;

use ambit_discovery::{BoxFuture, DeviceStream, DiscoverRequest, DiscoveryError, DiscoveryHandler};

pub use details::{
    DEFAULT_MATCH_TIMEOUT, DEFAULT_MISSED_PROBES, DEFAULT_PROBE_INTERVAL, DEFAULT_PROBE_REPEAT,
    DEFAULT_TIMEOUT, PASSWORD, USERNAME,
};
pub use device::{
    DEVICE_SERVICE_URL, ERROR, FIRMWARE_VERSION, HARDWARE_ID, IP_ADDRESS, MAC_ADDRESS,
    MANUFACTURER, MEDIA_SERVICE_URL, MODEL, PROFILE_COUNT, PROFILE_PREFIX, SCOPES, SERIAL_NUMBER,
    STREAM_URI, TYPES, UUID, XADDRS,
};

/// The handler's name.
pub const NAME: &str = "onvif";

/// The ONVIF handler. It keeps no state between DeviceSets: each discovery
/// has its own sockets and its own view of the cameras.
#[derive(Debug, Default)]
pub struct Onvif;

impl Onvif {
    /// The handler.
    pub fn new() -> Self {
        Self
    }
}

impl DiscoveryHandler for Onvif {
    fn name(&self) -> &str {
        NAME
    }

    fn discover(
        &self,
        request: DiscoverRequest,
    ) -> BoxFuture<'_, Result<DeviceStream, DiscoveryError>> {
        Box::pin(async move {
            let config = Arc::new(details::parse(&request)?);
            discovery::start(config)
        })
    }
}

/// Entry points for the fuzz target (`fuzz/`) and the malformed-input
/// tests; not part of the handler's API.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses `data` as a WS-Discovery datagram; must never panic.
    pub fn discovery_message(data: &[u8]) {
        if let Ok(message) = crate::wsd::parse(data) {
            let mut tracker = crate::tracker::Tracker::default();
            tracker.observe(message, std::net::Ipv4Addr::LOCALHOST.into());
        }
    }

    /// Parses `data` as the answer to each ONVIF operation the handler
    /// calls; must never panic.
    pub fn soap_answer(data: &[u8]) {
        use crate::soap;
        let text = String::from_utf8_lossy(data);
        let _ = soap::answer(&text, "GetSystemDateAndTimeResponse", soap::system_time);
        let _ = soap::answer(
            &text,
            "GetDeviceInformationResponse",
            soap::device_information,
        );
        let _ = soap::answer(&text, "GetCapabilitiesResponse", soap::media_xaddr);
        let _ = soap::answer(&text, "GetNetworkInterfacesResponse", soap::mac_address);
        let _ = soap::answer(&text, "GetProfilesResponse", soap::profiles);
        let _ = soap::answer(&text, "GetStreamUriResponse", soap::stream_uri);
        if let Ok(Some(first)) = std::str::from_utf8(data).map(|t| t.split_whitespace().next()) {
            let _ = soap::normalize_mac(first);
        }
    }
}
