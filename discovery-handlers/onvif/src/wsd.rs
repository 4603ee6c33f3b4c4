//! WS-Discovery (the 2005/04 version ONVIF requires) over SOAP 1.2: the
//! Probe we send, and the ProbeMatches, Hello and Bye we read.
//!
//! ```text
//!   Probe ──multicast──► cameras ──unicast──► ProbeMatches (RelatesTo = our MessageID)
//!   camera joins / leaves ──multicast──► Hello / Bye (on 3702)
//! ```
//!
//! Parsing is lenient about prefixes and takes both the 2005/04 and the
//! 1.1 (2009/01) discovery namespaces, but never panics and keeps at most
//! [`MAX_MATCHES`] endpoints of [`MAX_LIST`] entries each.

use roxmltree::Node;

use crate::xml;

/// WS-Discovery 2005/04, the version ONVIF uses.
pub(crate) const NS_DISCOVERY: &str = "http://schemas.xmlsoap.org/ws/2005/04/discovery";
/// WS-Discovery 1.1, which some devices speak as well.
const NS_DISCOVERY_11: &str = "http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01";
/// WS-Addressing 2004/08.
const NS_ADDRESSING: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";

/// The well-known IPv4 group and port.
pub(crate) const MULTICAST_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(239, 255, 255, 250);
/// The well-known link-local IPv6 group.
pub(crate) const MULTICAST_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xc);
/// The WS-Discovery port.
pub(crate) const PORT: u16 = 3702;

/// The largest datagram we read (the UDP maximum).
pub(crate) const MAX_DATAGRAM: usize = 65_535;
/// The most ProbeMatch entries read from one message.
pub(crate) const MAX_MATCHES: usize = 64;
/// The most types, scopes or XAddrs kept per endpoint.
pub(crate) const MAX_LIST: usize = 64;

/// A Probe for `types` (QNames like `dn:NetworkVideoTransmitter`; the
/// `dn` and `tds` prefixes are bound), with this MessageID.
pub(crate) fn probe(message_id: &str, types: &[String]) -> String {
    let types = xml::escape(&types.join(" "));
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="{NS_ADDRESSING}" xmlns:d="{NS_DISCOVERY}" xmlns:dn="http://www.onvif.org/ver10/network/wsdl" xmlns:tds="http://www.onvif.org/ver10/device/wsdl"><s:Header><a:Action s:mustUnderstand="1">{NS_DISCOVERY}/Probe</a:Action><a:MessageID>{id}</a:MessageID><a:ReplyTo><a:Address>{NS_ADDRESSING}/role/anonymous</a:Address></a:ReplyTo><a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To></s:Header><s:Body><d:Probe><d:Types>{types}</d:Types></d:Probe></s:Body></s:Envelope>"#,
        id = xml::escape(message_id),
    )
}

/// A device endpoint as a discovery message describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Endpoint {
    /// The EndpointReference address: the device's stable identity,
    /// usually `urn:uuid:…`.
    pub address: String,
    pub types: Vec<String>,
    pub scopes: Vec<String>,
    pub xaddrs: Vec<String>,
    pub metadata_version: u64,
}

/// WS-Discovery's AppSequence header: lets a receiver order messages from
/// one device and drop stale ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AppSequence {
    pub instance_id: u64,
    pub message_number: u64,
}

/// What a datagram said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    ProbeMatches(Vec<Endpoint>),
    Hello(Endpoint),
    Bye(Endpoint),
    /// Anything else (a Probe from another client, a Resolve, …): ignored.
    Other,
}

/// A parsed discovery message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub message_id: Option<String>,
    pub relates_to: Option<String>,
    pub app_sequence: Option<AppSequence>,
    pub body: Body,
}

/// Parses a datagram. Malformed input is an error, never a panic.
pub(crate) fn parse(datagram: &[u8]) -> Result<Message, String> {
    let text = std::str::from_utf8(datagram).map_err(|error| format!("not UTF-8: {error}"))?;
    let document = xml::parse(text, MAX_DATAGRAM)?;
    let body = xml::body(&document)?;
    let header = xml::header(&document);
    let message_id = header.and_then(|h| xml::child_text(h, "MessageID"));
    let relates_to = header.and_then(|h| xml::child_text(h, "RelatesTo"));
    let app_sequence = header
        .and_then(|h| xml::child(h, "AppSequence"))
        .and_then(app_sequence);
    let Some(first) = body.children().find(Node::is_element) else {
        return Err("the SOAP Body is empty".to_owned());
    };
    let namespace = first.tag_name().namespace().unwrap_or_default();
    let body = if namespace != NS_DISCOVERY && namespace != NS_DISCOVERY_11 {
        Body::Other
    } else {
        match first.tag_name().name() {
            "ProbeMatches" => Body::ProbeMatches(
                xml::children(first, "ProbeMatch")
                    .take(MAX_MATCHES)
                    .filter_map(endpoint)
                    .collect(),
            ),
            "Hello" => Body::Hello(endpoint(first).ok_or("a Hello without an endpoint address")?),
            "Bye" => Body::Bye(endpoint(first).ok_or("a Bye without an endpoint address")?),
            _ => Body::Other,
        }
    };
    Ok(Message {
        message_id,
        relates_to,
        app_sequence,
        body,
    })
}

fn app_sequence(node: Node<'_, '_>) -> Option<AppSequence> {
    Some(AppSequence {
        instance_id: node.attribute("InstanceId")?.trim().parse().ok()?,
        message_number: node.attribute("MessageNumber")?.trim().parse().ok()?,
    })
}

/// The endpoint described by a ProbeMatch, Hello or Bye element.
fn endpoint(node: Node<'_, '_>) -> Option<Endpoint> {
    let address = xml::path(node, &["EndpointReference", "Address"]).and_then(xml::text)?;
    let list = |name: &str| -> Vec<String> {
        xml::child_text(node, name)
            .map(|text| {
                text.split_whitespace()
                    .take(MAX_LIST)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    Some(Endpoint {
        address,
        types: list("Types"),
        scopes: list("Scopes"),
        xaddrs: list("XAddrs"),
        metadata_version: xml::child_text(node, "MetadataVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    })
}

#[cfg(test)]
#[path = "wsd_tests.rs"]
mod tests;
