//! A camera as an Ambit [`Device`]: its id (the WS-Discovery endpoint
//! address, stable across restarts and address changes) and the
//! properties handed to its brokers.
//!
//! ```text
//!   urn:uuid:3fa1fe68-b915-4053-a3e1-ac15a21f5f91 ──► id, shared (a network device)
//!   ONVIF_DEVICE_SERVICE_URL, ONVIF_UUID, ONVIF_IP_ADDRESS, ONVIF_MAC_ADDRESS,
//!   ONVIF_MANUFACTURER …, ONVIF_STREAM_URI, ONVIF_PROFILE_<n>_{TOKEN,NAME,…}
//! ```

use std::collections::BTreeMap;

use ambit_discovery::Device;

use crate::interrogate::Info;

/// The device service URL used (the first XAddr that answered).
pub const DEVICE_SERVICE_URL: &str = "ONVIF_DEVICE_SERVICE_URL";
/// All XAddrs the camera announced, space-separated.
pub const XADDRS: &str = "ONVIF_XADDRS";
/// The UUID: the endpoint address without `urn:uuid:` (else the whole address).
pub const UUID: &str = "ONVIF_UUID";
/// The IP address: the device service URL's host, else the sender of the
/// discovery message.
pub const IP_ADDRESS: &str = "ONVIF_IP_ADDRESS";
/// The MAC address from GetNetworkInterfaces, `aa:bb:cc:dd:ee:ff`.
pub const MAC_ADDRESS: &str = "ONVIF_MAC_ADDRESS";
/// The WS-Discovery scopes, space-separated.
pub const SCOPES: &str = "ONVIF_SCOPES";
/// The WS-Discovery types, space-separated.
pub const TYPES: &str = "ONVIF_TYPES";
/// From GetDeviceInformation.
pub const MANUFACTURER: &str = "ONVIF_MANUFACTURER";
/// From GetDeviceInformation.
pub const MODEL: &str = "ONVIF_MODEL";
/// From GetDeviceInformation.
pub const FIRMWARE_VERSION: &str = "ONVIF_FIRMWARE_VERSION";
/// From GetDeviceInformation.
pub const SERIAL_NUMBER: &str = "ONVIF_SERIAL_NUMBER";
/// From GetDeviceInformation.
pub const HARDWARE_ID: &str = "ONVIF_HARDWARE_ID";
/// The media service URL (from GetCapabilities).
pub const MEDIA_SERVICE_URL: &str = "ONVIF_MEDIA_SERVICE_URL";
/// The number of media profiles reported.
pub const PROFILE_COUNT: &str = "ONVIF_PROFILE_COUNT";
/// The first profile's RTSP stream URI (a shortcut for the common case).
pub const STREAM_URI: &str = "ONVIF_STREAM_URI";
/// Prefix of the per-profile properties `ONVIF_PROFILE_<n>_TOKEN`,
/// `_NAME`, `_ENCODING`, `_RESOLUTION`, `_STREAM_URI` (n from 0).
pub const PROFILE_PREFIX: &str = "ONVIF_PROFILE_";
/// Why the camera could not be fully described (wrong credentials, no
/// answer, …); absent when all went well.
pub const ERROR: &str = "ONVIF_ERROR";

/// What is known about one camera when its Device is made.
#[derive(Debug)]
pub(crate) struct Facts<'a> {
    pub address: &'a str,
    pub ip: Option<std::net::IpAddr>,
    pub types: &'a [String],
    pub scopes: &'a [String],
    pub xaddrs: &'a [String],
    pub info: &'a Info,
}

/// The UUID in an endpoint address.
pub(crate) fn uuid(address: &str) -> &str {
    let lower = address.get(..9).map(str::to_ascii_lowercase);
    if lower.as_deref() == Some("urn:uuid:") {
        &address[9..]
    } else {
        address
    }
}

