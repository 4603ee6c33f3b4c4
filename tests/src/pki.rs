//! Certificates, keys and kubeconfigs for a throw-away control plane.
//!
//! One CA signs the API server's serving certificate (valid for 127.0.0.1
//! and localhost) and a client certificate per identity. Identities follow
//! Kubernetes' own conventions, so the API server's bootstrap RBAC policy
//! grants each component what it needs: `system:kube-controller-manager`,
//! `system:kube-scheduler`, and an admin in `system:masters` for tests, KWOK
//! and any tool given the kubeconfig.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::Error;

/// The files of the control plane's PKI, all under one directory.
#[derive(Debug)]
pub struct Pki {
    /// The CA certificate that signed everything (PEM).
    pub ca_cert: PathBuf,
    /// The API server's serving certificate and key.
    pub server_cert: PathBuf,
    /// The key of `server_cert`.
    pub server_key: PathBuf,
    /// The private key that signs service account tokens.
    pub service_account_key: PathBuf,
    /// The public half of `service_account_key`.
    pub service_account_pub: PathBuf,
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A client identity: the certificate and key PEMs.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// Certificate (PEM).
    pub cert_pem: String,
    /// PKCS#8 private key (PEM).
    pub key_pem: String,
}

impl Pki {
    /// Creates a CA, a serving certificate and service-account keys in `dir`.
    pub fn create(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|source| Error::io("create the PKI directory", source))?;

        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ambit-test-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let mut server = CertificateParams::new(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
            "10.96.0.1".to_owned(),
        ])?;
        server
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server.signed_by(&server_key, &ca)?;

        let sa_key = KeyPair::generate()?;

        let pki = Self {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("apiserver.crt"),
            server_key: dir.join("apiserver.key"),
            service_account_key: dir.join("sa.key"),
            service_account_pub: dir.join("sa.pub"),
            dir: dir.to_owned(),
            ca,
        };
        write(&pki.ca_cert, &pki.ca.pem())?;
        write(&pki.server_cert, &server_cert.pem())?;
        write(&pki.server_key, &server_key.serialize_pem())?;
        write(&pki.service_account_key, &sa_key.serialize_pem())?;
        write(&pki.service_account_pub, &sa_key.public_key_pem())?;
        Ok(pki)
    }

    /// A client certificate for `user` in `groups`, signed by the CA.
    pub fn client(&self, user: &str, groups: &[&str]) -> Result<ClientCert, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        Ok(ClientCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes a kubeconfig for `user` (in `groups`) that talks to `server`,
    /// named `<file_stem>.kubeconfig` in the PKI directory, and returns its path.
    pub fn kubeconfig(
        &self,
        file_stem: &str,
        server: &str,
        user: &str,
        groups: &[&str],
    ) -> Result<PathBuf, Error> {
        let client = self.client(user, groups)?;
        let ca = std::fs::read(&self.ca_cert).map_err(|source| Error::io("read the CA", source))?;
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "ambit-test", "cluster": {
                "server": server,
                "certificate-authority-data": base64(&ca),
            }}],
            "users": [{"name": user, "user": {
                "client-certificate-data": base64(client.cert_pem.as_bytes()),
                "client-key-data": base64(client.key_pem.as_bytes()),
            }}],
            "contexts": [{"name": "ambit-test", "context": {"cluster": "ambit-test", "user": user}}],
            "current-context": "ambit-test",
        });
        let path = self.dir.join(format!("{file_stem}.kubeconfig"));
        let yaml = serde_yaml_ng::to_string(&config).map_err(Error::Yaml)?;
        write(&path, &yaml)?;
        Ok(path)
    }
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents)
        .map_err(|source| Error::io(format!("write {}", path.display()), source))
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
