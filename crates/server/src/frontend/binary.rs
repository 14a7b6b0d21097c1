//! The binary front end: Plaza's chat protocol (seed packets included) on
//! the chat framing (`plaza_proto::ChatFraming`), over TCP or TLS.
//!
//! Inbound, the [`Gateway`] decodes each frame on the network threads and
//! queues it for the logic task (the WebSocket front end hands it the
//! packets its messages carry). Outbound, a fan-out's events are encoded
//! once ([`super::Frames`]) with [`Event::encode`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use plaza_core::{Conn, Input};
use plaza_net::{Handle, Handler, NetError, SessionId};
use plaza_proto::{Event, Request};
use tokio::sync::mpsc;

use super::{Front, conn};
use crate::limits;

/// The network-side handler: decode, then queue for the logic task.
pub(crate) struct Gateway {
    pub(crate) tx: mpsc::Sender<Input>,
    pub(crate) net: Handle,
    pub(crate) logins: Arc<limits::LoginLimiter>,
    /// Whose sessions these are.
    pub(crate) front: Front,
}

impl Gateway {
    pub(crate) fn conn(&self, id: SessionId) -> Conn {
        conn(self.front, id)
    }

    /// The hub's input for one packet from `id`.
    pub(crate) fn input(&self, id: SessionId, frame: &[u8]) -> Input {
        let conn = self.conn(id);
        match Request::decode(frame) {
            Ok(request) if !self.allowed(id, &request) => Input::Invalid {
                conn,
                request_id: plaza_proto::packet_id(frame),
                result: plaza_proto::ResultCode::RATE_LIMITED,
            },
            Ok(request) => Input::Request { conn, request },
            Err(e) => {
                tracing::debug!(session = %id, error = %e, "bad request");
                Input::Invalid {
                    conn,
                    request_id: plaza_proto::packet_id(frame),
                    result: e.result(),
                }
            }
        }
    }

    /// Queues `input` for the logic task; waits while its queue is full.
    /// The try is made here, not in the future: an async fn would keep its
    /// argument in every session's task (rust-lang/rust#62958). The wait
    /// (the logic is behind; rare) is boxed for the same reason.
    /// (`None`: nothing to queue, for a front end's frames that are not
    /// requests.)
    pub(crate) fn queue(&self, input: Option<Input>) -> impl Future<Output = ()> + Send + '_ {
        let wait = match input.map(|i| self.tx.try_send(i)) {
            Some(Err(mpsc::error::TrySendError::Full(input))) => Some(Box::pin(self.tx.send(input))),
            _ => None,
        };
        async move {
            if let Some(wait) = wait {
                let _ = wait.await;
            }
        }
    }

    /// Login, resume, register and ADMIN attempts past the limits are
    /// answered here, without reaching the logic task or the password
    /// hasher. (ADMIN's secret could otherwise be guessed at full speed.)
    fn allowed(&self, id: SessionId, request: &Request) -> bool {
        let account = match request {
            Request::Login { name, .. } | Request::Resume { name, .. } => Some(name.as_str()),
            Request::Register { .. } | Request::Admin { .. } => None,
            _ => return true,
        };
        let Some(peer) = self.net.peer_addr(id) else {
            return true;
        };
        let ok = self.logins.allow(peer.ip(), account);
        if !ok {
            tracing::info!(session = %id, %peer, account, "login attempt refused by the rate limit");
        }
        ok
    }
}

impl Handler for Gateway {
    async fn on_join(&self, id: SessionId, peer: SocketAddr) {
        tracing::debug!(session = %id, %peer, front = ?self.front, "connected");
        let _ = self.tx.send(Input::Connect { conn: self.conn(id) }).await;
    }

    // Not an async fn: its arguments would sit in every session's task.
    fn on_recv(&self, id: SessionId, frame: &[u8]) -> impl Future<Output = ()> + Send {
        self.queue(Some(self.input(id, frame)))
    }

    async fn on_peer_closed(&self, id: SessionId) -> bool {
        // The hub closes it once the requests before are answered (a
        // client may send its requests and shut its side at once). The
        // wait, as in `on_recv`, is boxed: this future sits in every
        // session's task.
        // (The try's result is taken apart before the wait, not matched
        // around it: a match would keep it across the wait, in every
        // session's task.)
        let input = match self.tx.try_send(Input::PeerClosed { conn: self.conn(id) }) {
            Ok(()) => return false,
            Err(mpsc::error::TrySendError::Closed(_)) => return true,
            Err(mpsc::error::TrySendError::Full(input)) => input,
        };
        Box::pin(self.tx.send(input)).await.is_err()
    }

    async fn on_leave(&self, id: SessionId) {
        tracing::debug!(session = %id, "disconnected");
        let _ = self.tx.send(Input::Disconnect { conn: self.conn(id) }).await;
    }

    fn on_dropped(&self, id: SessionId, dropped: plaza_net::Dropped) {
        tracing::debug!(session = %id, ?dropped, "room messages dropped for a slow reader");
        let count = u32::try_from(dropped.count).unwrap_or(u32::MAX);
        // Tagged with their sequence numbers when they were ROOM_MESSAGEs
        // (`seq_of`): only connections with room history get those.
        let seqs = (dropped.first != 0).then_some((dropped.first, dropped.last));
        let missed = Event::Missed { count, seqs };
        let _ = match self.front {
            Front::Ws => self.net.send_with(id, |b| super::ws::put_event(b, &missed)),
            _ => self.net.send_with(id, |b| missed.encode(b)),
        };
    }

    fn on_error(&self, id: Option<SessionId>, error: &NetError) {
        match id {
            Some(id) => tracing::info!(session = %id, %error, "closing session"),
            None => tracing::warn!(%error, "listener error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plaza_net::{Server, ServerConfig};

    /// Every connection's task is the session driver's future with this
    /// gateway in it. At 528 bytes (release) the whole task takes
    /// jemalloc's 640-byte class; 16 more bytes took the 768-byte one and
    /// cost each idle connection 128 B (docs/BENCHMARKS.md, issue #26's
    /// section). Test builds lay futures out larger than release ones: the
    /// bound here is the test build's size when the release size was 528.
    #[tokio::test]
    async fn a_session_task_stays_in_its_allocation_class() {
        let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), plaza_proto::ChatFraming);
        let server = Server::bind(config).await.unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let gateway = Gateway {
            tx,
            net: server.handle(),
            logins: Arc::new(limits::LoginLimiter::new(0, 0)),
            front: Front::Binary,
        };
        let size = server.session_task_size(gateway).await.unwrap();
        println!("session task future: {size} bytes");
        assert!(
            size <= DEBUG_SIZE_AT_528,
            "the session future grew to {size} bytes"
        );
    }

    /// Measured with this test (a test build), on the commit whose release
    /// build measured 528.
    const DEBUG_SIZE_AT_528: usize = 536;
}
