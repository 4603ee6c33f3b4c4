//! `opc.tcp://` URLs: parsed just enough to compare where two URLs point
//! (host and port), to put a reachable host into a URL a server advertised,
//! and to give every server one canonical spelling for its Device id.
//!
//! ```text
//!   "OPC.TCP://Plant-PLC:4840/ua/"  ──parse──►  host "plant-plc", port 4840, path "/ua/"
//!                                   ──to_string──► "opc.tcp://plant-plc:4840/ua/"
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The scheme of OPC UA's binary protocol over TCP, the only transport the
/// handler speaks.
pub(crate) const SCHEME: &str = "opc.tcp://";
/// The port IANA registered for OPC UA, used when a URL names none.
pub(crate) const DEFAULT_PORT: u16 = 4840;

/// A parsed `opc.tcp://host[:port][/path]` URL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct OpcUrl {
    /// Lower-cased host: a name, an IPv4 address, or an IPv6 address
    /// without brackets.
    pub host: String,
    pub port: u16,
    /// The path, starting with `/` (just `/` when the URL has none).
    pub path: String,
}

impl OpcUrl {
    /// Parses `text`; the error says what is wrong, for the DeviceSet's author.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let rest = match text.get(..SCHEME.len()) {
            Some(scheme) if scheme.eq_ignore_ascii_case(SCHEME) => &text[SCHEME.len()..],
            _ => {
                return Err(format!(
                    "{text:?} is not an opc.tcp URL (e.g. opc.tcp://10.0.0.5:4840/)"
                ));
            }
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(format!(
                "{text:?}: user names in the URL are not supported; give credentials as discovery properties"
            ));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let Some((host, after)) = bracketed.split_once(']') else {
                return Err(format!("{text:?}: IPv6 address without a closing ']'"));
            };
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(format!("{text:?}: {host:?} is not an IPv6 address"));
            }
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => {
                        return Err(format!("{text:?}: unexpected {after:?} after the address"));
                    }
                },
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{text:?} has no host"));
        }
        if host.contains(':') && !authority.starts_with('[') {
            return Err(format!(
                "{text:?}: write an IPv6 address in brackets, e.g. opc.tcp://[fd00::5]:4840/"
            ));
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        {
            return Err(format!("{text:?}: {host:?} is not a valid host name"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(format!("{text:?}: {port:?} is not a port (1-65535)")),
            },
        };
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
            path: path.to_owned(),
        })
    }

    /// Whether both point at the same host and port (paths may differ: a
    /// server answers on its port whatever the path).
    pub(crate) fn same_place(&self, other: &Self) -> bool {
        self.host == other.host && self.port == other.port
    }

    /// Whether the host is a wildcard a server listens on (`0.0.0.0`, `::`)
    /// and so says nothing about where to reach it.
    pub(crate) fn host_is_unspecified(&self) -> bool {
        self.host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_unspecified())
    }

    /// This URL with another host.
    pub(crate) fn with_host(&self, host: &str) -> Self {
        Self {
            host: host.to_owned(),
            ..self.clone()
        }
    }
}

impl fmt::Display for OpcUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{SCHEME}[{}]:{}{}", self.host, self.port, self.path)
        } else {
            write!(f, "{SCHEME}{}:{}{}", self.host, self.port, self.path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_one_canonical_spelling() {
        let url = OpcUrl::parse("OPC.TCP://Plant-PLC:4841/ua/server").unwrap();
        assert_eq!(url.host, "plant-plc");
        assert_eq!(url.port, 4841);
        assert_eq!(url.to_string(), "opc.tcp://plant-plc:4841/ua/server");
        assert_eq!(
            OpcUrl::parse("opc.tcp://10.0.0.5").unwrap().to_string(),
            "opc.tcp://10.0.0.5:4840/"
        );
        let v6 = OpcUrl::parse("opc.tcp://[FD00::5]:48400/").unwrap();
        assert_eq!(v6.host, "fd00::5");
        assert_eq!(v6.to_string(), "opc.tcp://[fd00::5]:48400/");
    }

    #[test]
    fn says_what_is_wrong() {
        let error = |text| OpcUrl::parse(text).unwrap_err();
        assert!(error("http://x:80/").contains("not an opc.tcp URL"));
        assert!(error("opc.tcp://:4840/").contains("has no host"));
        assert!(error("opc.tcp://host:0/").contains("not a port"));
        assert!(error("opc.tcp://host:99999/").contains("not a port"));
        assert!(error("opc.tcp://fd00::5/").contains("in brackets"));
        assert!(error("opc.tcp://[fd00::5/").contains("closing"));
        assert!(error("opc.tcp://[nope]:1/").contains("not an IPv6 address"));
        assert!(error("opc.tcp://user@host/").contains("credentials"));
        assert!(error("opc.tcp://ho st/").contains("not a valid host"));
    }

    #[test]
    fn compares_places_and_replaces_wildcard_hosts() {
        let given = OpcUrl::parse("opc.tcp://127.0.0.1:4840/").unwrap();
        let advertised = OpcUrl::parse("opc.tcp://0.0.0.0:4840/freeopcua/server/").unwrap();
        assert!(!given.same_place(&advertised));
        assert!(advertised.host_is_unspecified());
        let fixed = advertised.with_host(&given.host);
        assert!(fixed.same_place(&given));
        assert_eq!(fixed.path, "/freeopcua/server/");
        assert!(
            OpcUrl::parse("opc.tcp://[::]:1/")
                .unwrap()
                .host_is_unspecified()
        );
    }
}
