//! The agent's view of an external handler: a [`DiscoveryHandler`] that
//! calls `Discover` on the handler's unix socket, so the agent treats
//! embedded and external handlers alike (`Arc<dyn DiscoveryHandler>`).
//!
//! ```text
//!   agent ── discover(request) ──► ExternalHandler ──gRPC──► <socket_dir>/<name>.sock
//!         ◄── DeviceStream ──────  checks each set,  ◄──────  complete device sets
//!                                  ends with Unavailable when the handler goes
//! ```

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use futures::{StreamExt, stream};
use tonic::transport::Channel;

use crate::error::DiscoveryError;
use crate::handler::{BoxFuture, DeviceStream, DiscoveryHandler};
use crate::transport::connect_lazy;
use crate::types::{Device, DiscoverRequest, check_device_set};
use crate::v1;
use crate::v1::discovery_handler_client::DiscoveryHandlerClient;

/// Largest device-set message accepted: 10,000 devices with generous
/// properties stay well below it.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// A registered external handler, reached over its unix socket.
#[derive(Debug)]
pub struct ExternalHandler {
    name: String,
    socket: PathBuf,
    /// Connected on first use (which needs a runtime), then shared by every
    /// discovery; reconnects by itself after the handler restarts.
    channel: OnceLock<Channel>,
}

impl ExternalHandler {
    /// The handler `name` serving on `socket`, as a registration announced.
    /// Connects lazily: building one never fails.
    pub fn new(name: impl Into<String>, socket: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            socket: socket.into(),
            channel: OnceLock::new(),
        }
    }

    /// The handler's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn client(&self) -> DiscoveryHandlerClient<Channel> {
        let channel = self
            .channel
            .get_or_init(|| connect_lazy(&self.socket))
            .clone();
        DiscoveryHandlerClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

impl DiscoveryHandler for ExternalHandler {
    fn name(&self) -> &str {
        &self.name
    }

    fn discover(
        &self,
        request: DiscoverRequest,
    ) -> BoxFuture<'_, Result<DeviceStream, DiscoveryError>> {
        Box::pin(async move {
            let mut client = self.client();
            let response = client
                .discover(v1::DiscoverRequest::from(request))
                .await
                .map_err(|status| status_error(&self.name, status))?;
            let name = self.name.clone();
            let ended =
                DiscoveryError::Unavailable(format!("handler {name} ended the discovery stream"));
            let sets = response.into_inner().map(move |message| match message {
                Ok(message) => {
                    let devices: Vec<Device> =
                        message.devices.into_iter().map(Device::from).collect();
                    check_device_set(&devices)
                        .map(|()| devices)
                        .map_err(|error| {
                            DiscoveryError::Protocol(format!("handler {name}: {}", error.message()))
                        })
                }
                Err(status) => Err(status_error(&name, status)),
            });
            // The protocol keeps a stream open while discovery runs: an end,
            // clean or not, means the handler went away.
            let stream = sets.chain(stream::once(async move { Err(ended) }));
            Ok(take_through_first_error(stream))
        })
    }
}

/// Turns a gRPC status into an error. All but the user's own message name
/// the handler, for the DeviceSet's status and the logs.
fn status_error(name: &str, status: tonic::Status) -> DiscoveryError {
    match DiscoveryError::from(status) {
        DiscoveryError::InvalidDetails(message) => DiscoveryError::InvalidDetails(message),
        DiscoveryError::Unavailable(message) => {
            DiscoveryError::Unavailable(format!("handler {name}: {message}"))
        }
        DiscoveryError::Failed(message) => {
            DiscoveryError::Failed(format!("handler {name}: {message}"))
        }
        DiscoveryError::Protocol(message) => {
            DiscoveryError::Protocol(format!("handler {name}: {message}"))
        }
    }
}

/// Ends a stream right after its first error.
fn take_through_first_error(
    stream: impl futures::Stream<Item = Result<Vec<Device>, DiscoveryError>> + Send + 'static,
) -> DeviceStream {
    let stream = stream.scan(false, |failed, item| {
        let out = if *failed {
            None
        } else {
            *failed = item.is_err();
            Some(item)
        };
        futures::future::ready(out)
    });
    Box::pin(stream)
}
