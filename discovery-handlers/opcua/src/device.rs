//! A found server as an Ambit [`Device`]: its id and its properties.
//!
//! ```text
//!   server at opc.tcp://10.0.0.5:4840/   ──► id "opc.tcp://10.0.0.5:4840/", shared
//!     ApplicationDescription             ──► OPCUA_APPLICATION_{URI,NAME,TYPE}, OPCUA_PRODUCT_URI
//!     GetEndpoints, most secure first    ──► OPCUA_ENDPOINT_<n>_{URL,SECURITY_POLICY,...}
//!                                            OPCUA_SECURITY_POLICIES, OPCUA_SECURITY_MODES
//! ```
//!
//! The id is the server's discovery URL in one canonical spelling (lower-case
//! scheme and host, explicit port), so the same server is the same Device
//! after a restart of anything; two servers never share a URL, whereas
//! application URIs are often left at a toolkit's default.

use std::collections::{BTreeMap, BTreeSet};

use ambit_discovery::Device;
use opcua::types::{
    ApplicationDescription, ApplicationType, EndpointDescription, MessageSecurityMode,
    UserTokenType,
};

use crate::url::OpcUrl;

/// The server's discovery URL, as the handler reached it (also the id).
pub const DISCOVERY_URL: &str = "OPCUA_DISCOVERY_URL";
/// The discovery URL of the DeviceSet (a server or a Local Discovery
/// Server) through which the server was found.
pub const FOUND_VIA: &str = "OPCUA_FOUND_VIA";
/// The server's application URI.
pub const APPLICATION_URI: &str = "OPCUA_APPLICATION_URI";
/// The server's application name (its text, without locale).
pub const APPLICATION_NAME: &str = "OPCUA_APPLICATION_NAME";
/// `Server`, `ClientAndServer` or `DiscoveryServer`.
pub const APPLICATION_TYPE: &str = "OPCUA_APPLICATION_TYPE";
/// The server's product URI.
pub const PRODUCT_URI: &str = "OPCUA_PRODUCT_URI";
/// From the server's BuildInfo, read in a session (`details.session`).
pub const MANUFACTURER_NAME: &str = "OPCUA_MANUFACTURER_NAME";
/// From the server's BuildInfo, read in a session.
pub const PRODUCT_NAME: &str = "OPCUA_PRODUCT_NAME";
/// From the server's BuildInfo, read in a session.
pub const SOFTWARE_VERSION: &str = "OPCUA_SOFTWARE_VERSION";
/// From the server's BuildInfo, read in a session.
pub const BUILD_NUMBER: &str = "OPCUA_BUILD_NUMBER";
/// How many endpoints are listed (`OPCUA_ENDPOINT_0_...` up to `_<n-1>_`).
pub const ENDPOINT_COUNT: &str = "OPCUA_ENDPOINT_COUNT";
/// The distinct security policies of the endpoints, short names, comma-separated.
pub const SECURITY_POLICIES: &str = "OPCUA_SECURITY_POLICIES";
/// The distinct security modes of the endpoints, comma-separated.
pub const SECURITY_MODES: &str = "OPCUA_SECURITY_MODES";
/// Prefix of the per-endpoint properties: `OPCUA_ENDPOINT_<n>_URL`,
/// `_SECURITY_POLICY`, `_SECURITY_POLICY_URI`, `_SECURITY_MODE`,
/// `_SECURITY_LEVEL`, `_USER_TOKENS`.
pub const ENDPOINT_PREFIX: &str = "OPCUA_ENDPOINT_";
/// The most endpoints listed one by one (a server may offer more).
pub const MAX_LISTED_ENDPOINTS: usize = 32;

/// One server found: where it answers, what it said about itself, and
/// its endpoints.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub url: OpcUrl,
    pub via: OpcUrl,
    pub application: ApplicationDescription,
    pub endpoints: Vec<EndpointDescription>,
    /// BuildInfo properties read in a session; empty without one.
    pub build_info: BTreeMap<String, String>,
}

