//! The three discovery services, each one short conversation with one
//! server, bounded in time and size.
//!
//! ```text
//!   Prober ──find_servers(url)────────────► FindServers            ─► ApplicationDescriptions
//!          ──find_servers_on_network(url)─► FindServersOnNetwork   ─► ServerOnNetwork records
//!          ──get_endpoints(url)───────────► GetEndpoints           ─► EndpointDescriptions
//! ```
//!
//! Every call opens a secure channel with security policy None (which the
//! discovery services require servers to offer), sends one request and
//! closes the channel. The whole call, connection included, runs under the
//! plan's `timeout`, and async-opcua's decoder refuses any message larger
//! than `maxMessageSize` or any array longer than `maxServers` (plus room
//! for endpoints), so a slow or hostile server costs one timeout and a
//! bounded buffer, and never holds up the others.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use opcua::client::{Client, ClientBuilder};
use opcua::types::{ApplicationDescription, EndpointDescription, ServerOnNetwork};

use crate::details::Plan;
use crate::url::OpcUrl;

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
    timeout: Duration,
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
        let builder = ClientBuilder::new()
            .application_name("Ambit OPC UA discovery")
            .application_uri("urn:ambit.dev:discovery:opcua")
            .product_uri("urn:ambit.dev:ambit")
            .create_sample_keypair(false)
            .pki_dir(std::env::temp_dir().join("ambit-opcua-pki"))
            .session_retry_limit(0)
            .request_timeout(plan.timeout)
            .max_message_size(plan.max_message_size)
            .max_chunk_count(MAX_CHUNK_COUNT)
            .max_array_length(plan.max_servers.max(1000))
            .max_string_length(MAX_STRING_LENGTH)
            .max_byte_string_length(MAX_BYTE_STRING_LENGTH);
        // The discovery services run over security policy None and need no
        // application certificate, but building a client without one logs
        // an error (and one about the PKI folder when it cannot be made):
        // silence the build, not the calls.
        let client =
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
                builder.client()
            })
            .map_err(|errors| {
                format!("cannot configure the OPC UA client: {}", errors.join("; "))
            })?;
        Ok(Self {
            client: Arc::new(client),
            timeout: plan.timeout,
        })
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
