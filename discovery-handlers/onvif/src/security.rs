//! WS-Security UsernameToken with PasswordDigest, as ONVIF cameras expect
//! it (ONVIF Core, "User-based access control"; WSS UsernameToken Profile 1.0):
//!
//! ```text
//!   Nonce   = 16 random bytes (sent base64)
//!   Created = the camera's idea of now (UTC, our clock + the camera's offset)
//!   Digest  = base64( SHA-1( Nonce ++ Created ++ Password ) )
//! ```
//!
//! The password itself never goes over the wire.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use ring::rand::{SecureRandom, SystemRandom};

use crate::xml;

const NS_WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
const NS_WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
const PASSWORD_DIGEST: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest";
const BASE64_BINARY: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary";

/// A user name and password for one camera.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The digest of the UsernameToken Profile: base64(SHA-1(nonce + created + password)).
pub(crate) fn password_digest(nonce: &[u8], created: &str, password: &str) -> String {
    let mut input = Vec::with_capacity(nonce.len() + created.len() + password.len());
    input.extend_from_slice(nonce);
    input.extend_from_slice(created.as_bytes());
    input.extend_from_slice(password.as_bytes());
    STANDARD.encode(digest(&SHA1_FOR_LEGACY_USE_ONLY, &input))
}

/// A `wsse:Security` header for `credentials`, made at `now` as the camera
/// counts time (see [`camera_time`]).
pub(crate) fn header(credentials: &Credentials, now: SystemTime) -> Result<String, String> {
    let mut nonce = [0u8; 16];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| "the system's random number generator failed".to_owned())?;
    Ok(header_with(credentials, &nonce, now))
}

fn header_with(credentials: &Credentials, nonce: &[u8], now: SystemTime) -> String {
    let created = humantime::format_rfc3339_seconds(now).to_string();
    let digest = password_digest(nonce, &created, &credentials.password);
    format!(
        r#"<wsse:Security s:mustUnderstand="1" xmlns:wsse="{NS_WSSE}" xmlns:wsu="{NS_WSU}"><wsse:UsernameToken><wsse:Username>{user}</wsse:Username><wsse:Password Type="{PASSWORD_DIGEST}">{digest}</wsse:Password><wsse:Nonce EncodingType="{BASE64_BINARY}">{nonce}</wsse:Nonce><wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security>"#,
        user = xml::escape(&credentials.username),
        nonce = STANDARD.encode(nonce),
    )
}

/// Our clock moved by the camera's offset (camera time minus ours, in
/// seconds): cameras reject tokens whose Created is far from their clock,
/// and many cameras' clocks are wrong.
pub(crate) fn camera_time(offset_seconds: i64) -> SystemTime {
    let now = SystemTime::now();
    let shift = Duration::from_secs(offset_seconds.unsigned_abs());
    let moved = if offset_seconds >= 0 {
        now.checked_add(shift)
    } else {
        now.checked_sub(shift)
    };
    moved.unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_follows_the_profile() {
        // Known answer, computed with Python's hashlib:
        // base64(sha1(b"0123456789abcdef" + b"2026-01-02T03:04:05Z" + b"secret")).
        let digest = password_digest(b"0123456789abcdef", "2026-01-02T03:04:05Z", "secret");
        assert_eq!(digest, "wjpInr7UL0thZOXWecrqoApQnDY=");
    }

    #[test]
    fn header_carries_token_not_password() {
        let credentials = Credentials {
            username: "ad<min".into(),
            password: "hunter2".into(),
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let header = header_with(&credentials, &[7; 16], at);
        assert!(header.contains("<wsse:Username>ad&lt;min</wsse:Username>"));
        assert!(header.contains("<wsu:Created>2023-11-14T22:13:20Z</wsu:Created>"));
        assert!(!header.contains("hunter2"));
        assert!(!format!("{credentials:?}").contains("hunter2"));
        let shifted = camera_time(-3600);
        assert!(shifted < SystemTime::now());
    }
}
