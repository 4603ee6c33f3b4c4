//! SOAP over HTTP/1.1: one POST per connection, through hyper's low-level
//! client, bounded in time and size.
//!
//! hyper rather than a full client (reqwest) because the handler needs
//! only this, and hyper is already in the agent's build through tonic and
//! kube; a connection per request because a camera is asked a handful of
//! questions per discovery, and a pool would only hold sockets open.
//! Only `http://` XAddrs are used (cameras with HTTPS offer HTTP beside it,
//! and their certificates are self-signed).

use std::time::Duration;

use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a POST failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HttpError {
    /// The URL cannot be used.
    Url(String),
    /// No connection, or it broke.
    Transport(String),
    /// No answer within the timeout.
    Timeout(Duration),
    /// HTTP 401/403: the camera wants (other) credentials at the HTTP level.
    Unauthorized(StatusCode),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url(why) => write!(f, "unusable URL: {why}"),
            Self::Transport(why) => write!(f, "HTTP request failed: {why}"),
            Self::Timeout(after) => write!(f, "no answer within {after:?}"),
            Self::Unauthorized(status) => write!(f, "HTTP {status}"),
        }
    }
}

/// Checks that `url` is an `http://` URL with a host; returns it parsed.
pub(crate) fn check_url(url: &str) -> Result<Uri, HttpError> {
    let uri: Uri = url
        .parse()
        .map_err(|error| HttpError::Url(format!("{url:?}: {error}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(HttpError::Url(format!("{url:?} is not an http:// URL")));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(HttpError::Url(format!("{url:?} has no host")));
    }
    Ok(uri)
}

/// POSTs a SOAP envelope; the answer's status and body (SOAP faults come
/// with 400 or 500, so any status with a body is returned, except 401/403).
pub(crate) async fn post(
    url: &str,
    action: &str,
    envelope: String,
    timeout: Duration,
    max_len: usize,
) -> Result<(StatusCode, String), HttpError> {
    let uri = check_url(url)?;
    match tokio::time::timeout(timeout, exchange(uri, action, envelope, max_len)).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout(timeout)),
    }
}

async fn exchange(
    uri: Uri,
    action: &str,
    envelope: String,
    max_len: usize,
) -> Result<(StatusCode, String), HttpError> {
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|error| HttpError::Transport(format!("connect to {host}:{port}: {error}")))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| HttpError::Transport(error.to_string()))?;
    let driver = tokio::spawn(connection);

    let authority = uri.authority().map(|a| a.as_str().to_owned());
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, authority.unwrap_or_default())
        .header(
            header::CONTENT_TYPE,
            format!("application/soap+xml; charset=utf-8; action=\"{action}\""),
        )
        .body(Full::new(Bytes::from(envelope)))
        .map_err(|error| HttpError::Url(error.to_string()))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| HttpError::Transport(error.to_string()))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(HttpError::Unauthorized(status));
        }
        let body = Limited::new(response.into_body(), max_len)
            .collect()
            .await
            .map_err(|error| HttpError::Transport(format!("reading the answer: {error}")))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        Ok((status, text))
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_with_a_host() {
        assert!(check_url("http://10.0.0.5/onvif/device_service").is_ok());
        assert!(check_url("http://[fd00::5]:8080/onvif/device_service").is_ok());
        for bad in ["https://10.0.0.5/x", "ftp://a/b", "not a url", "/relative"] {
            assert!(
                matches!(check_url(bad), Err(HttpError::Url(_))),
                "{bad} accepted"
            );
        }
    }
}
