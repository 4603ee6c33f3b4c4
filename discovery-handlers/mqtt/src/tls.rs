//! The rustls client configuration for `tls://` brokers. The broker's
//! certificate must chain to the CA certificates of `MQTT_CA_CERT` when it
//! is set (and to those only: a private CA pins the broker), or else to the
//! node's system roots, as `rustls-native-certs` finds them (`SSL_CERT_FILE`
//! and `SSL_CERT_DIR` are honoured; Ambit's images carry Debian's
//! ca-certificates). A client certificate from `MQTT_CLIENT_CERT` and
//! `MQTT_CLIENT_KEY` when given. Crypto by ring (as the rest of Ambit); no
//! OpenSSL.

use std::sync::Arc;

use ambit_discovery::DiscoveryError;
use rustls::RootCertStore;
use rustls::crypto::ring;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::details::{CA_CERT, CLIENT_CERT, CLIENT_KEY, Tls};

/// Builds the client configuration. A bad property is
/// [`DiscoveryError::InvalidDetails`] naming the property (never its value);
/// a node without any system root is [`DiscoveryError::Failed`], retried, as
/// the node's to fix.
pub fn client_config(tls: &Tls) -> Result<Arc<rustls::ClientConfig>, DiscoveryError> {
    let roots = match tls.ca.as_deref() {
        Some(ca) => private_roots(ca).map_err(DiscoveryError::InvalidDetails)?,
        None => system_roots()?,
    };
    let invalid = DiscoveryError::InvalidDetails;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| DiscoveryError::Failed(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let config = match &tls.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates(CLIENT_CERT, cert).map_err(invalid)?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|_| invalid(format!("properties.{CLIENT_KEY}: not a PEM private key")))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                invalid(format!(
                    "properties.{CLIENT_CERT}: unusable with {CLIENT_KEY}: {e}"
                ))
            })?
        }
    };
    Ok(Arc::new(config))
}

fn private_roots(ca: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(CA_CERT, ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("properties.{CA_CERT}: not a usable CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// The node's trust store. Unreadable entries are skipped (and logged) as
/// long as some root loads: one odd file in /etc/ssl/certs must not take
/// TLS away from every broker.
fn system_roots() -> Result<RootCertStore, DiscoveryError> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(%error, "skipped an entry of the system trust store");
    }
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(DiscoveryError::Failed(format!(
            "no system CA certificate found for tls:// brokers (looked where rustls-native-certs \
             looks, SSL_CERT_FILE and SSL_CERT_DIR included{}); set properties.{CA_CERT} to the \
             broker's CA certificates (PEM)",
            found
                .errors
                .first()
                .map(|e| format!("; first error: {e}"))
                .unwrap_or_default()
        )));
    }
    Ok(roots)
}

fn certificates(property: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("properties.{property}: not PEM certificates"))?;
    if certs.is_empty() {
        return Err(format!("properties.{property}: holds no PEM certificate"));
    }
    Ok(certs)
}
