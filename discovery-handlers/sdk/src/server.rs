//! The handler side: serves a [`DiscoveryHandler`] as the gRPC
//! `DiscoveryHandler` service on a unix socket.
//!
//! ```text
//!   agent ──Discover(v1 request)──► HandlerService ──DiscoverRequest──► handler.discover
//!         ◄──stream of v1 sets────                 ◄──DeviceStream────
//! ```
//!
//! Conversion errors and [`DiscoveryError`]s become gRPC statuses
//! (`INVALID_ARGUMENT` keeps the handler's message); streams end when the
//! server shuts down, so the agent sees the handler go.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::{Request, Response, Status};
use tracing::{Instrument, debug, info_span, warn};

use crate::error::TransportError;
use crate::handler::DiscoveryHandler;
use crate::transport::UnixServer;
use crate::types::DiscoverRequest;
use crate::v1;
use crate::v1::discovery_handler_server::DiscoveryHandlerServer;

type ResponseStream = Pin<Box<dyn Stream<Item = Result<v1::DiscoverResponse, Status>> + Send>>;

/// The gRPC face of one handler.
struct HandlerService {
    handler: Arc<dyn DiscoveryHandler>,
    stop: CancellationToken,
}

#[tonic::async_trait]
impl v1::discovery_handler_server::DiscoveryHandler for HandlerService {
    type DiscoverStream = ResponseStream;

    async fn discover(
        &self,
        request: Request<v1::DiscoverRequest>,
    ) -> Result<Response<Self::DiscoverStream>, Status> {
        if self.stop.is_cancelled() {
            return Err(Status::unavailable(
                "the discovery handler is shutting down",
            ));
        }
        let request = DiscoverRequest::try_from(request.into_inner())?;
        let span = info_span!("discover", handler = self.handler.name(), node = %request.node_name);
        let devices = self
            .handler
            .discover(request)
            .instrument(span.clone())
            .await
            .inspect_err(|error| debug!(parent: &span, %error, "discovery refused"))?;
        let responses = devices
            .map(move |item| match item {
                Ok(devices) => {
                    debug!(parent: &span, devices = devices.len(), "sending device set");
                    Ok(v1::DiscoverResponse {
                        devices: devices.into_iter().map(Into::into).collect(),
                    })
                }
                Err(error) => {
                    warn!(parent: &span, %error, "discovery failed");
                    Err(Status::from(error))
                }
            })
            .take_until(self.stop.clone().cancelled_owned());
        Ok(Response::new(Box::pin(responses)))
    }
}

/// Binds `socket_path` and returns a server for `handler`, ready to
/// [`run`](UnixServer::run). Bind first, then register, so the agent never
/// learns of a socket nobody listens on. Must be called within a Tokio
/// runtime.
pub fn bind_handler(
    handler: Arc<dyn DiscoveryHandler>,
    socket_path: &Path,
) -> Result<UnixServer, TransportError> {
    let stop = CancellationToken::new();
    let service = HandlerService {
        handler,
        stop: stop.clone(),
    };
    let routes = Routes::new(DiscoveryHandlerServer::new(service));
    UnixServer::bind(socket_path, routes, stop)
}

/// Serves `handler` on `socket_path` until `shutdown` completes: removes a
/// stale socket file first, ends every Discover stream and removes the
/// socket on the way out.
pub async fn serve(
    handler: Arc<dyn DiscoveryHandler>,
    socket_path: &Path,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), TransportError> {
    bind_handler(handler, socket_path)?.run(shutdown).await
}
