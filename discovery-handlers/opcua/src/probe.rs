//! The three discovery services, each one short conversation with one
//! server, bounded in time and size.
//!
//! ```text
//!   Prober ──find_servers(url)────────────► FindServers            ─► ApplicationDescriptions
//!          ──find_servers_on_network(url)─► FindServersOnNetwork   ─► ServerOnNetwork records
//!          ──get_endpoints(url)───────────► GetEndpoints           ─► EndpointDescriptions
//!          ──build_info(url, endpoints)───► CreateSession, ActivateSession, Read BuildInfo, CloseSession
//! ```
//!
//! Every call opens a secure channel with security policy None (which the
//! discovery services require servers to offer), sends one request and
//! closes the channel. The whole call, connection included, runs under the
//! plan's `timeout`, and async-opcua's decoder refuses any message larger
//! than `maxMessageSize` or any array longer than `maxServers` (plus room
//! for endpoints), so a slow or hostile server costs one timeout and a
//! bounded buffer, and never holds up the others.
//!
//! With `details.session`, a session is opened on the endpoint of the chosen
//! security policy and mode, with the credentials of `discovery.properties`,
//! to read the server's BuildInfo. The client certificate and key are
//! written to a private temporary folder (mode 0700, the key 0600) for
//! async-opcua's certificate store, and removed when discovery stops. The
//! server's certificate is trusted as GetEndpoints gave it: the session
//! checks the credentials, not the server's identity.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opcua::client::{Client, ClientBuilder, IdentityToken, Password};
use opcua::crypto::SecurityPolicy;
use opcua::types::{
    ApplicationDescription, EndpointDescription, ReadValueId, ServerOnNetwork, TimestampsToReturn,
    VariableId, Variant,
};

use crate::details::{Plan, SessionPlan};
use crate::url::OpcUrl;

/// The BuildInfo values read in a session, and the property each becomes.
pub(crate) const BUILD_INFO: [(VariableId, &str); 4] = [
    (
        VariableId::Server_ServerStatus_BuildInfo_ManufacturerName,
        crate::device::MANUFACTURER_NAME,
    ),
    (
        VariableId::Server_ServerStatus_BuildInfo_ProductName,
        crate::device::PRODUCT_NAME,
    ),
    (
        VariableId::Server_ServerStatus_BuildInfo_SoftwareVersion,
        crate::device::SOFTWARE_VERSION,
    ),
    (
        VariableId::Server_ServerStatus_BuildInfo_BuildNumber,
        crate::device::BUILD_NUMBER,
    ),
];

/// Longest string a discovery answer may hold (names, URIs, URLs).
const MAX_STRING_LENGTH: usize = 16 << 10;
/// Longest byte string (a server's certificate in an endpoint).
const MAX_BYTE_STRING_LENGTH: usize = 64 << 10;
/// The most FindServersOnNetwork records asked for in one call.
const MAX_RECORDS: u32 = 1000;
/// The most chunks one answer may come in.
const MAX_CHUNK_COUNT: usize = 64;

/// Asks servers; cheap to clone.
#[derive(Clone)]
pub(crate) struct Prober {
    client: Arc<Client>,
    sessions: Option<Arc<Sessions>>,
    timeout: Duration,
}

