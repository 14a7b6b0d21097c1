//! The client side (seed 003's `CLanClient`): one connection to a server,
//! the same session machinery as the server's, and optional reconnect.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::SessionLimits;
use crate::outbox::Close;
use crate::session::{self, Events, SessionShared};
use crate::stats::Counters;
use crate::{ClientConfig, NetError, SendError, SessionId, Stream};

/// A client's events. For one connection: `on_connect`, then `on_recv` per
/// frame in order, then `on_disconnect`; with reconnect, the cycle repeats.
pub trait ClientHandler: Send + Sync + 'static {
    /// Connected (seed's `OnEnterJoinServer`); sends work from now on.
    fn on_connect(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
    /// The connection is closed (seed's `OnLeaveServer`).
    fn on_disconnect(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
    /// One complete frame, header included.
    fn on_recv(&self, frame: &[u8]) -> impl Future<Output = ()> + Send;
    /// A write of `bytes` bytes completed.
    fn on_send(&self, bytes: usize) {
        let _ = bytes;
    }
    /// Something went wrong; the connection is being closed, or a
    /// reconnect attempt failed.
    fn on_error(&self, error: &NetError) {
        let _ = error;
    }
}

struct Inner {
    current: Mutex<Option<Arc<SessionShared>>>,
    /// Cancelled by [`Client::disconnect`]: no more reconnecting.
    stop: CancellationToken,
    /// The connection's task.
    task: TaskTracker,
    attempts: AtomicU32,
    limits: SessionLimits,
    counters: Counters,
}

impl Inner {
    fn current(&self) -> Option<Arc<SessionShared>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn set_current(&self, s: Option<Arc<SessionShared>>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }
}

/// A connection to a server.
///
/// # Examples
/// ```no_run
/// use plaza_net::{Client, ClientConfig, ClientHandler, Lan};
///
/// struct Print;
/// impl ClientHandler for Print {
///     async fn on_recv(&self, frame: &[u8]) {
///         println!("{:?}", Lan::payload(frame));
///     }
/// }
///
/// # async fn run() -> Result<(), plaza_net::NetError> {
/// let config = ClientConfig::new("127.0.0.1:7000".parse().unwrap(), Lan);
/// let client = Client::connect(config, Print).await?;
/// let mut frame = bytes::BytesMut::new();
/// plaza_net::put_lan_frame(&mut frame, b"hello");
/// client.send(frame.freeze()).unwrap();
/// client.disconnect().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client(Arc<Inner>);

impl Client {
    /// Connects and starts the connection's task. The first connection must
    /// succeed; with [`ClientConfig::reconnect`] set, later drops are
    /// followed by reconnect attempts with backoff and jitter until
    /// [`disconnect`](Self::disconnect).
    ///
    /// # Errors
    /// If the first connection attempt fails or times out.
    pub async fn connect<H: ClientHandler>(config: ClientConfig, handler: H) -> Result<Self, NetError> {
        let stream = open(&config).await?;
        let inner = Arc::new(Inner {
            current: Mutex::new(None),
            stop: CancellationToken::new(),
            task: TaskTracker::new(),
            attempts: AtomicU32::new(0),
            limits: config.session_limits(),
            counters: Counters::default(),
        });
        let first = new_session(&inner, &stream);
        inner.set_current(Some(first.clone()));
        inner
            .task
            .spawn(drive(inner.clone(), config, Arc::new(handler), first, stream));
        inner.task.close();
        Ok(Self(inner))
    }

    /// Queues a shared packet.
    ///
    /// # Errors
    /// [`SendError::NoSession`] while disconnected; otherwise as
    /// [`Handle::send`](crate::Handle::send).
    pub fn send(&self, packet: Bytes) -> Result<(), SendError> {
        self.0.current().ok_or(SendError::NoSession)?.send(packet)
    }

    /// Encodes a packet straight into the outbox.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn send_with(&self, encode: impl FnOnce(&mut BytesMut)) -> Result<(), SendError> {
        self.0.current().ok_or(SendError::NoSession)?.send_with(encode)
    }

    /// Whether a connection is up now.
    pub fn is_connected(&self) -> bool {
        self.0.current().is_some()
    }

    /// Stops reconnecting, flushes what is queued (up to the linger time),
    /// closes, and returns after `on_disconnect` has run.
    pub async fn disconnect(&self) {
        self.0.stop.cancel();
        if let Some(s) = self.0.current() {
            s.close(Close::Flush(Instant::now() + self.0.limits.linger));
        }
        self.0.task.wait().await;
    }
}

