//! Asking one camera what it is, over its device service:
//!
//! ```text
//!   for each http:// XAddr until one answers:
//!     GetSystemDateAndTime (no auth) ──► clock offset for the token's Created
//!     GetDeviceInformation ────────────► manufacturer, model, firmware, serial
//!     GetCapabilities(Media) ──────────► media service URL (else the device URL)
//!     GetNetworkInterfaces ────────────► MAC (optional: failures ignored)
//!     GetProfiles, GetStreamUri each ──► profiles and RTSP URIs   (if `streams`)
//! ```
//!
//! Every request is bounded by the DeviceSet's timeout. What fails is
//! written into [`Info::error`] in words an operator can act on; nothing
//! here fails discovery as a whole.

use std::time::{Duration, SystemTime};

use tracing::debug;

use crate::http::{self, HttpError};
use crate::security::{self, Credentials};
use crate::soap::{self, AnswerError, DeviceInformation, Profile, Request};

/// A profile and its stream URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stream {
    pub profile: Profile,
    pub uri: Option<String>,
}

/// What one interrogation learnt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Info {
    /// The device service URL that answered.
    pub xaddr: Option<String>,
    pub media_xaddr: Option<String>,
    pub device: Option<DeviceInformation>,
    pub mac: Option<String>,
    /// Whether GetProfiles answered (so an empty `streams` means none).
    pub profiles_read: bool,
    pub streams: Vec<Stream>,
    pub error: Option<String>,
}

/// How to ask.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    pub credentials: Option<Credentials>,
    pub timeout: Duration,
    pub streams: bool,
}

/// One failed call.
#[derive(Debug)]
enum CallError {
    Http(HttpError),
    Answer(AnswerError),
}

impl CallError {
    fn not_authorized(&self) -> bool {
        match self {
            Self::Http(HttpError::Unauthorized(_)) => true,
            Self::Answer(AnswerError::Fault(fault)) => fault.is_not_authorized(),
            _ => false,
        }
    }
}

struct Session<'a> {
    ask: &'a Ask,
    /// The camera's clock minus ours, in seconds.
    offset: i64,
}

impl Session<'_> {
    async fn call<T>(
        &self,
        url: &str,
        request: &Request,
        expected: &str,
        authenticate: bool,
        read: impl FnOnce(roxmltree::Node<'_, '_>) -> Option<T>,
    ) -> Result<T, CallError> {
        let security = match (&self.ask.credentials, authenticate) {
            (Some(credentials), true) => Some(
                security::header(credentials, security::camera_time(self.offset))
                    .map_err(|why| CallError::Http(HttpError::Transport(why)))?,
            ),
            _ => None,
        };
        let envelope = request.envelope(security.as_deref());
        let (_, body) = http::post(
            url,
            &request.action,
            envelope,
            self.ask.timeout,
            soap::MAX_RESPONSE,
        )
        .await
        .map_err(CallError::Http)?;
        soap::answer(&body, expected, read).map_err(CallError::Answer)
    }
}

/// Interrogates the camera at `xaddrs` (its device service URLs).
pub(crate) async fn interrogate(address: &str, xaddrs: &[String], ask: &Ask) -> Info {
    let usable: Vec<&String> = xaddrs
        .iter()
        .filter(|x| http::check_url(x).is_ok())
        .collect();
    if usable.is_empty() {
        return Info {
            error: Some(format!(
                "the camera announced no usable http:// device service URL (XAddrs: {:?})",
                xaddrs.join(" ")
            )),
            ..Info::default()
        };
    }
    let mut last_error = None;
    for url in usable {
        match describe(url, ask).await {
            Ok(info) => return info,
            Err(why) => {
                debug!(camera = %address, %url, %why, "device service did not answer");
                last_error = Some(why);
            }
        }
    }
    Info {
        error: last_error,
        ..Info::default()
    }
}

