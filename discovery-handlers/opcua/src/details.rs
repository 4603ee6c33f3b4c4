//! The `details` of an opcua DeviceSet, validated into a [`Plan`]: whom to
//! ask, which applications to keep, and the bounds on every conversation.
//!
//! ```yaml
//! details:
//!   discoveryUrls: ["opc.tcp://10.0.0.5:4840/", "opc.tcp://lds.plant:4840/"]
//!   findServersOnNetwork: false          # also ask each URL (an LDS-ME) for FindServersOnNetwork
//!   applicationTypes: [server, clientAndServer]
//!   applicationNames: { include: ["Boiler*"], exclude: ["*Test*"] }
//!   applicationUris:  { exclude: ["urn:example:*"] }
//!   timeout: 5s                          # per server and request
//!   interval: 30s                        # between two looks
//!   concurrency: 16                      # servers asked at once
//!   maxServers: 1000                     # servers kept from one answer, and in all
//!   maxMessageSize: 1048576              # bytes a server may answer with
//!   session:                             # optional: also log in, with discovery.properties
//!     securityPolicy: Basic256Sha256     # as OPCUA_ENDPOINT_<n>_SECURITY_POLICY says
//!     securityMode: SignAndEncrypt
//!     required: true                     # only servers that accept the session are devices
//! ```
//!
//! `discovery.properties` may give `username` and `password` (a UserName
//! identity; anonymous without them) and `clientCertificate` and
//! `clientPrivateKey` (PEM; the application instance certificate a signed or
//! encrypted channel needs); they are read only with `session`.
//!
//! Every error names its field, e.g. `discoveryUrls[1]: "http://x/" is not
//! an opc.tcp URL (e.g. opc.tcp://10.0.0.5:4840/)`; `docs/handlers/opcua.md`
//! lists them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use ambit_discovery::{DiscoverRequest, DiscoveryError, fields};
use glob::Pattern;
use opcua::crypto::{PrivateKey, SecurityPolicy, X509};
use opcua::types::{ApplicationType, MessageSecurityMode};
use serde::Deserialize;

use crate::url::OpcUrl;

/// The default time one request to one server may take, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default time between the end of one look and the start of the next.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// The default number of servers asked at once.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// The most servers asked at once.
pub const MAX_CONCURRENCY: usize = 256;
/// The default number of servers kept from one answer, and in all.
pub const DEFAULT_MAX_SERVERS: usize = 1000;
/// The most `maxServers` may be.
pub const MAX_SERVERS: usize = 10_000;
/// The default largest message a server may answer with, in bytes.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;
/// The most discovery URLs one DeviceSet may name.
pub const MAX_DISCOVERY_URLS: usize = 256;

const MIN_MESSAGE_SIZE: usize = 64 << 10;
const MAX_MESSAGE_SIZE: usize = 64 << 20;
const MIN_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
const MIN_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Details {
    discovery_urls: Vec<String>,
    #[serde(default)]
    find_servers_on_network: bool,
    application_types: Option<Vec<String>>,
    #[serde(default)]
    application_names: FilterSpec,
    #[serde(default)]
    application_uris: FilterSpec,
    timeout: Option<String>,
    interval: Option<String>,
    concurrency: Option<usize>,
    max_servers: Option<usize>,
    max_message_size: Option<usize>,
    session: Option<SessionSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SessionSpec {
    security_policy: Option<String>,
    security_mode: Option<String>,
    application_uri: Option<String>,
    #[serde(default)]
    required: bool,
}

/// The handler's application URI as an OPC UA client, unless
/// `session.applicationUri` gives the one its client certificate names.
pub const DEFAULT_APPLICATION_URI: &str = "urn:ambit.dev:discovery:opcua";

/// The property names the handler reads (with `session` only).
pub const USERNAME: &str = "username";
/// See [`USERNAME`].
pub const PASSWORD: &str = "password";
/// See [`USERNAME`].
pub const CLIENT_CERTIFICATE: &str = "clientCertificate";
/// See [`USERNAME`].
pub const CLIENT_PRIVATE_KEY: &str = "clientPrivateKey";
const PROPERTIES: [&str; 4] = [USERNAME, PASSWORD, CLIENT_CERTIFICATE, CLIENT_PRIVATE_KEY];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterSpec {
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
}

/// Include and exclude lists of shell globs (`*`, `?`, `[a-z]`), matched
/// case-sensitively against the whole value.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
}

impl Filter {
    /// Whether `value` passes: it matches some `include` pattern (or there
    /// is none) and no `exclude` pattern.
    pub(crate) fn passes(&self, value: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(value)))
            && !self.exclude.iter().any(|p| p.matches(value))
    }
}