fn new_session(inner: &Inner, stream: &Stream) -> Arc<SessionShared> {
    let attempt = inner.attempts.fetch_add(1, Ordering::Relaxed);
    let peer = stream
        .tcp()
        .peer_addr()
        .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
    Arc::new(SessionShared::new(
        SessionId::new(0, attempt + 1),
        peer,
        &inner.limits,
        Arc::new(crate::outbox::Common {
            dropped: inner.counters.dropped.clone(),
            writes: inner.counters.writes.clone(),
            bytes_out: inner.counters.bytes_out.clone(),
            last_words: None,
            drop_tag: None,
        }),
    ))
}

/// Connects, and runs the TLS handshake if configured, within the connect
/// timeout.
async fn open(config: &ClientConfig) -> Result<Stream, NetError> {
    let connect = async {
        let socket = if config.server.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(bind) = config.bind {
            socket.bind(bind)?;
        }
        let tcp = socket.connect(config.server).await?;
        tcp.set_nodelay(config.nodelay)?;
        #[cfg(feature = "tls")]
        if let Some(tls) = &config.tls {
            return tls.connect(tcp).await;
        }
        Ok::<_, io::Error>(Stream::Tcp(tcp))
    };
    match tokio::time::timeout(config.connect_timeout, connect).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(NetError::ConnectTimeout(config.connect_timeout)),
    }
}

struct ClientEvents<H>(Arc<H>);

impl<H: ClientHandler> Events for ClientEvents<H> {
    fn recv(&self, _id: SessionId, frame: &[u8]) -> impl Future<Output = ()> + Send {
        self.0.on_recv(frame)
    }
    async fn eof(&self, _id: SessionId) -> bool {
        true
    }
    fn sent(&self, _id: SessionId, bytes: usize) {
        self.0.on_send(bytes);
    }
    fn dropped(&self, _id: SessionId, _dropped: crate::Dropped) {}
}

async fn drive<H: ClientHandler>(
    inner: Arc<Inner>,
    config: ClientConfig,
    handler: Arc<H>,
    mut session: Arc<SessionShared>,
    mut stream: Stream,
) {
    let events = ClientEvents(handler);
    loop {
        events.0.on_connect().await;
        if inner.stop.is_cancelled() {
            session.close(Close::Flush(Instant::now() + inner.limits.linger));
        }
        let run = session::run(
            &session,
            (&mut stream).into(),
            &events,
            &inner.limits,
            &inner.counters,
            None,
        );
        let error = tokio::select! {
            e = run => e,
            never = session::watch_one(&session, &inner.limits, &inner.counters) => match never {},
        };
        drop(stream);
        if let Some(e) = error {
            tracing::debug!(error = %e, "client connection closed on error");
            events.0.on_error(&e);
        }
        inner.set_current(None);
        events.0.on_disconnect().await;
        let Some(backoff) = config.reconnect else {
            break;
        };
        // Reconnect until connected or told to stop.
        let mut attempt = 0;
        let next = loop {
            if inner.stop.is_cancelled() {
                break None;
            }
            let seed = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
                ^ u64::from(attempt);
            let delay = backoff.delay(attempt, seed);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                () = inner.stop.cancelled() => break None,
                () = tokio::time::sleep(delay) => {}
            }
            match open(&config).await {
                Ok(s) => break Some(s),
                Err(e) => events.0.on_error(&e),
            }
        };
        let Some(s) = next else { break };
        stream = s;
        session = new_session(&inner, &stream);
        inner.set_current(Some(session.clone()));
    }
}