/// Describes the camera through one device service URL; `Err` when that
/// URL does not answer at all (so the next one is tried).
async fn describe(url: &str, ask: &Ask) -> Result<Info, String> {
    let mut session = Session { ask, offset: 0 };
    let clock = session
        .call(
            url,
            &soap::get_system_date_and_time(),
            "GetSystemDateAndTimeResponse",
            false,
            soap::system_time,
        )
        .await;
    match clock {
        Ok(camera_now) => session.offset = offset(camera_now, SystemTime::now()),
        // Not answering at all: try the next URL.
        Err(CallError::Http(
            error @ (HttpError::Transport(_) | HttpError::Timeout(_) | HttpError::Url(_)),
        )) => {
            return Err(format!("GetSystemDateAndTime at {url}: {error}"));
        }
        // It answers, just not this (or wants credentials for it): go on.
        Err(_) => {}
    }
    let mut info = Info {
        xaddr: Some(url.to_owned()),
        ..Info::default()
    };
    let device = session
        .call(
            url,
            &soap::get_device_information(),
            "GetDeviceInformationResponse",
            true,
            soap::device_information,
        )
        .await;
    match device {
        Ok(device) => info.device = Some(device),
        Err(error) => {
            info.error = Some(explain("GetDeviceInformation", &error, ask));
            // Without access to the device service nothing else will work.
            if error.not_authorized() {
                return Ok(info);
            }
        }
    }
    let media = session
        .call(
            url,
            &soap::get_capabilities(),
            "GetCapabilitiesResponse",
            true,
            soap::media_xaddr,
        )
        .await
        .ok()
        .filter(|m| http::check_url(m).is_ok());
    info.media_xaddr = media.clone();
    info.mac = session
        .call(
            url,
            &soap::get_network_interfaces(),
            "GetNetworkInterfacesResponse",
            true,
            soap::mac_address,
        )
        .await
        .ok();
    if ask.streams {
        let media_url = media.as_deref().unwrap_or(url);
        match session
            .call(
                media_url,
                &soap::get_profiles(),
                "GetProfilesResponse",
                true,
                soap::profiles,
            )
            .await
        {
            Ok(profiles) => {
                info.profiles_read = true;
                for profile in profiles {
                    let uri = session
                        .call(
                            media_url,
                            &soap::get_stream_uri(&profile.token),
                            "GetStreamUriResponse",
                            true,
                            soap::stream_uri,
                        )
                        .await;
                    let uri = match uri {
                        Ok(uri) => Some(uri),
                        Err(error) => {
                            debug!(profile = %profile.token, error = %describe_error(&error), "no stream URI");
                            None
                        }
                    };
                    info.streams.push(Stream { profile, uri });
                }
            }
            Err(error) if info.error.is_none() => {
                info.error = Some(explain("GetProfiles", &error, ask));
            }
            Err(_) => {}
        }
    }
    Ok(info)
}

/// The camera's clock minus ours, in whole seconds.
fn offset(camera: SystemTime, ours: SystemTime) -> i64 {
    match camera.duration_since(ours) {
        Ok(ahead) => i64::try_from(ahead.as_secs()).unwrap_or(i64::MAX),
        Err(behind) => -i64::try_from(behind.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn describe_error(error: &CallError) -> String {
    match error {
        CallError::Http(error) => error.to_string(),
        CallError::Answer(error) => error.to_string(),
    }
}

/// An operator's explanation of a failed call.
fn explain(operation: &str, error: &CallError, ask: &Ask) -> String {
    let what = describe_error(error);
    if !error.not_authorized() {
        return format!("{operation} failed: {what}");
    }
    match &ask.credentials {
        None => format!(
            "{operation}: the camera requires credentials ({what}); give ONVIF_USERNAME and ONVIF_PASSWORD (or per camera ONVIF_USERNAME_<UUID>) in the DeviceSet's discovery properties"
        ),
        Some(credentials) => format!(
            "{operation}: the camera refused the credentials of user {:?} ({what}); check the password in the DeviceSet's discovery properties",
            credentials.username
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_offsets() {
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(offset(base + Duration::from_secs(90), base), 90);
        assert_eq!(offset(base - Duration::from_secs(3600), base), -3600);
    }

    #[tokio::test]
    async fn no_usable_url_is_said_so() {
        let ask = Ask {
            credentials: None,
            timeout: Duration::from_millis(100),
            streams: true,
        };
        let info = interrogate("urn:uuid:x", &["https://10.0.0.1/onvif".into()], &ask).await;
        assert!(info.error.unwrap().contains("no usable http://"));
        assert!(info.xaddr.is_none());
    }
}
