//! Makes the Rust servers accept what gRPC's C core (Python, Ruby, C++ ...)
//! and grpc-java send as `:authority` on a unix socket.
//!
//! Those clients send the socket path, raw or percent-encoded
//! (`tmp%2Fambit%2Fregistration.sock`), unless told to send `localhost`;
//! so does grpc-go when dialled with a bare path, as the kubelet dials device
//! plugins and plugin-registration sockets (Huffman-coded). The
//! Rust HTTP/2 stack (h2) checks `:authority` against RFC 3986 and resets
//! such a stream with PROTOCOL_ERROR before tonic sees it, and offers no
//! switch to relax that. Our services never look at the authority, so the
//! server side of every accepted connection reads through [`AuthorityFix`]:
//!
//! ```text
//!   socket ──► frames ──► HEADERS (+CONTINUATION) ──► HPACK walk ──► h2
//!                         └ other frames, untouched ───────────────►
//! ```
//!
//! The walk replaces the VALUE of a literal `:authority` field that is not
//! a valid authority (plain or Huffman-coded) with a plain prefix of
//! `localhost` no longer than the original's decoded length. The field keeps
//! its representation, so the server's HPACK table gets an entry where the
//! client's has one, never larger; every index the client later uses still
//! names the same entry. Anything the walk does not understand goes through
//! unchanged, and h2 judges it as before.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::{Connected, UdsConnectInfo};

use rewriter::Rewriter;

mod hpack;
mod rewriter;

/// A server-side connection whose incoming `:authority` is made acceptable.
#[derive(Debug)]
pub(crate) struct AuthorityFix<IO> {
    inner: IO,
    rewriter: Rewriter,
}

impl<IO> AuthorityFix<IO> {
    pub(crate) fn new(inner: IO) -> Self {
        Self {
            inner,
            rewriter: Rewriter::default(),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for AuthorityFix<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.rewriter.take_output(buf) {
                return Poll::Ready(Ok(()));
            }
            if this.rewriter.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut chunk = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
            if chunk.filled().is_empty() {
                this.rewriter.finish();
            } else {
                this.rewriter.push(chunk.filled());
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Connected for AuthorityFix<UnixStream> {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests;
