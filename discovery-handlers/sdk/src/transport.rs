//! gRPC over unix domain sockets, both ends.
//!
//! Server: [`UnixServer`] binds a socket (removing a stale file left by a
//! crash, refusing one a live server still answers on), serves tonic routes
//! on it, and on shutdown ends every open response stream (through a
//! [`CancellationToken`] the services watch), waits briefly for connections
//! to close, and removes the socket file if it is still its own. Every
//! accepted connection reads through [`AuthorityFix`], so clients that send
//! the socket path as `:authority` (gRPC's C core, grpc-java) are served too.
//!
//! Client: [`connect`] / [`connect_lazy`] reach a socket through tonic's
//! `Endpoint` with a connector that opens a `UnixStream`. The URI is a dummy,
//! `http://localhost`, so requests carry `:authority: localhost`, the value
//! gRPC's own implementations use for unix sockets and the only kind of value
//! the Rust HTTP/2 stack accepts (it rejects a socket path as authority).

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::TryStreamExt;
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint, Server, Uri};
use tracing::{debug, warn};

use crate::authority::AuthorityFix;
use crate::error::TransportError;

/// The URI every client uses; only its authority, `localhost`, is sent.
const DUMMY_URI: &str = "http://localhost";

/// How long shutdown waits for connections to close after every response
/// stream was ended.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A gRPC server bound to a unix socket, ready to run.
#[derive(Debug)]
pub struct UnixServer {
    path: PathBuf,
    listener: UnixListener,
    routes: Routes,
    socket: SocketFile,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl UnixServer {
    /// Binds `path` for `routes`. `stop` is the token the services watch to
    /// end their streams; it is cancelled when the server shuts down or is
    /// dropped. Must be called within a Tokio runtime.
    pub fn bind(
        path: &Path,
        routes: Routes,
        stop: CancellationToken,
    ) -> Result<Self, TransportError> {
        let path = path.to_path_buf();
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| TransportError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        remove_stale_socket(&path)?;
        let listener = UnixListener::bind(&path).map_err(|source| TransportError::Bind {
            path: path.clone(),
            source,
        })?;
        let socket = SocketFile::new(&path);
        let stop_on_drop = stop.clone().drop_guard();
        Ok(Self {
            path,
            listener,
            routes,
            socket,
            stop,
            _stop_on_drop: stop_on_drop,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves until `shutdown` completes (or this future is dropped), then
    /// ends all streams, closes connections and removes the socket file.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), TransportError> {
        let Self {
            path,
            listener,
            routes,
            socket,
            stop,
            _stop_on_drop,
        } = self;
        let signal = {
            let stop = stop.clone();
            async move {
                tokio::select! {
                    () = shutdown => stop.cancel(),
                    () = stop.cancelled() => {}
                }
            }
        };
        let incoming = UnixListenerStream::new(listener).map_ok(AuthorityFix::new);
        let server = Server::builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, signal);
        let result = tokio::select! {
            result = server => result.map_err(|source| TransportError::Serve { path: path.clone(), source }),
            () = async { stop.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                warn!(socket = %path.display(), "connections still open after shutdown; closing anyway");
                Ok(())
            }
        };
        drop(socket);
        debug!(socket = %path.display(), "server stopped");
        result
    }
}

/// The socket file a server created; removed on drop if it is still the
/// same file (a newer server may have replaced it meanwhile).
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl SocketFile {
    fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            identity: file_identity(path),
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.identity.is_some()
            && file_identity(&self.path) == self.identity
            && let Err(error) = std::fs::remove_file(&self.path)
        {
            debug!(%error, socket = %self.path.display(), "could not remove socket file");
        }
    }
}

fn file_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|meta| (meta.dev(), meta.ino()))
}

/// Removes a socket file no server answers on any more. Refuses to remove
/// anything that is not a socket, or a socket a live server still serves.
fn remove_stale_socket(path: &Path) -> Result<(), TransportError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(TransportError::RemoveStale {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        let source = io::Error::new(io::ErrorKind::AlreadyExists, "a file that is not a socket");
        return Err(TransportError::RemoveStale {
            path: path.to_path_buf(),
            source,
        });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(TransportError::InUse(path.to_path_buf()));
    }
    debug!(socket = %path.display(), "removing stale socket");
    std::fs::remove_file(path).map_err(|source| TransportError::RemoveStale {
        path: path.to_path_buf(),
        source,
    })
}

fn endpoint() -> Endpoint {
    Endpoint::from_static(DUMMY_URI)
}

fn connector(
    path: PathBuf,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<UnixStream>,
    Error = io::Error,
    Future = impl Future<Output = io::Result<TokioIo<UnixStream>>> + Send,
> + Clone
+ Send {
    tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { UnixStream::connect(path).await.map(TokioIo::new) }
    })
}

/// Connects to a gRPC server on a unix socket; fails at once if nothing
/// listens there.
pub async fn connect(path: &Path) -> Result<Channel, TransportError> {
    endpoint()
        .connect_with_connector(connector(path.to_path_buf()))
        .await
        .map_err(|source| TransportError::Connect {
            path: path.to_path_buf(),
            source,
        })
}

/// A channel to a unix socket that connects on first use and reconnects
/// after the server restarts. Must be called within a Tokio runtime.
pub fn connect_lazy(path: &Path) -> Channel {
    endpoint().connect_with_connector_lazy(connector(path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_socket_is_replaced_but_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sock");

        // A socket file whose server is gone.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let server = UnixServer::bind(&path, Routes::default(), CancellationToken::new()).unwrap();

        // A second server on the same, live socket is refused.
        let error = UnixServer::bind(&path, Routes::default(), CancellationToken::new())
            .expect_err("socket is live");
        assert!(matches!(error, TransportError::InUse(_)), "{error}");

        // Running then stopping removes the socket file.
        server.run(async {}).await.unwrap();
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_regular_file_is_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sock");
        std::fs::write(&path, "data").unwrap();
        let error = UnixServer::bind(&path, Routes::default(), CancellationToken::new())
            .expect_err("not a socket");
        assert!(
            matches!(error, TransportError::RemoveStale { .. }),
            "{error}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
    }

    #[tokio::test]
    async fn connect_fails_fast_without_a_server() {
        let dir = tempfile::tempdir().unwrap();
        let error = connect(&dir.path().join("none.sock"))
            .await
            .expect_err("no server");
        assert!(matches!(error, TransportError::Connect { .. }), "{error}");
    }
}
