//! The ONVIF operations the handler calls, as SOAP 1.2 envelopes, and the
//! parsers of their answers.
//!
//! ```text
//!   device service: GetSystemDateAndTime (no auth) · GetDeviceInformation ·
//!                   GetCapabilities (→ media XAddr) · GetNetworkInterfaces (→ MAC)
//!   media service:  GetProfiles · GetStreamUri (RTP-Unicast over RTSP)
//! ```
//!
//! Answers are matched by local name (cameras bind the ONVIF namespaces to
//! many prefixes); a SOAP Fault becomes [`Fault`], with the subcode
//! (`ter:NotAuthorized`, …) kept so the caller can say what went wrong.

use std::time::SystemTime;

use roxmltree::Node;

use crate::xml;

const NS_DEVICE: &str = "http://www.onvif.org/ver10/device/wsdl";
const NS_MEDIA: &str = "http://www.onvif.org/ver10/media/wsdl";
const NS_SCHEMA: &str = "http://www.onvif.org/ver10/schema";

/// The most bytes read from one HTTP answer.
pub(crate) const MAX_RESPONSE: usize = 1 << 20;
/// The most profiles read from GetProfiles.
pub(crate) const MAX_PROFILES: usize = 16;

/// A request: its SOAP action and its envelope builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub action: String,
    body: String,
}

impl Request {
    fn new(namespace: &str, operation: &str, inner: &str) -> Self {
        Self {
            action: format!("{namespace}/{operation}"),
            body: format!(r#"<{operation} xmlns="{namespace}">{inner}</{operation}>"#),
        }
    }

    /// The whole envelope, with `security` (a `wsse:Security` header) if given.
    pub(crate) fn envelope(&self, security: Option<&str>) -> String {
        let header = security
            .map(|s| format!("<s:Header>{s}</s:Header>"))
            .unwrap_or_default();
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">{header}<s:Body>{}</s:Body></s:Envelope>"#,
            self.body
        )
    }
}

pub(crate) fn get_system_date_and_time() -> Request {
    Request::new(NS_DEVICE, "GetSystemDateAndTime", "")
}

pub(crate) fn get_device_information() -> Request {
    Request::new(NS_DEVICE, "GetDeviceInformation", "")
}

pub(crate) fn get_capabilities() -> Request {
    Request::new(NS_DEVICE, "GetCapabilities", "<Category>Media</Category>")
}

pub(crate) fn get_network_interfaces() -> Request {
    Request::new(NS_DEVICE, "GetNetworkInterfaces", "")
}

pub(crate) fn get_profiles() -> Request {
    Request::new(NS_MEDIA, "GetProfiles", "")
}

pub(crate) fn get_stream_uri(profile_token: &str) -> Request {
    let inner = format!(
        r#"<StreamSetup><Stream xmlns="{NS_SCHEMA}">RTP-Unicast</Stream><Transport xmlns="{NS_SCHEMA}"><Protocol>RTSP</Protocol></Transport></StreamSetup><ProfileToken>{}</ProfileToken>"#,
        xml::escape(profile_token)
    );
    Request::new(NS_MEDIA, "GetStreamUri", &inner)
}

/// A SOAP Fault a camera answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    /// The innermost subcode's value (`ter:NotAuthorized`), else the code.
    pub code: String,
    pub reason: String,
}

impl Fault {
    /// Whether the camera refused the credentials (or their absence).
    pub(crate) fn is_not_authorized(&self) -> bool {
        let code = self.code.rsplit(':').next().unwrap_or_default();
        let reason = self.reason.to_ascii_lowercase();
        matches!(
            code,
            "NotAuthorized" | "FailedAuthentication" | "InvalidSecurity"
        ) || ["auth", "security", "credential", "password"]
            .iter()
            .any(|word| reason.contains(word))
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SOAP fault {}", self.code)?;
        if !self.reason.is_empty() {
            write!(f, ": {}", self.reason)?;
        }
        Ok(())
    }
}

/// Why an answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AnswerError {
    Fault(Fault),
    Malformed(String),
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fault(fault) => fault.fmt(f),
            Self::Malformed(why) => write!(f, "unusable answer: {why}"),
        }
    }
}

/// Parses an answer and hands its Body's first element to `read`.
pub(crate) fn answer<T>(
    text: &str,
    expected: &str,
    read: impl FnOnce(Node<'_, '_>) -> Option<T>,
) -> Result<T, AnswerError> {
    let document = xml::parse(text, MAX_RESPONSE).map_err(AnswerError::Malformed)?;
    let body = xml::body(&document).map_err(AnswerError::Malformed)?;
    let Some(first) = body.children().find(Node::is_element) else {
        return Err(AnswerError::Malformed("empty SOAP Body".into()));
    };
    if first.tag_name().name() == "Fault" {
        return Err(AnswerError::Fault(fault(first)));
    }
    if first.tag_name().name() != expected {
        return Err(AnswerError::Malformed(format!(
            "expected {expected}, got {}",
            first.tag_name().name()
        )));
    }
    read(first).ok_or_else(|| AnswerError::Malformed(format!("{expected} lacks required fields")))
}

