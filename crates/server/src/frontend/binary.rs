//! The binary front end: Plaza's chat protocol (seed packets included) on
//! the chat framing (`plaza_proto::ChatFraming`), over TCP or TLS.
//!
//! Inbound, the [`Gateway`] decodes each frame on the network threads and
//! queues it for the logic task. Outbound, [`Frames`] encodes a fan-out's
//! events once, the first time one of its recipients needs them; every
//! recipient shares those bytes.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use plaza_core::Input;
use plaza_net::{Handle, Handler, NetError, SessionId};
use plaza_proto::{Event, Request};
use tokio::sync::mpsc;

use crate::limits;

/// The network-side handler: decode, then queue for the logic task.
pub(crate) struct Gateway {
    pub(crate) tx: mpsc::Sender<Input>,
    pub(crate) net: Handle,
    pub(crate) logins: Arc<limits::LoginLimiter>,
}

impl Gateway {
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
        tracing::debug!(session = %id, %peer, "connected");
        let _ = self.tx.send(Input::Connect { conn: id.as_u64() }).await;
    }

    async fn on_recv(&self, id: SessionId, frame: &[u8]) {
        let conn = id.as_u64();
        let input = match Request::decode(frame) {
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
        };
        // The full channel's wait is boxed: this future sits in every
        // session's task, and the wait (the logic is behind) is rare. (A
        // `let else`, not an `if let`: the try's result would be kept across
        // the wait, in every session's task.)
        let Err(mpsc::error::TrySendError::Full(input)) = self.tx.try_send(input) else {
            return;
        };
        let _ = Box::pin(self.tx.send(input)).await;
    }

    async fn on_peer_closed(&self, id: SessionId) -> bool {
        // The hub closes it once the requests before are answered (a
        // client may send its requests and shut its side at once). The
        // wait, as in `on_recv`, is boxed: this future sits in every
        // session's task.
        // (The try's result is taken apart before the wait, not matched
        // around it: a match would keep it across the wait, in every
        // session's task.)
        let input = match self.tx.try_send(Input::PeerClosed { conn: id.as_u64() }) {
            Ok(()) => return false,
            Err(mpsc::error::TrySendError::Closed(_)) => return true,
            Err(mpsc::error::TrySendError::Full(input)) => input,
        };
        Box::pin(self.tx.send(input)).await.is_err()
    }

    async fn on_leave(&self, id: SessionId) {
        tracing::debug!(session = %id, "disconnected");
        let _ = self.tx.send(Input::Disconnect { conn: id.as_u64() }).await;
    }

    fn on_dropped(&self, id: SessionId, count: u64) {
        tracing::debug!(session = %id, count, "room messages dropped for a slow reader");
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        let _ = self.net.send_with(id, |b| Event::Missed { count }.encode(b));
    }

    fn on_error(&self, id: Option<SessionId>, error: &NetError) {
        match id {
            Some(id) => tracing::info!(session = %id, %error, "closing session"),
            None => tracing::warn!(%error, "listener error"),
        }
    }
}

/// A fan-out's events in the binary format, encoded once on first use.
pub(crate) struct Frames<'e> {
    events: &'e [Event],
    bytes: Option<Bytes>,
    /// Where each event ends in `bytes` (only when there are several).
    ends: Vec<usize>,
}

impl<'e> Frames<'e> {
    pub(crate) fn new(events: &'e [Event]) -> Self {
        Self {
            events,
            bytes: None,
            ends: Vec::new(),
        }
    }

    /// The frames of `events[first..]`, sharing one buffer.
    pub(crate) fn starting_at(&mut self, first: usize) -> Bytes {
        let (events, ends) = (self.events, &mut self.ends);
        let bytes = self.bytes.get_or_insert_with(|| {
            // Room for the largest chat frame (a seed-style room message is
            // 295 bytes): one allocation, not one per doubling.
            let mut b = BytesMut::with_capacity(512);
            for event in events {
                event.encode(&mut b);
                if events.len() > 1 {
                    ends.push(b.len());
                }
            }
            b.freeze()
        });
        match first {
            0 => bytes.clone(),
            n => bytes.slice(ends[n - 1]..),
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
