//! Server and client configuration: every limit a peer can push against.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use crate::Framing;

/// How a [`Server`](crate::Server) listens and what it lets each peer hold.
///
/// Every field has a default chosen for a chat server on the open internet;
/// each is a bound on what one peer can make the server hold or spend.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Address and port to listen on (port 0 picks a free one).
    pub bind: SocketAddr,
    /// The wire framing of this listener.
    pub framing: Arc<dyn Framing>,
    /// Disable Nagle's algorithm (`TCP_NODELAY`). On by default: the
    /// 1-send writer already gathers small packets, so Nagle only adds delay.
    pub nodelay: bool,
    /// Gather writes while the CPU is short, by a shared clock that ticks
    /// every this long (one thread per server). While the runtime's workers
    /// are busy 80% of their time, a session writes at most once a tick, so
    /// one that receives many packets gets them in fewer, larger writes
    /// while one that receives now and then still writes at once; once they
    /// are saturated (95% for a few looks in a row), every write waits for
    /// the next tick, so reads and logic run first and each session gets
    /// what they queued in one write. A packet waits at most one tick; each
    /// mode is left after ten looks (a look every ten ticks) under 85% and
    /// 50%. `None` (the default): always at once.
    pub gather: Option<Duration>,
    /// Sessions held at once; the next connection is refused at accept and
    /// counted. This also sizes the session table.
    pub max_sessions: usize,
    /// Sessions held at once from one IP address; more are refused at
    /// accept and counted. `None`: no per-address limit.
    pub max_sessions_per_ip: Option<usize>,
    /// Largest frame accepted, header included. A header declaring more
    /// disconnects the session before anything of that size is allocated.
    pub max_frame: usize,
    /// Initial size of each session's receive buffer; it grows only as far
    /// as `max_frame` requires.
    pub recv_buffer: usize,
    /// Bytes queued for one session and not yet written. A reader that falls
    /// this far behind is disconnected at once (slow consumer) so nobody
    /// else waits.
    pub max_send_queue: usize,
    /// The soft limit: a session whose unsent bytes stay over this for
    /// `soft_send_grace` is disconnected as a slow consumer (a burst may
    /// pass it; a reader that stays behind may not), and packets that may
    /// be dropped are dropped, oldest first, to keep a session under it.
    /// At most `max_send_queue`.
    pub soft_send_queue: usize,
    /// How long a session may stay over `soft_send_queue`.
    pub soft_send_grace: Duration,
    /// A session that sends nothing for this long is closed. `None` disables.
    pub idle_timeout: Option<Duration>,
    /// One write that makes no progress for this long closes the session
    /// (a peer that stopped reading, or a half-open connection).
    pub write_timeout: Duration,
    /// How long a closing session may spend flushing what was queued before
    /// it (disconnect, graceful stop) is cut.
    pub linger: Duration,
    /// TCP keepalive idle time, to find half-open connections the idle
    /// timeout would not (when it is off). `None` leaves the OS default.
    pub keepalive: Option<Duration>,
    /// `listen(2)` backlog: connections the kernel holds before accept. A
    /// reconnect storm of thousands overflows a small queue and the kernel
    /// then drops or resets handshakes; Linux caps this at
    /// `net.core.somaxconn`.
    pub backlog: u32,
    /// A second listener, speaking TLS, sharing this server's sessions and
    /// limits. `None`: plain TCP only.
    #[cfg(feature = "tls")]
    pub tls: Option<TlsListener>,
    /// Time a client has to finish its TLS handshake, and then the
    /// preamble, before it is dropped (it holds a session slot meanwhile).
    pub handshake_timeout: Duration,
    /// What each connection says before its frames (an HTTP upgrade to
    /// WebSocket). `None`: frames from the first byte.
    pub preamble: Option<Arc<dyn crate::Preamble>>,
    /// Bytes to queue to a session that has sent nothing for this long,
    /// and again each time as long passes (a WebSocket ping, which a live
    /// peer answers): with the idle timeout, a peer that stopped answering
    /// is closed. `None`: nothing is sent.
    pub quiet_ping: Option<(Duration, bytes::Bytes)>,
    /// Bytes every session is sent when the server stops, before what was
    /// queued is flushed and it is closed (a WebSocket close frame saying
    /// why). `None`: nothing.
    pub farewell: Option<bytes::Bytes>,
    /// Bytes a slow consumer (a session whose unsent bytes reach
    /// `max_send_queue`) gets instead of everything queued for it and not
    /// yet being written, before it is closed (a WebSocket close frame
    /// saying why); it has `linger` to read them. `None` (the default): it
    /// is cut at once. Either way it is counted and reported as a slow
    /// consumer.
    pub slow_farewell: Option<bytes::Bytes>,
    /// Reads a tag (a sequence number, say) from a packet sent with
    /// [`Handle::send_droppable`](crate::Handle::send_droppable) that is
    /// dropped, so that [`Handler::on_dropped`](crate::Handler::on_dropped)
    /// can say which were: the tags of the first and last dropped.
    pub drop_tag: Option<fn(&[u8]) -> u64>,
}

