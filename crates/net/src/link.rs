//! Request/response over the LAN framing: the server-to-server link of
//! seed 003, with correlation ids and timeouts.
//!
//! Each LAN frame's payload is `kind u8`, `correlation u32 LE`, then the
//! body: kind 1 is a request, kind 2 its response with the same
//! correlation. A [`LinkClient`] matches responses to requests and fails a
//! request on timeout or disconnect; a link server answers each request with
//! whatever its [`LinkHandler`] returns, in order, per session.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BufMut;
use tokio::sync::oneshot;

use crate::{
    Client, ClientConfig, ClientHandler, Framing, Handle, Handler, Lan, NetError, SendError, Server,
    SessionId,
};

const REQUEST: u8 = 1;
const RESPONSE: u8 = 2;
const LINK_HEADER: usize = 5;

/// Why a link request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// No response within the timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The link dropped before the response came.
    #[error("link disconnected")]
    Disconnected,
    /// The request could not be queued.
    #[error("send: {0}")]
    Send(#[from] SendError),
    /// The request is larger than a LAN frame can carry.
    #[error("request of {0} bytes is too large")]
    TooLarge(usize),
}

fn put_message(dst: &mut bytes::BytesMut, kind: u8, corr: u32, body: &[u8]) -> Result<(), usize> {
    let len = u16::try_from(LINK_HEADER + body.len()).map_err(|_| body.len())?;
    dst.put_u16_le(len);
    dst.put_u8(kind);
    dst.put_u32_le(corr);
    dst.put_slice(body);
    Ok(())
}

fn parse(frame: &[u8]) -> Option<(u8, u32, &[u8])> {
    let p = Lan::payload(frame);
    if p.len() < LINK_HEADER {
        return None;
    }
    Some((
        p[0],
        u32::from_le_bytes([p[1], p[2], p[3], p[4]]),
        &p[LINK_HEADER..],
    ))
}

/// The answer to one link request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The response body.
    pub body: Vec<u8>,
    /// Close the link after this response is written (for example after a
    /// failed authentication).
    pub close: bool,
}

impl From<Vec<u8>> for Response {
    fn from(body: Vec<u8>) -> Self {
        Self { body, close: false }
    }
}

/// Answers link requests.
pub trait LinkHandler: Send + Sync + 'static {
    /// A peer connected from `peer`; return `false` to refuse it.
    fn on_connection_request(&self, peer: SocketAddr) -> bool {
        let _ = peer;
        true
    }
    /// The response to one request. Requests of one session are answered
    /// one at a time, in order.
    fn on_request(&self, id: SessionId, body: &[u8]) -> impl Future<Output = Response> + Send;
    /// A session left.
    fn on_leave(&self, id: SessionId) -> impl Future<Output = ()> + Send {
        let _ = id;
        async {}
    }
}

struct LinkServer<H> {
    handle: Handle,
    inner: H,
}

impl<H: LinkHandler> Handler for LinkServer<H> {
    fn on_connection_request(&self, peer: SocketAddr) -> bool {
        self.inner.on_connection_request(peer)
    }
    async fn on_recv(&self, id: SessionId, frame: &[u8]) {
        let Some((REQUEST, corr, body)) = parse(frame) else {
            tracing::info!(session = %id, "link: not a request; disconnecting");
            let _ = self.handle.disconnect(id);
            return;
        };
        let reply = self.inner.on_request(id, body).await;
        let sent = self.handle.send_with(id, |b| {
            if put_message(b, RESPONSE, corr, &reply.body).is_err() {
                let _ = put_message(b, RESPONSE, corr, b"");
            }
        });
        if let Err(e) = sent {
            tracing::debug!(session = %id, error = %e, "link: response not sent");
        }
        if reply.close {
            // Flushes the response first, then closes.
            let _ = self.handle.disconnect(id);
        }
    }
    async fn on_leave(&self, id: SessionId) {
        self.inner.on_leave(id).await;
    }
    fn on_error(&self, id: Option<SessionId>, error: &NetError) {
        tracing::info!(session = ?id, %error, "link session error");
    }
}

/// Starts `server` (which must use [`Lan`]) answering requests
/// with `handler`. Returns the server's handle.
pub fn serve<H: LinkHandler>(server: Server, handler: H) -> Handle {
    let handle = server.handle();
    server.start(LinkServer {
        handle: handle.clone(),
        inner: handler,
    })
}

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Vec<u8>>>>>;

struct Responses(Pending);

impl ClientHandler for Responses {
    async fn on_recv(&self, frame: &[u8]) {
        if let Some((RESPONSE, corr, body)) = parse(frame) {
            let waiter = self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&corr);
            if let Some(w) = waiter {
                let _ = w.send(body.to_vec());
            }
        }
    }
    async fn on_disconnect(&self) {
        // Every request in flight fails now rather than at its timeout.
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The requesting side of a link. Reconnects when
/// [`ClientConfig::reconnect`] is set.
pub struct LinkClient {
    client: Client,
    pending: Pending,
    next: AtomicU32,
}

impl LinkClient {
    /// Connects (the config's framing is forced to LAN).
    ///
    /// # Errors
    /// If the first connection attempt fails.
    pub async fn connect(mut config: ClientConfig) -> Result<Self, NetError> {
        config.framing = std::sync::Arc::new(Lan);
        config.max_frame = Lan.max_frame();
        let pending = Pending::default();
        let client = Client::connect(config, Responses(pending.clone())).await?;
        Ok(Self {
            client,
            pending,
            next: AtomicU32::new(1),
        })
    }

    /// Sends `body` and waits up to `timeout` for the response body.
    ///
    /// # Errors
    /// [`LinkError`] on timeout, disconnect, or a body too large.
    pub async fn request(&self, body: &[u8], timeout: Duration) -> Result<Vec<u8>, LinkError> {
        let corr = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(corr, tx);
        let mut too_large = None;
        let sent = self
            .client
            .send_with(|b| too_large = put_message(b, REQUEST, corr, body).err());
        let forget = || {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&corr);
        };
        if let Some(n) = too_large {
            forget();
            return Err(LinkError::TooLarge(n));
        }
        if let Err(e) = sent {
            forget();
            return Err(e.into());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(_)) => Err(LinkError::Disconnected),
            Err(_) => {
                forget();
                Err(LinkError::Timeout(timeout))
            }
        }
    }

    /// Whether the link is up.
    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Closes the link (and stops reconnecting).
    pub async fn close(&self) {
        self.client.disconnect().await;
    }
}
