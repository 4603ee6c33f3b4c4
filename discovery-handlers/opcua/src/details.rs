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
//! ```
//!
//! Every error names its field, e.g. `discoveryUrls[1]: "http://x/" is not
//! an opc.tcp URL (e.g. opc.tcp://10.0.0.5:4840/)`; `docs/handlers/opcua.md`
//! lists them.

use std::time::Duration;

use ambit_discovery::{DiscoverRequest, DiscoveryError};
use glob::Pattern;
use opcua::types::ApplicationType;
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
}

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
    validate(details).map_err(DiscoveryError::InvalidDetails)
}

fn validate(details: Details) -> Result<Plan, String> {
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
    })
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

fn duration(field: &str, text: Option<String>, default: Duration) -> Result<Duration, String> {
    match text {
        None => Ok(default),
        Some(text) => humantime::parse_duration(&text).map_err(|error| {
            format!("{field}: {text:?} is not a duration (e.g. 500ms, 5s, 1m): {error}")
        }),
    }
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
    let patterns = |list: &str, globs: Vec<String>| {
        globs
            .iter()
            .enumerate()
            .map(|(index, glob)| {
                Pattern::new(glob).map_err(|error| {
                    format!("{field}.{list}[{index}]: {glob:?} is not a valid glob: {error}")
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Filter {
        include: patterns("include", spec.include)?,
        exclude: patterns("exclude", spec.exclude)?,
    })
}

#[cfg(test)]
#[path = "details_tests.rs"]
mod tests;