/// What opening sessions needs: a client of its own (async-opcua builds
/// sessions through `&mut Client`), the plan, and the folder holding the
/// client certificate.
struct Sessions {
    client: Mutex<Client>,
    plan: SessionPlan,
    _folder: Option<PrivateFolder>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Prober {
    /// A prober bounded by the plan's timeout and sizes.
    pub(crate) fn new(plan: &Plan) -> Result<Self, String> {
        let client = build(base(plan).pki_dir(std::env::temp_dir().join("ambit-opcua-pki")))?;
        let sessions = match &plan.session {
            None => None,
            Some(session) => Some(Arc::new(Sessions::new(plan, session)?)),
        };
        Ok(Self {
            client: Arc::new(client),
            sessions,
            timeout: plan.timeout,
        })
    }

    /// Whether sessions are to be opened, and whether they must succeed.
    pub(crate) fn session_required(&self) -> Option<bool> {
        self.sessions
            .as_ref()
            .map(|sessions| sessions.plan.required)
    }

    /// FindServers: the applications `url` knows (an LDS: those registered
    /// with it and itself; a server: itself).
    pub(crate) async fn find_servers(
        &self,
        url: &OpcUrl,
    ) -> Result<Vec<ApplicationDescription>, String> {
        let url = url.to_string();
        self.bounded(
            "FindServers",
            self.client.find_servers(url.as_str(), None, None),
        )
        .await
    }

    /// FindServersOnNetwork: the servers an LDS-ME saw announced by mDNS.
    pub(crate) async fn find_servers_on_network(
        &self,
        url: &OpcUrl,
    ) -> Result<Vec<ServerOnNetwork>, String> {
        let url = url.to_string();
        let response = self
            .bounded(
                "FindServersOnNetwork",
                self.client
                    .find_servers_on_network(url.as_str(), 0, MAX_RECORDS, None),
            )
            .await?;
        Ok(response.servers.unwrap_or_default())
    }

    /// GetEndpoints: how one may connect to the server at `url`.
    pub(crate) async fn get_endpoints(
        &self,
        url: &OpcUrl,
    ) -> Result<Vec<EndpointDescription>, String> {
        let url = url.to_string();
        self.bounded(
            "GetEndpoints",
            self.client.get_server_endpoints_from_url(url.as_str()),
        )
        .await
    }

    /// Opens a session with the server at `url` on the endpoint of the
    /// planned policy and mode, reads its BuildInfo and closes the session:
    /// the BuildInfo as properties.
    pub(crate) async fn build_info(
        &self,
        url: &OpcUrl,
        endpoints: &[EndpointDescription],
    ) -> Result<BTreeMap<String, String>, String> {
        let Some(sessions) = &self.sessions else {
            return Ok(BTreeMap::new());
        };
        let plan = &sessions.plan;
        let Some(endpoint) = endpoints.iter().find(|endpoint| {
            endpoint.security_mode == plan.mode
                && SecurityPolicy::from_uri(endpoint.security_policy_uri.as_ref()) == plan.policy
        }) else {
            return Err(format!(
                "the server offers no endpoint with security policy {} and mode {:?}",
                plan.policy, plan.mode
            ));
        };
        let mut endpoint = endpoint.clone();
        // Reach it where GetEndpoints reached it, whatever host it advertises.
        if let Ok(advertised) = OpcUrl::parse(endpoint.endpoint_url.as_ref()) {
            endpoint.endpoint_url = advertised.with_host(&url.host).to_string().into();
        }
        let identity = match &plan.credentials.user {
            Some((user, password)) => {
                IdentityToken::UserName(user.clone(), Password::new(password))
            }
            None => IdentityToken::Anonymous,
        };
        let (session, event_loop) = {
            let mut client = sessions
                .client
                .lock()
                .map_err(|_| "the session client is poisoned".to_owned())?;
            client
                .connect_to_endpoint_directly(endpoint, identity)
                .map_err(|error| format!("cannot open a session: {error}"))?
        };
        session.disable_reconnects();
        let mut event_loop = AbortOnDrop(event_loop.spawn());
        let read = async {
            tokio::select! {
                connected = session.wait_for_connection() => {
                    if !connected {
                        return Err("the session was not established".to_owned());
                    }
                }
                status = &mut event_loop.0 => {
                    let status = status.map_or_else(|error| error.to_string(), |code| code.to_string());
                    return Err(format!("the server refused the session: {status}"));
                }
            }
            let nodes: Vec<ReadValueId> = BUILD_INFO
                .iter()
                .map(|(variable, _)| ReadValueId::from(opcua::types::NodeId::from(*variable)))
                .collect();
            let values = session
                .read(&nodes, TimestampsToReturn::Neither, 0.0)
                .await
                .map_err(|error| format!("reading BuildInfo failed: {error}"))?;
            let _ = session.disconnect().await;
            let mut properties = BTreeMap::new();
            for ((_, property), value) in BUILD_INFO.iter().zip(values) {
                if let Some(Variant::String(text)) = value.value {
                    let text = text.as_ref().trim();
                    if !text.is_empty() {
                        properties.insert((*property).to_owned(), text.to_owned());
                    }
                }
            }
            Ok(properties)
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "the session got no answer within {}",
                humantime::format_duration(self.timeout)
            )),
        }
    }

    async fn bounded<T>(
        &self,
        service: &str,
        call: impl Future<Output = Result<T, opcua::types::Error>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(format!("{service} failed: {error}")),
            Err(_) => Err(format!(
                "{service} got no answer within {}",
                humantime::format_duration(self.timeout)
            )),
        }
    }
}