/// Where a server listens for TLS and the certificate it presents.
#[cfg(feature = "tls")]
#[derive(Clone, Debug)]
pub struct TlsListener {
    /// Address and port (port 0 picks a free one).
    pub bind: SocketAddr,
    /// The certificate; [`TlsAcceptor::reload`](crate::tls::TlsAcceptor::reload)
    /// changes it for new connections.
    pub acceptor: crate::tls::TlsAcceptor,
}

impl ServerConfig {
    /// Defaults for the given framing, listening on `bind`.
    pub fn new(bind: SocketAddr, framing: impl Framing) -> Self {
        let max_frame = framing.max_frame();
        Self {
            bind,
            framing: Arc::new(framing),
            nodelay: true,
            gather: None,
            max_sessions: 10_000,
            max_sessions_per_ip: None,
            max_frame,
            recv_buffer: 4096,
            max_send_queue: 16 << 20,
            soft_send_queue: 1 << 20,
            soft_send_grace: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(120)),
            write_timeout: Duration::from_secs(30),
            linger: Duration::from_secs(5),
            keepalive: Some(Duration::from_secs(60)),
            backlog: 4096,
            #[cfg(feature = "tls")]
            tls: None,
            handshake_timeout: Duration::from_secs(10),
            preamble: None,
            quiet_ping: None,
            farewell: None,
            slow_farewell: None,
            drop_tag: None,
        }
    }

    pub(crate) fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            framing: self.framing.clone(),
            max_frame: self.max_frame.min(self.framing.max_frame()),
            recv_buffer: self.recv_buffer.max(self.framing.header_len()),
            max_send_queue: self.max_send_queue,
            soft_send_queue: self.soft_send_queue.min(self.max_send_queue),
            soft_send_grace: self.soft_send_grace,
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
            linger: self.linger,
            quiet_ping: self.quiet_ping.clone(),
        }
    }
}

/// Where a [`Client`](crate::Client) connects and how it behaves.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The server to connect to.
    pub server: SocketAddr,
    /// Local address to bind before connecting (seed 003's bind IP).
    pub bind: Option<SocketAddr>,
    /// The wire framing.
    pub framing: Arc<dyn Framing>,
    /// Disable Nagle's algorithm.
    pub nodelay: bool,
    /// Largest frame accepted from the server.
    pub max_frame: usize,
    /// Initial receive buffer.
    pub recv_buffer: usize,
    /// Bytes queued and not yet written before the connection is dropped.
    pub max_send_queue: usize,
    /// Close the connection after this long without a byte from the server.
    pub idle_timeout: Option<Duration>,
    /// One write that makes no progress for this long drops the connection.
    pub write_timeout: Duration,
    /// How long [`Client::disconnect`](crate::Client::disconnect) may spend
    /// flushing.
    pub linger: Duration,
    /// Time allowed for the TCP connect.
    pub connect_timeout: Duration,
    /// Reconnect after the connection drops; `None` stays disconnected.
    pub reconnect: Option<Backoff>,
    /// Speak TLS to the server (the handshake counts against
    /// `connect_timeout`). `None`: plain TCP.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::TlsConnector>,
}

impl ClientConfig {
    /// Defaults for connecting to `server` with `framing`.
    pub fn new(server: SocketAddr, framing: impl Framing) -> Self {
        let max_frame = framing.max_frame();
        Self {
            server,
            bind: None,
            framing: Arc::new(framing),
            nodelay: true,
            max_frame,
            recv_buffer: 4096,
            max_send_queue: 4 << 20,
            idle_timeout: None,
            write_timeout: Duration::from_secs(30),
            linger: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            reconnect: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    pub(crate) fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            framing: self.framing.clone(),
            max_frame: self.max_frame.min(self.framing.max_frame()),
            recv_buffer: self.recv_buffer.max(self.framing.header_len()),
            max_send_queue: self.max_send_queue,
            // A client's queue has one limit.
            soft_send_queue: self.max_send_queue,
            soft_send_grace: Duration::MAX,
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
            linger: self.linger,
            quiet_ping: None,
        }
    }
}

/// Exponential reconnect backoff with full jitter.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (0-based): a uniformly random
    /// duration up to `min(max, initial * 2^attempt)`, drawn from `seed`.
    pub fn delay(&self, attempt: u32, seed: u64) -> Duration {
        let cap = self.initial.saturating_mul(1u32 << attempt.min(20)).min(self.max);
        // splitmix64: enough to spread reconnects, no RNG crate needed.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let nanos = cap.as_nanos() as u64;
        Duration::from_nanos(if nanos == 0 { 0 } else { z % (nanos + 1) })
    }
}

/// The per-session subset of the configuration.
#[derive(Clone, Debug)]
pub(crate) struct SessionLimits {
    pub(crate) framing: Arc<dyn Framing>,
    pub(crate) max_frame: usize,
    pub(crate) recv_buffer: usize,
    pub(crate) max_send_queue: usize,
    pub(crate) soft_send_queue: usize,
    pub(crate) soft_send_grace: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) write_timeout: Duration,
    pub(crate) linger: Duration,
    pub(crate) quiet_ping: Option<(Duration, bytes::Bytes)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for attempt in 0..40 {
            for seed in 0..50 {
                let cap = Duration::from_millis(100 << attempt.min(4)).min(b.max);
                assert!(b.delay(attempt, seed) <= cap);
            }
        }
    }
}
