//! What a connection says before its frames.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use crate::Stream;

/// The future a [`Preamble`] returns.
pub type PreambleFuture = Pin<Box<dyn Future<Output = Option<Stream>> + Send>>;

/// Runs on every new connection (after TLS, before the session joins),
/// bounded by the server's handshake timeout: an HTTP upgrade to
/// WebSocket, say. It gets the stream and gives it back for the session
/// to run on, or `None` when the connection ends here (the preamble has
/// answered it: a web page, a refusal). Nothing of the peer's may be left
/// unread past the preamble: the session reads the stream afresh.
pub trait Preamble: std::fmt::Debug + Send + Sync + 'static {
    /// The preamble for a connection from `peer`.
    fn run(&self, stream: Stream, peer: SocketAddr) -> PreambleFuture;
}
