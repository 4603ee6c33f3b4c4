//! The rustls client configuration for `tls://` brokers: the CA
//! certificates of `MQTT_CA_CERT` (system roots are not loaded), and the
//! client certificate of `MQTT_CLIENT_CERT`/`MQTT_CLIENT_KEY` when given.
//! Crypto by ring (as the rest of Ambit); no OpenSSL.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::ring;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::details::{CA_CERT, CLIENT_CERT, CLIENT_KEY, Tls};

/// Builds the client configuration; an error names the property (never
/// its value).
pub fn client_config(tls: &Tls) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let ca = tls.ca.as_deref().unwrap_or_default();
    for cert in certificates(CA_CERT, ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("properties.{CA_CERT}: not a usable CA certificate: {e}"))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
    let config = match &tls.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates(CLIENT_CERT, cert)?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|_| format!("properties.{CLIENT_KEY}: not a PEM private key"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("properties.{CLIENT_CERT}: unusable with {CLIENT_KEY}: {e}"))?
        }
    };
    Ok(Arc::new(config))
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
