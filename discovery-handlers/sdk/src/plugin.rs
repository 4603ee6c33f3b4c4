//! Running a handler as an external plugin of the agent, in one call.
//!
//! ```text
//!   run_plugin(handler, socket_dir, shutdown)
//!     ├─ serve DiscoveryHandler on <socket_dir>/<name>.sock   (bound first)
//!     └─ register with <socket_dir>/registration.sock, again after every agent restart
//! ```

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::info;

use crate::error::TransportError;
use crate::handler::DiscoveryHandler;
use crate::registration::{REGISTRATION_SOCKET, RegistrationClient, RegistrationClientError};
use crate::server::bind_handler;

/// Why a plugin could not run.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The handler cannot register (bad name or endpoint).
    #[error(transparent)]
    Registration(#[from] RegistrationClientError),
    /// The handler's socket could not be served.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// The socket on which handler `name` serves within `socket_dir`.
pub fn handler_socket(socket_dir: &Path, name: &str) -> PathBuf {
    socket_dir.join(format!("{name}.sock"))
}

/// Serves `handler` on `<socket_dir>/<name>.sock` and keeps it registered
/// with the agent on `<socket_dir>/registration.sock` until `shutdown`
/// completes; then stops serving (the agent sees the handler go) and removes
/// the socket. `socket_dir` should be absolute: the agent resolves the
/// endpoint in its own working directory.
pub async fn run_plugin(
    handler: Arc<dyn DiscoveryHandler>,
    socket_dir: &Path,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), PluginError> {
    let name = handler.name().to_owned();
    let socket_dir =
        std::path::absolute(socket_dir).map_err(|source| TransportError::CreateDir {
            path: socket_dir.to_path_buf(),
            source,
        })?;
    let socket = handler_socket(&socket_dir, &name);
    let registration = RegistrationClient::new(
        name.as_str(),
        socket.as_path(),
        socket_dir.join(REGISTRATION_SOCKET),
    )?;
    let server = bind_handler(handler, &socket)?;
    info!(handler = %name, socket = %socket.display(), "serving discovery handler");
    tokio::select! {
        result = server.run(shutdown) => result?,
        never = registration.run() => match never {},
    }
    info!(handler = %name, "discovery handler stopped");
    Ok(())
}