fn fault(node: Node<'_, '_>) -> Fault {
    // SOAP 1.2: Code/Value, Code/Subcode/Value, ... ; SOAP 1.1: faultcode.
    let mut code = xml::path(node, &["Code", "Value"]).and_then(xml::text);
    let mut level = xml::child(node, "Code");
    for _ in 0..8 {
        let Some(sub) = level.and_then(|l| xml::child(l, "Subcode")) else {
            break;
        };
        if let Some(value) = xml::child_text(sub, "Value") {
            code = Some(value);
        }
        level = Some(sub);
    }
    let code = code
        .or_else(|| xml::child_text(node, "faultcode"))
        .unwrap_or_else(|| "unknown".into());
    let reason = xml::path(node, &["Reason", "Text"])
        .and_then(xml::text)
        .or_else(|| xml::child_text(node, "faultstring"))
        .unwrap_or_default();
    Fault { code, reason }
}

/// The camera's clock from GetSystemDateAndTimeResponse (its UTC time).
pub(crate) fn system_time(node: Node<'_, '_>) -> Option<SystemTime> {
    let utc = xml::path(node, &["SystemDateAndTime", "UTCDateTime"])?;
    let number = |parent: &str, field: &str| -> Option<u32> {
        xml::path(utc, &[parent, field])
            .and_then(xml::text)?
            .parse()
            .ok()
    };
    let stamp = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        number("Date", "Year")?,
        number("Date", "Month")?,
        number("Date", "Day")?,
        number("Time", "Hour")?,
        number("Time", "Minute")?,
        number("Time", "Second")?,
    );
    humantime::parse_rfc3339(&stamp).ok()
}

/// What GetDeviceInformation tells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeviceInformation {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub firmware_version: Option<String>,
    pub serial_number: Option<String>,
    pub hardware_id: Option<String>,
}

pub(crate) fn device_information(node: Node<'_, '_>) -> Option<DeviceInformation> {
    Some(DeviceInformation {
        manufacturer: xml::child_text(node, "Manufacturer"),
        model: xml::child_text(node, "Model"),
        firmware_version: xml::child_text(node, "FirmwareVersion"),
        serial_number: xml::child_text(node, "SerialNumber"),
        hardware_id: xml::child_text(node, "HardwareId"),
    })
}

/// The media service's XAddr from GetCapabilitiesResponse.
pub(crate) fn media_xaddr(node: Node<'_, '_>) -> Option<String> {
    xml::path(node, &["Capabilities", "Media", "XAddr"]).and_then(xml::text)
}

/// The first hardware address in GetNetworkInterfacesResponse, lower case.
pub(crate) fn mac_address(node: Node<'_, '_>) -> Option<String> {
    xml::children(node, "NetworkInterfaces")
        .filter_map(|interface| xml::path(interface, &["Info", "HwAddress"]).and_then(xml::text))
        .map(|mac| normalize_mac(&mac))
        .find(|mac| !mac.is_empty())
}

/// `00-11-22-AA-BB-CC` or `001122aabbcc` as `00:11:22:aa:bb:cc`; anything
/// that is not 6 bytes of hex comes back as given, in lower case.
pub(crate) fn normalize_mac(text: &str) -> String {
    let hex: String = text.chars().filter(char::is_ascii_hexdigit).collect();
    let separators = text
        .chars()
        .all(|c| c.is_ascii_hexdigit() || ":-.".contains(c));
    if hex.len() != 12 || !separators {
        return text.trim().to_ascii_lowercase();
    }
    let lower = hex.to_ascii_lowercase();
    lower
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// A media profile from GetProfilesResponse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Profile {
    pub token: String,
    pub name: Option<String>,
    pub encoding: Option<String>,
    pub resolution: Option<String>,
}

pub(crate) fn profiles(node: Node<'_, '_>) -> Option<Vec<Profile>> {
    Some(
        xml::children(node, "Profiles")
            .filter_map(|profile| {
                let token = profile.attribute("token")?.trim();
                if token.is_empty() || token.len() > xml::TEXT_LIMIT {
                    return None;
                }
                let video = xml::child(profile, "VideoEncoderConfiguration");
                let resolution = video
                    .and_then(|v| xml::child(v, "Resolution"))
                    .and_then(|r| {
                        Some(format!(
                            "{}x{}",
                            xml::child_text(r, "Width")?.parse::<u32>().ok()?,
                            xml::child_text(r, "Height")?.parse::<u32>().ok()?
                        ))
                    });
                Some(Profile {
                    token: token.to_owned(),
                    name: xml::child_text(profile, "Name"),
                    encoding: video.and_then(|v| xml::child_text(v, "Encoding")),
                    resolution,
                })
            })
            .take(MAX_PROFILES)
            .collect(),
    )
}

/// The URI in GetStreamUriResponse.
pub(crate) fn stream_uri(node: Node<'_, '_>) -> Option<String> {
    xml::path(node, &["MediaUri", "Uri"]).and_then(xml::text)
}

#[cfg(test)]
#[path = "soap_tests.rs"]
mod tests;