pub(crate) fn device(facts: &Facts<'_>) -> Device {
    let mut properties = BTreeMap::new();
    let mut put = |name: &str, value: Option<&str>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            properties.insert(name.to_owned(), value.to_owned());
        }
    };
    let info = facts.info;
    put(UUID, Some(uuid(facts.address)));
    put(XADDRS, Some(&facts.xaddrs.join(" ")));
    put(SCOPES, Some(&facts.scopes.join(" ")));
    put(TYPES, Some(&facts.types.join(" ")));
    put(IP_ADDRESS, facts.ip.map(|ip| ip.to_string()).as_deref());
    put(DEVICE_SERVICE_URL, info.xaddr.as_deref());
    put(MAC_ADDRESS, info.mac.as_deref());
    put(MEDIA_SERVICE_URL, info.media_xaddr.as_deref());
    if let Some(device) = &info.device {
        put(MANUFACTURER, device.manufacturer.as_deref());
        put(MODEL, device.model.as_deref());
        put(FIRMWARE_VERSION, device.firmware_version.as_deref());
        put(SERIAL_NUMBER, device.serial_number.as_deref());
        put(HARDWARE_ID, device.hardware_id.as_deref());
    }
    if info.profiles_read {
        put(PROFILE_COUNT, Some(&info.streams.len().to_string()));
    }
    put(
        STREAM_URI,
        info.streams.first().and_then(|s| s.uri.as_deref()),
    );
    for (index, stream) in info.streams.iter().enumerate() {
        let name = |field: &str| format!("{PROFILE_PREFIX}{index}_{field}");
        put(&name("TOKEN"), Some(&stream.profile.token));
        put(&name("NAME"), stream.profile.name.as_deref());
        put(&name("ENCODING"), stream.profile.encoding.as_deref());
        put(&name("RESOLUTION"), stream.profile.resolution.as_deref());
        put(&name("STREAM_URI"), stream.uri.as_deref());
    }
    put(ERROR, info.error.as_deref());
    Device {
        id: facts.address.to_owned(),
        shared: true,
        properties,
        device_nodes: Vec::new(),
        mounts: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrogate::Stream;
    use crate::soap::{DeviceInformation, Profile};

    #[test]
    fn properties_of_a_described_camera() {
        let info = Info {
            xaddr: Some("http://10.0.0.5/onvif/device_service".into()),
            media_xaddr: Some("http://10.0.0.5/onvif/media_service".into()),
            device: Some(DeviceInformation {
                manufacturer: Some("Acme".into()),
                model: Some("C-1".into()),
                ..DeviceInformation::default()
            }),
            mac: Some("00:11:22:aa:bb:cc".into()),
            profiles_read: true,
            streams: vec![Stream {
                profile: Profile {
                    token: "main".into(),
                    name: Some("Main".into()),
                    encoding: Some("H264".into()),
                    resolution: Some("1920x1080".into()),
                },
                uri: Some("rtsp://10.0.0.5:554/main".into()),
            }],
            error: None,
        };
        let scopes = vec!["onvif://www.onvif.org/name/gate".to_owned()];
        let device = device(&Facts {
            address: "urn:uuid:3fa1fe68-b915-4053-a3e1-ac15a21f5f91",
            ip: "10.0.0.5".parse().ok(),
            types: &["dn:NetworkVideoTransmitter".to_owned()],
            scopes: &scopes,
            xaddrs: &["http://10.0.0.5/onvif/device_service".to_owned()],
            info: &info,
        });
        assert_eq!(device.id, "urn:uuid:3fa1fe68-b915-4053-a3e1-ac15a21f5f91");
        assert!(device.shared);
        let p = &device.properties;
        assert_eq!(p[UUID], "3fa1fe68-b915-4053-a3e1-ac15a21f5f91");
        assert_eq!(p[IP_ADDRESS], "10.0.0.5");
        assert_eq!(p[STREAM_URI], "rtsp://10.0.0.5:554/main");
        assert_eq!(p["ONVIF_PROFILE_0_RESOLUTION"], "1920x1080");
        assert_eq!(p[PROFILE_COUNT], "1");
        assert!(!p.contains_key(SERIAL_NUMBER) && !p.contains_key(ERROR));
        assert_eq!(uuid("urn:other:x"), "urn:other:x");
        assert_eq!(uuid("URN:UUID:ab"), "ab");
    }
}
