//! The WebSocket front end: the binary protocol's packets, one per binary
//! WebSocket message (subprotocol `plaza.v1`), for browsers.
//!
//! Its own plaza-net server cuts the clients' WebSocket frames
//! (`plaza_net::ws::WebSocket`) after an HTTP upgrade (`http.rs`, which
//! also serves the web client). Inbound, [`WsGateway`] unmasks each
//! message and hands its packet to the same [`Gateway`] the binary front
//! end uses; it answers pings and closes itself. Outbound, each event is
//! the binary packet in one unmasked binary frame ([`put_event`]), encoded
//! once per fan-out and shared like the binary front end's.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use plaza_core::Input;
use plaza_net::ws::{Frame, close, opcode, put_close, put_message};
use plaza_net::{Handler, NetError, ServerConfig, SessionId};
use plaza_proto::{ChatFraming, Event, MAX_REQUEST_FRAME};

use super::binary::Gateway;

pub(crate) mod http;

/// The subprotocol: Plaza packets in binary messages.
pub(crate) const SUBPROTOCOL: &str = "plaza.v1";

/// How long a WebSocket may be quiet before the server pings it (the idle
/// timeout then closes it if nothing, not even the pong, comes back).
pub(crate) fn ping_after(idle: Duration) -> Duration {
    (idle / 2).max(Duration::from_secs(1))
}

/// Appends `event` as one binary WebSocket message.
pub(crate) fn put_event(dst: &mut BytesMut, event: &Event) {
    put_packet(dst, |b| event.encode(b));
}

/// Appends the packet `encode` writes as one binary WebSocket message.
pub(crate) fn put_packet(dst: &mut BytesMut, encode: impl FnOnce(&mut BytesMut)) {
    put_message(dst, opcode::BINARY, encode);
}

/// The sequence number of a room message in a WebSocket message the
/// server wrote (`plaza_proto::room_message_seq` after its header), or 0.
fn message_seq(message: &[u8]) -> u64 {
    let header = match message.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
        None => return 0,
    };
    message.get(header..).map_or(0, plaza_proto::room_message_seq)
}

/// Makes `config` the WebSocket front end's: the upgrade, pings to quiet
/// browsers, close frames at shutdown and for a slow consumer.
pub(crate) fn configure(config: &mut ServerConfig, web: Arc<http::Web>) {
    config.preamble = Some(web);
    if let Some(idle) = config.idle_timeout {
        config.quiet_ping = Some((ping_after(idle), Bytes::from_static(&[0x80 | opcode::PING, 0])));
    }
    let mut bye = BytesMut::new();
    put_close(
        &mut bye,
        close::GOING_AWAY,
        "server shutting down; reconnect in a few seconds",
    );
    config.farewell = Some(bye.freeze());
    let mut slow = BytesMut::new();
    let why = "too slow: messages for you piled up; reconnect to catch up";
    put_close(&mut slow, close::POLICY, why);
    config.slow_farewell = Some(slow.freeze());
    config.drop_tag = Some(message_seq);
}

/// What one WebSocket frame from a client asks for.
enum Inbound {
    /// A Plaza packet, decoded for the hub.
    Packet(Input),
    /// Nothing to do (a pong).
    Nothing,
    /// Answer a ping with this payload.
    Pong(Vec<u8>),
    /// Close with this code and logged reason.
    Close(u16, &'static str),
}

/// The WebSocket sessions' handler.
pub(crate) struct WsGateway {
    pub(crate) gateway: Gateway,
    /// The start of a fragmented message, per session that is in the
    /// middle of one (browsers do not fragment; other clients may).
    partial: Mutex<HashMap<SessionId, Vec<u8>>>,
    /// How many sessions are in the middle of one: while none is, a whole
    /// message takes no lock.
    fragmenting: AtomicUsize,
}

impl WsGateway {
    pub(crate) fn new(gateway: Gateway) -> Self {
        Self {
            gateway,
            partial: Mutex::default(),
            fragmenting: AtomicUsize::new(0),
        }
    }

    /// Takes `id`'s message begun, if any.
    fn take_partial(&self, id: SessionId) -> Option<Vec<u8>> {
        if self.fragmenting.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        let taken = partial.remove(&id);
        self.fragmenting.store(partial.len(), Ordering::Release);
        taken
    }

    fn keep_partial(&self, id: SessionId, so_far: Vec<u8>) {
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        partial.insert(id, so_far);
        self.fragmenting.store(partial.len(), Ordering::Release);
    }

    /// Reads one frame (not async: the unmasked copy stays on this stack,
    /// out of every session's task).
    fn inbound(&self, id: SessionId, frame: &[u8]) -> Inbound {
        let frame = Frame::parse(frame);
        match frame.opcode {
            opcode::BINARY | opcode::CONTINUATION => self.data(id, &frame),
            opcode::TEXT => Inbound::Close(close::INVALID_PAYLOAD, "plaza.v1 messages are binary"),
            opcode::PING => {
                let mut payload = vec![0; frame.len()];
                frame.unmask_into(&mut payload);
                Inbound::Pong(payload)
            }
            opcode::PONG => Inbound::Nothing,
            opcode::CLOSE => Inbound::Close(close::NORMAL, "the client closed"),
            _ => Inbound::Close(close::PROTOCOL_ERROR, "an unknown opcode"),
        }
    }

