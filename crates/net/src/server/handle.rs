//! What the application holds: send, disconnect, read counters, stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::Shared;
use crate::outbox::Close;
use crate::session::SessionShared;
use crate::{SendError, SessionId, Stats};

/// Sends to sessions, disconnects them, reads counters, stops the server.
/// Cheap to clone; safe to use from any thread.
#[derive(Clone)]
pub struct Handle(pub(super) Arc<Shared>);

impl Handle {
    /// Queues a shared packet for `id`. Sending one [`Bytes`] to many sessions
    /// shares it: each outbox holds a reference, never a copy.
    ///
    /// # Errors
    /// [`SendError::NoSession`] if `id` has left (even if its slot now holds a
    /// newer session), [`SendError::Closing`] if it is closing, and
    /// [`SendError::QueueFull`] if this would exceed its send-queue limit (it
    /// is then disconnected as a slow consumer).
    pub fn send(&self, id: SessionId, packet: Bytes) -> Result<(), SendError> {
        self.0
            .table
            .with(id, |s| s.send(packet))
            .unwrap_or(Err(SendError::NoSession))?;
        Ok(())
    }

    /// Queues a shared packet that may be dropped for `id` instead of
    /// disconnecting it when it reads too slowly: when its queue is over the
    /// send-queue limit, the oldest droppable packets still queued are
    /// dropped first (or this one, if none is left), and
    /// [`Handler::on_dropped`] reports how many. Anything sent otherwise
    /// still disconnects at the limit once nothing droppable is left.
    ///
    /// # Errors
    /// [`SendError::NoSession`] or [`SendError::Closing`], as
    /// [`send`](Self::send).
    pub fn send_droppable(&self, id: SessionId, packet: Bytes) -> Result<(), SendError> {
        self.0
            .table
            .with(id, |s| s.send_droppable(packet))
            .unwrap_or(Err(SendError::NoSession))
    }

    /// Encodes a packet straight into `id`'s outbox with `encode`, which must
    /// only append. Allocates nothing once the outbox has grown to its working
    /// size. `encode` runs under the session's outbox lock: keep it short.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn send_with(&self, id: SessionId, encode: impl FnOnce(&mut BytesMut)) -> Result<(), SendError> {
        self.0
            .table
            .with(id, |s| s.send_with(encode))
            .unwrap_or(Err(SendError::NoSession))
    }

    /// Copies `frame` into `id`'s outbox.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn send_slice(&self, id: SessionId, frame: &[u8]) -> Result<(), SendError> {
        self.send_with(id, |b| b.extend_from_slice(frame))
    }

    /// Closes `id` after writing what is queued for it (up to the linger
    /// deadline). No frame it sends from now on reaches the handler: what
    /// it sends is read and thrown away until it closes its side or the
    /// deadline passes, so that the close is orderly (closing a socket with
    /// unread input would reset the connection, and the reset would throw
    /// away what the peer had not read yet).
    ///
    /// # Errors
    /// [`SendError::NoSession`] if `id` has left.
    pub fn disconnect(&self, id: SessionId) -> Result<(), SendError> {
        let linger = self.0.limits.linger;
        self.0
            .table
            .with(id, |s| s.close(Close::Flush(Instant::now() + linger)))
            .ok_or(SendError::NoSession)
    }

    /// The peer address of `id`.
    pub fn peer_addr(&self, id: SessionId) -> Option<SocketAddr> {
        self.0.table.with(id, |s| s.peer)
    }

    /// Bytes queued for `id` and not yet written.
    pub fn pending_bytes(&self, id: SessionId) -> Option<usize> {
        self.0.table.with(id, |s| s.pending_bytes())
    }

    /// Bytes queued and not yet written, over all sessions.
    pub fn pending_bytes_total(&self) -> usize {
        let mut total = 0;
        self.0.table.for_each(|s| total += s.pending_bytes());
        total
    }

    /// Sessions open now.
    pub fn session_count(&self) -> usize {
        self.0.sessions.load(Ordering::Acquire)
    }

    /// The listening address.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr
    }

    /// The TLS listener's address, if there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.0.tls_addr
    }

    /// The server's counters.
    pub fn stats(&self) -> Stats {
        let mut stats = self.0.counters.snapshot(self.session_count());
        if let Some(g) = &self.0.gather {
            (stats.writes_held, stats.gathering) = (g.held(), g.is_on());
        }
        stats
    }

    /// Whether the workers have been saturated for a while, so that every
    /// write waits for the gathering clock's next tick
    /// (`ServerConfig::gather`). A caller that writes with
    /// [`Writes`](crate::Writes) may then hold its flush for up to the
    /// gathering interval too.
    pub fn is_saturated(&self) -> bool {
        self.0.gather.as_ref().is_some_and(|g| g.is_saturated())
    }

    /// Whether [`stop`](Self::stop) has been called.
    pub fn is_stopping(&self) -> bool {
        self.0.stop.is_cancelled()
    }

    /// Stops gracefully: closes the listeners, flushes every session's queue
    /// for up to `linger`, closes every session, and returns once every
    /// session has left (its `on_leave` has returned). On a server that was
    /// bound but never started it returns at once.
    pub async fn stop(&self, linger: Duration) {
        let s = &self.0;
        s.stop.cancel();
        s.tasks.close();
        let deadline = Instant::now() + linger;
        s.table.for_each(|session| {
            if let Some(farewell) = &s.farewell {
                let _ = session.send(farewell.clone());
            }
            session.close(Close::Flush(deadline));
        });
        s.tasks.wait().await;
    }
}

impl Shared {
    /// A session's task has ended: it leaves the table and the counts.
    pub(super) fn forget(&self, session: &SessionShared) {
        self.table.remove(session.id);
        self.release_ip(session.peer.ip());
        self.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}