/// Everything one DeviceSet's discovery needs, validated.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub discovery_urls: Vec<OpcUrl>,
    pub find_servers_on_network: bool,
    pub application_types: Vec<ApplicationType>,
    pub names: Filter,
    pub uris: Filter,
    pub timeout: Duration,
    pub interval: Duration,
    pub concurrency: usize,
    pub max_servers: usize,
    pub max_message_size: usize,
    pub session: Option<SessionPlan>,
}

/// How to open a session with each server found.
#[derive(Debug, Clone)]
pub(crate) struct SessionPlan {
    pub policy: SecurityPolicy,
    pub mode: MessageSecurityMode,
    pub required: bool,
    pub application_uri: String,
    pub credentials: Credentials,
}

/// Credentials from `discovery.properties`. `Debug` shows none of them.
#[derive(Clone, Default)]
pub(crate) struct Credentials {
    /// User name and password.
    pub user: Option<(String, String)>,
    /// The client's application instance certificate and private key, PEM.
    pub certificate: Option<(String, String)>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user.as_ref().map(|_| "<redacted>"))
            .field(
                "certificate",
                &self.certificate.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Plan {
    /// Whether an application of this type, name and URI is wanted.
    pub(crate) fn accepts(&self, kind: ApplicationType, name: &str, uri: &str) -> bool {
        self.application_types.contains(&kind) && self.names.passes(name) && self.uris.passes(uri)
    }
}

/// Validates a request's details into a [`Plan`].
pub(crate) fn plan(request: &DiscoverRequest) -> Result<Plan, DiscoveryError> {
    let details: Details = request.details_as()?;
    validate(details, &request.properties).map_err(DiscoveryError::InvalidDetails)
}

fn validate(details: Details, properties: &BTreeMap<String, String>) -> Result<Plan, String> {
    if details.discovery_urls.is_empty() {
        return Err(
            "discoveryUrls: name at least one server or Local Discovery Server (e.g. opc.tcp://10.0.0.5:4840/)"
                .to_owned(),
        );
    }
    if details.discovery_urls.len() > MAX_DISCOVERY_URLS {
        return Err(format!(
            "discoveryUrls: {} URLs, at most {MAX_DISCOVERY_URLS} are allowed; register the servers with a Local Discovery Server and name that instead",
            details.discovery_urls.len()
        ));
    }
    let mut discovery_urls = Vec::new();
    for (index, text) in details.discovery_urls.iter().enumerate() {
        let url = OpcUrl::parse(text).map_err(|why| format!("discoveryUrls[{index}]: {why}"))?;
        if !discovery_urls.contains(&url) {
            discovery_urls.push(url);
        }
    }
    let application_types = match details.application_types {
        None => vec![ApplicationType::Server, ApplicationType::ClientAndServer],
        Some(types) if types.is_empty() => {
            return Err(
                "applicationTypes: name at least one of server, clientAndServer, discoveryServer, or leave it out"
                    .to_owned(),
            );
        }
        Some(types) => types
            .iter()
            .enumerate()
            .map(|(index, name)| {
                application_type(name).map_err(|why| format!("applicationTypes[{index}]: {why}"))
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let timeout = duration("timeout", details.timeout, DEFAULT_TIMEOUT)?;
    if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&timeout) {
        return Err(format!(
            "timeout: {} is out of range ({} to {})",
            humantime::format_duration(timeout),
            humantime::format_duration(MIN_TIMEOUT),
            humantime::format_duration(MAX_TIMEOUT)
        ));
    }
    let interval = duration("interval", details.interval, DEFAULT_INTERVAL)?;
    if interval < MIN_INTERVAL {
        return Err(format!(
            "interval: {} is too short (at least {})",
            humantime::format_duration(interval),
            humantime::format_duration(MIN_INTERVAL)
        ));
    }
    let concurrency = bounded(
        "concurrency",
        details.concurrency,
        DEFAULT_CONCURRENCY,
        1,
        MAX_CONCURRENCY,
    )?;
    let max_servers = bounded(
        "maxServers",
        details.max_servers,
        DEFAULT_MAX_SERVERS,
        1,
        MAX_SERVERS,
    )?;
    let max_message_size = bounded(
        "maxMessageSize",
        details.max_message_size,
        DEFAULT_MAX_MESSAGE_SIZE,
        MIN_MESSAGE_SIZE,
        MAX_MESSAGE_SIZE,
    )?;
    Ok(Plan {
        discovery_urls,
        find_servers_on_network: details.find_servers_on_network,
        application_types,
        names: filter("applicationNames", details.application_names)?,
        uris: filter("applicationUris", details.application_uris)?,
        timeout,
        interval,
        concurrency,
        max_servers,
        max_message_size,
        session: session(details.session, properties)?,
    })
}

/// The session section and the properties it reads.
fn session(
    spec: Option<SessionSpec>,
    properties: &BTreeMap<String, String>,
) -> Result<Option<SessionPlan>, String> {
    if let Some(unknown) = properties
        .keys()
        .find(|key| !PROPERTIES.contains(&key.as_str()))
    {
        return Err(format!(
            "properties: the opcua handler reads no property {unknown:?} (it reads {})",
            PROPERTIES.join(", ")
        ));
    }
    let Some(spec) = spec else {
        return match properties.keys().next() {
            Some(name) => Err(format!(
                "properties: {name:?} is read only to open a session; add details.session, or remove the property"
            )),
            None => Ok(None),
        };
    };
    let policy_name = spec.security_policy.as_deref().unwrap_or("None");
    let policy = SecurityPolicy::from_uri(&format!(
        "http://opcfoundation.org/UA/SecurityPolicy#{policy_name}"
    ));
    if policy == SecurityPolicy::Unknown {
        return Err(format!(
            "session.securityPolicy: {policy_name:?} is not a security policy (None, Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss, Basic256, Basic128Rsa15)"
        ));
    }
    let mode = match spec.security_mode.as_deref().unwrap_or("None") {
        "None" => MessageSecurityMode::None,
        "Sign" => MessageSecurityMode::Sign,
        "SignAndEncrypt" => MessageSecurityMode::SignAndEncrypt,
        other => {
            return Err(format!(
                "session.securityMode: {other:?} is not a security mode (None, Sign, SignAndEncrypt)"
            ));
        }
    };
    if (policy == SecurityPolicy::None) != (mode == MessageSecurityMode::None) {
        return Err(
            "session: securityPolicy None goes with securityMode None, and any other policy with Sign or SignAndEncrypt"
                .to_owned(),
        );
    }
    let pair = |first: &str, second: &str| match (properties.get(first), properties.get(second)) {
        (Some(a), Some(b)) => Ok(Some((a.clone(), b.clone()))),
        (None, None) => Ok(None),
        _ => Err(format!(
            "properties: give both {first} and {second}, or neither"
        )),
    };
    let user = pair(USERNAME, PASSWORD)?;
    let certificate = pair(CLIENT_CERTIFICATE, CLIENT_PRIVATE_KEY)?;
    let application_uri = spec
        .application_uri
        .unwrap_or_else(|| DEFAULT_APPLICATION_URI.to_owned());
    if let Some((cert, key)) = &certificate {
        let cert = X509::from_pem(cert.as_bytes()).map_err(|_| {
            format!("properties: {CLIENT_CERTIFICATE} is not a PEM X.509 certificate (-----BEGIN CERTIFICATE-----)")
        })?;
        PrivateKey::from_pem(key.as_bytes()).map_err(|_| {
            format!("properties: {CLIENT_PRIVATE_KEY} is not a PEM RSA private key (-----BEGIN PRIVATE KEY-----)")
        })?;
        // Servers check that the client's certificate names the application
        // URI the client gives.
        if cert.is_application_uri_valid(&application_uri).is_err() {
            return Err(format!(
                "session.applicationUri: the client certificate does not name {application_uri:?} as its URI (subjectAltName); give the URI it names"
            ));
        }
    } else if mode != MessageSecurityMode::None {
        return Err(format!(
            "session: securityMode {mode:?} needs a client certificate: give the properties {CLIENT_CERTIFICATE} and {CLIENT_PRIVATE_KEY} (PEM)"
        ));
    }
    Ok(Some(SessionPlan {
        policy,
        mode,
        required: spec.required,
        application_uri,
        credentials: Credentials { user, certificate },
    }))
}

fn application_type(name: &str) -> Result<ApplicationType, String> {
    match name.to_ascii_lowercase().as_str() {
        "server" => Ok(ApplicationType::Server),
        "clientandserver" => Ok(ApplicationType::ClientAndServer),
        "discoveryserver" => Ok(ApplicationType::DiscoveryServer),
        "client" => Err(
            "client applications serve no endpoints and cannot be devices; use server, clientAndServer or discoveryServer"
                .to_owned(),
        ),
        _ => Err(format!(
            "{name:?} is not an application type (server, clientAndServer, discoveryServer)"
        )),
    }
}

/// A duration field; its bounds are checked by the caller, with their reasons.
fn duration(field: &str, text: Option<String>, default: Duration) -> Result<Duration, String> {
    fields::duration(
        field,
        text.as_deref(),
        default,
        Duration::ZERO..=Duration::MAX,
    )
}

fn bounded(
    field: &str,
    value: Option<usize>,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, String> {
    let value = value.unwrap_or(default);
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{field}: {value} is out of range ({min} to {max})"))
    }
}

fn filter(field: &str, spec: FilterSpec) -> Result<Filter, String> {
    Ok(Filter {
        include: fields::globs(field, "include", &spec.include)?,
        exclude: fields::globs(field, "exclude", &spec.exclude)?,
    })
}

#[cfg(test)]
#[path = "details_tests.rs"]
mod tests;