    /// A binary frame, or a continuation: a whole message is one packet.
    fn data(&self, id: SessionId, frame: &Frame<'_>) -> Inbound {
        let started = self.take_partial(id);
        let message = match (frame.opcode, started) {
            (opcode::BINARY, Some(_)) => {
                return Inbound::Close(close::PROTOCOL_ERROR, "a new message before the last one ended");
            }
            (opcode::CONTINUATION, None) => {
                return Inbound::Close(close::PROTOCOL_ERROR, "a continuation of no message");
            }
            (_, Some(mut so_far)) => {
                if so_far.len() + frame.len() > MAX_REQUEST_FRAME {
                    return Inbound::Close(close::TOO_BIG, "a message over the largest request");
                }
                let at = so_far.len();
                so_far.resize(at + frame.len(), 0);
                frame.unmask_into(&mut so_far[at..]);
                so_far
            }
            (_, None) if frame.fin => return self.packet(id, frame),
            (_, None) => {
                let mut first = vec![0; frame.len()];
                frame.unmask_into(&mut first);
                first
            }
        };
        if !frame.fin {
            self.keep_partial(id, message);
            return Inbound::Nothing;
        }
        self.whole(id, &message)
    }

    /// An unfragmented binary message, unmasked on the stack.
    fn packet(&self, id: SessionId, frame: &Frame<'_>) -> Inbound {
        // (The framing's cap refused larger frames from their header.)
        if frame.len() > MAX_REQUEST_FRAME {
            return Inbound::Close(close::TOO_BIG, "a message over the largest request");
        }
        let mut buf = [0u8; MAX_REQUEST_FRAME];
        let packet = &mut buf[..frame.len()];
        frame.unmask_into(packet);
        self.whole(id, packet)
    }

    /// A whole message: exactly one Plaza packet, or the connection closes.
    fn whole(&self, id: SessionId, message: &[u8]) -> Inbound {
        match plaza_net::next_frame(&ChatFraming, message, MAX_REQUEST_FRAME) {
            Ok(Some(n)) if n == message.len() => Inbound::Packet(self.gateway.input(id, message)),
            _ => Inbound::Close(
                close::INVALID_PAYLOAD,
                "a message must hold exactly one Plaza packet",
            ),
        }
    }

    /// Sends a close frame, then closes once it is written.
    fn close(&self, id: SessionId, code: u16, why: &str) {
        if code == close::NORMAL {
            tracing::debug!(session = %id, "websocket closed by the client");
        } else {
            tracing::info!(session = %id, code, reason = why, "closing websocket");
        }
        let net = &self.gateway.net;
        let _ = net.send_with(id, |b| put_close(b, code, why));
        let _ = net.disconnect(id);
    }
}

impl Handler for WsGateway {
    // The events the binary front end's gateway handles, passed on as its
    // futures (a wrapping async fn would add its own state to every
    // session's task).
    fn on_join(&self, id: SessionId, peer: SocketAddr) -> impl Future<Output = ()> + Send {
        self.gateway.on_join(id, peer)
    }

    // Not an async fn: its arguments would sit in every session's task.
    fn on_recv(&self, id: SessionId, frame: &[u8]) -> impl Future<Output = ()> + Send {
        let input = match self.inbound(id, frame) {
            Inbound::Packet(input) => Some(input),
            Inbound::Nothing => None,
            Inbound::Pong(payload) => {
                let pong = |b: &mut BytesMut| put_message(b, opcode::PONG, |b| b.extend_from_slice(&payload));
                let _ = self.gateway.net.send_with(id, pong);
                None
            }
            Inbound::Close(code, why) => {
                self.close(id, code, why);
                None
            }
        };
        self.gateway.queue(input)
    }

    fn on_peer_closed(&self, id: SessionId) -> impl Future<Output = bool> + Send {
        self.gateway.on_peer_closed(id)
    }

    fn on_leave(&self, id: SessionId) -> impl Future<Output = ()> + Send {
        self.take_partial(id);
        self.gateway.on_leave(id)
    }

    fn on_dropped(&self, id: SessionId, dropped: plaza_net::Dropped) {
        self.gateway.on_dropped(id, dropped);
    }

    fn on_error(&self, id: Option<SessionId>, error: &NetError) {
        self.gateway.on_error(id, error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::Front;
    use crate::limits::LoginLimiter;
    use plaza_net::Server;
    use tokio::sync::mpsc;

    /// A WebSocket session's task is no larger than a binary one's (see
    /// `binary.rs`'s test: 528 bytes in a test build when release's was
    /// 528, jemalloc's 640-byte class with the task's header).
    #[tokio::test]
    async fn a_websocket_session_task_is_no_larger_than_a_binary_one() {
        let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), plaza_net::ws::WebSocket);
        let server = Server::bind(config).await.unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let gateway = WsGateway::new(Gateway {
            tx,
            net: server.handle(),
            logins: Arc::new(LoginLimiter::new(0, 0)),
            front: Front::Ws,
        });
        let size = server.session_task_size(gateway).await.unwrap();
        println!("websocket session task future: {size} bytes");
        assert!(size <= 536, "the WebSocket session future grew to {size} bytes");
    }
}