/// The Device for a found server.
pub(crate) fn device(found: &Found) -> Device {
    let application = &found.application;
    let mut properties = BTreeMap::new();
    let mut put = |key: &str, value: String| {
        properties.insert(key.to_owned(), value);
    };
    put(DISCOVERY_URL, found.url.to_string());
    put(FOUND_VIA, found.via.to_string());
    put(
        APPLICATION_URI,
        application.application_uri.as_ref().to_owned(),
    );
    put(
        APPLICATION_NAME,
        application.application_name.text.as_ref().to_owned(),
    );
    put(
        APPLICATION_TYPE,
        type_name(application.application_type).to_owned(),
    );
    put(PRODUCT_URI, application.product_uri.as_ref().to_owned());

    let mut endpoints: Vec<&EndpointDescription> = found
        .endpoints
        .iter()
        .filter(|endpoint| endpoint.security_mode != MessageSecurityMode::Invalid)
        .collect();
    // Most secure first, then in a fixed order, so the properties are the
    // same on every look and brokers can take endpoint 0.
    endpoints.sort_by(|a, b| {
        b.security_level
            .cmp(&a.security_level)
            .then_with(|| mode_rank(b.security_mode).cmp(&mode_rank(a.security_mode)))
            .then_with(|| {
                a.security_policy_uri
                    .as_ref()
                    .cmp(b.security_policy_uri.as_ref())
            })
            .then_with(|| a.endpoint_url.as_ref().cmp(b.endpoint_url.as_ref()))
    });
    endpoints.dedup_by(|a, b| {
        a.endpoint_url == b.endpoint_url
            && a.security_mode == b.security_mode
            && a.security_policy_uri == b.security_policy_uri
    });
    let mut policies = BTreeSet::new();
    let mut modes = BTreeSet::new();
    for endpoint in &endpoints {
        policies.insert(policy_name(endpoint.security_policy_uri.as_ref()));
        modes.insert(mode_name(endpoint.security_mode));
    }
    put(
        SECURITY_POLICIES,
        policies.into_iter().collect::<Vec<_>>().join(","),
    );
    put(
        SECURITY_MODES,
        modes.into_iter().collect::<Vec<_>>().join(","),
    );
    let listed = endpoints.len().min(MAX_LISTED_ENDPOINTS);
    put(ENDPOINT_COUNT, listed.to_string());
    for (index, endpoint) in endpoints.iter().take(listed).enumerate() {
        let key = |field: &str| format!("{ENDPOINT_PREFIX}{index}_{field}");
        let policy_uri = endpoint.security_policy_uri.as_ref();
        put(
            &key("URL"),
            reachable(endpoint.endpoint_url.as_ref(), &found.url),
        );
        put(&key("SECURITY_POLICY"), policy_name(policy_uri).to_owned());
        put(&key("SECURITY_POLICY_URI"), policy_uri.to_owned());
        put(
            &key("SECURITY_MODE"),
            mode_name(endpoint.security_mode).to_owned(),
        );
        put(&key("SECURITY_LEVEL"), endpoint.security_level.to_string());
        put(&key("USER_TOKENS"), user_tokens(endpoint));
    }
    properties.extend(found.build_info.clone());
    properties.retain(|_, value| !value.is_empty());

    Device {
        id: found.url.to_string(),
        shared: true,
        properties,
        device_nodes: Vec::new(),
        mounts: Vec::new(),
    }
}

/// The endpoint's URL with the host the handler reached the server on,
/// when the server advertised another (its own host name, or a wildcard
/// address): what a broker on the same network can connect to.
fn reachable(endpoint_url: &str, reached: &OpcUrl) -> String {
    match OpcUrl::parse(endpoint_url) {
        Ok(url) => url.with_host(&reached.host).to_string(),
        Err(_) => endpoint_url.to_owned(),
    }
}

/// `Server`, `ClientAndServer`, ... as the specification spells them.
pub(crate) fn type_name(kind: ApplicationType) -> &'static str {
    match kind {
        ApplicationType::Server => "Server",
        ApplicationType::Client => "Client",
        ApplicationType::ClientAndServer => "ClientAndServer",
        ApplicationType::DiscoveryServer => "DiscoveryServer",
    }
}

/// The short name of a security policy: the URI's fragment
/// (`http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256`).
fn policy_name(uri: &str) -> &str {
    uri.rsplit_once('#').map_or(uri, |(_, name)| name)
}

fn mode_name(mode: MessageSecurityMode) -> &'static str {
    match mode {
        MessageSecurityMode::None => "None",
        MessageSecurityMode::Sign => "Sign",
        MessageSecurityMode::SignAndEncrypt => "SignAndEncrypt",
        MessageSecurityMode::Invalid => "Invalid",
    }
}

fn mode_rank(mode: MessageSecurityMode) -> u8 {
    match mode {
        MessageSecurityMode::SignAndEncrypt => 3,
        MessageSecurityMode::Sign => 2,
        MessageSecurityMode::None => 1,
        MessageSecurityMode::Invalid => 0,
    }
}

/// The kinds of user identity the endpoint accepts, e.g. `Anonymous,UserName`.
fn user_tokens(endpoint: &EndpointDescription) -> String {
    let kinds: BTreeSet<&str> = endpoint
        .user_identity_tokens
        .iter()
        .flatten()
        .map(|policy| match policy.token_type {
            UserTokenType::Anonymous => "Anonymous",
            UserTokenType::UserName => "UserName",
            UserTokenType::Certificate => "Certificate",
            UserTokenType::IssuedToken => "IssuedToken",
        })
        .collect();
    kinds.into_iter().collect::<Vec<_>>().join(",")
}

#[cfg(test)]
#[path = "device_tests.rs"]
mod tests;
