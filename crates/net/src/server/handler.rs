//! The events a server's application receives.

use std::future::Future;
use std::net::SocketAddr;

use crate::{NetError, SessionId};

#[cfg(doc)]
use super::Handle;

/// The server's events, one method each (seed 003's `CLanServer` virtuals).
///
/// Methods are called from the session's own task: for one session, `on_join`
/// comes first, then `on_recv` once per frame in arrival order, then
/// `on_leave` exactly once. The async methods may wait (for example on a
/// bounded queue into application logic); while `on_recv` waits, that
/// session reads nothing more, which is the back-pressure a sender should
/// feel. Other sessions are not affected.
pub trait Handler: Send + Sync + 'static {
    /// A connection was accepted from `peer`, before any byte is read.
    /// Returning `false` closes it at once.
    fn on_connection_request(&self, peer: SocketAddr) -> bool {
        let _ = peer;
        true
    }

    /// A session was admitted; sends to `id` work from now on.
    fn on_join(&self, id: SessionId, peer: SocketAddr) -> impl Future<Output = ()> + Send {
        let _ = (id, peer);
        async {}
    }

    /// The session has been fully released: its socket is closed and its
    /// id no longer reaches anything. Called exactly once per joined session.
    fn on_leave(&self, id: SessionId) -> impl Future<Output = ()> + Send {
        let _ = id;
        async {}
    }

    /// One complete frame, header included, borrowed from the session's
    /// receive buffer.
    fn on_recv(&self, id: SessionId, frame: &[u8]) -> impl Future<Output = ()> + Send;

    /// The peer finished sending (read end of file): every frame it sent
    /// has been through `on_recv`. Return `true` to close the session now,
    /// after writing what is queued for it (the default), or `false` to
    /// close it yourself with [`Handle::disconnect`] once the answers to
    /// those frames are queued (they may still be on their way through
    /// your application).
    fn on_peer_closed(&self, id: SessionId) -> impl Future<Output = bool> + Send {
        let _ = id;
        async { true }
    }

    /// Packets sent with [`Handle::send_droppable`] were dropped for `id`
    /// because it read too slowly (how many, and the tags of the first and
    /// last: `ServerConfig::drop_tag`); called after the next write
    /// completes, so a notice sent from here finds room.
    fn on_dropped(&self, id: SessionId, dropped: crate::Dropped) {
        let _ = (id, dropped);
    }

    /// Something went wrong: for a session (it is being closed), or for the
    /// listener (`id` is `None`).
    fn on_error(&self, id: Option<SessionId>, error: &NetError) {
        let _ = (id, error);
    }
}