/// The client settings both clients share: no retries, the plan's bounds.
fn base(plan: &Plan) -> ClientBuilder {
    ClientBuilder::new()
        .application_name("Ambit OPC UA discovery")
        .application_uri("urn:ambit.dev:discovery:opcua")
        .product_uri("urn:ambit.dev:ambit")
        .create_sample_keypair(false)
        .session_retry_limit(0)
        .request_timeout(plan.timeout)
        .max_message_size(plan.max_message_size)
        .max_chunk_count(MAX_CHUNK_COUNT)
        .max_array_length(plan.max_servers.max(1000))
        .max_string_length(MAX_STRING_LENGTH)
        .max_byte_string_length(MAX_BYTE_STRING_LENGTH)
}

/// Builds the client. The discovery services run over security policy None
/// and need no application certificate, but building a client without one
/// logs an error (and one about the PKI folder when it cannot be made):
/// silence the build, not the calls.
fn build(builder: ClientBuilder) -> Result<Client, String> {
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
        builder.client()
    })
    .map_err(|errors| format!("cannot configure the OPC UA client: {}", errors.join("; ")))
}

impl Sessions {
    fn new(plan: &Plan, session: &SessionPlan) -> Result<Self, String> {
        let mut builder = base(plan)
            .application_uri(&session.application_uri)
            .session_timeout(60_000);
        let folder = match &session.credentials.certificate {
            None => {
                builder = builder.pki_dir(std::env::temp_dir().join("ambit-opcua-pki"));
                None
            }
            Some((certificate, key)) => {
                let folder = PrivateFolder::new()
                    .map_err(|error| format!("cannot store the client certificate: {error}"))?;
                let cert_path = folder.write("cert.pem", certificate)?;
                let key_path = folder.write("key.pem", key)?;
                builder = builder
                    .pki_dir(folder.path())
                    .certificate_path(cert_path)
                    .private_key_path(key_path)
                    // GetEndpoints handed over the server's certificate; the
                    // session checks credentials, not the server's identity.
                    .trust_server_certs(true)
                    .verify_server_certs(false);
                Some(folder)
            }
        };
        Ok(Self {
            client: Mutex::new(build(builder)?),
            plan: session.clone(),
            _folder: folder,
        })
    }
}

/// A folder only this user may read, removed when dropped.
struct PrivateFolder(PathBuf);

impl PrivateFolder {
    fn new() -> std::io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "ambit-opcua-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        if path.exists() {
            fs::remove_dir_all(&path)?;
        }
        DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` (mode 0600) and returns its path.
    fn write(&self, name: &str, contents: &str) -> Result<PathBuf, String> {
        let path = self.0.join(name);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| file.write_all(contents.as_bytes()))
            .map_err(|error| format!("cannot store the client certificate: {error}"))?;
        Ok(path)
    }
}

impl Drop for PrivateFolder {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A spawned task that is aborted when its owner goes (a timed-out session
/// must not live on).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
