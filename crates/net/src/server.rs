//! The server: an accept loop, the session table, and the [`Handler`] that
//! receives every event.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;

use crate::config::SessionLimits;
use crate::gather::{self, Gather};
use crate::outbox::Close;
use crate::session::{self, Events, SessionShared};
use crate::stats::Counters;
use crate::table::Table;
use crate::{NetError, SendError, ServerConfig, SessionId, Stats, Stream};

/// What a listener adds to TCP: a TLS handshake, or nothing. (Without the
/// `tls` feature no listener has one.)
#[cfg(feature = "tls")]
type Tls = crate::tls::TlsAcceptor;
#[cfg(not(feature = "tls"))]
type Tls = std::convert::Infallible;

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

    /// A write of `bytes` bytes to `id` completed.
    fn on_send(&self, id: SessionId, bytes: usize) {
        let _ = (id, bytes);
    }

    /// `count` packets sent with [`Handle::send_droppable`] were dropped for
    /// `id` because it read too slowly; called after the next write
    /// completes, so a notice sent from here finds room.
    fn on_dropped(&self, id: SessionId, count: u64) {
        let _ = (id, count);
    }

    /// Something went wrong: for a session (it is being closed), or for the
    /// listener (`id` is `None`).
    fn on_error(&self, id: Option<SessionId>, error: &NetError) {
        let _ = (id, error);
    }
}

/// State shared by the listener, the sessions and every [`Handle`].
struct Shared {
    table: Table,
    limits: SessionLimits,
    counters: Counters,
    /// The writers' shared clock while the CPU is short (`ServerConfig::gather`).
    gather: Option<Arc<Gather>>,
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    #[cfg(feature = "tls")]
    handshake_timeout: Duration,
    sessions: AtomicUsize,
    /// The accept loop plus every session task.
    tasks: AtomicUsize,
    tasks_done: Notify,
    stopping: AtomicBool,
    stop_wake: Notify,
    /// Sessions per peer address, when `max_sessions_per_ip` is set.
    per_ip: Option<(
        usize,
        std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    )>,
}

impl Shared {
    /// Counts a session from `ip`, or refuses it at the per-address limit.
    fn admit_ip(&self, ip: std::net::IpAddr) -> bool {
        let Some((max, map)) = &self.per_ip else {
            return true;
        };
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= *max {
            return false;
        }
        *n += 1;
        true
    }

    fn release_ip(&self, ip: std::net::IpAddr) {
        let Some((_, map)) = &self.per_ip else { return };
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// A bound server, not yet accepting. Take a [`Handle`] from it to give to
/// your handler, then [`start`](Self::start) it.
///
/// # Examples
/// ```no_run
/// use plaza_net::{Framing, Handle, Handler, Server, ServerConfig, SessionId};
///
/// struct Echo(Handle);
/// impl Handler for Echo {
///     async fn on_recv(&self, id: SessionId, frame: &[u8]) {
///         let _ = self.0.send_slice(id, frame);
///     }
/// }
///
/// # async fn run() -> std::io::Result<()> {
/// let server = Server::bind(ServerConfig::new("127.0.0.1:7000".parse().unwrap(), Framing::Lan)).await?;
/// let handle = server.handle();
/// server.start(Echo(handle.clone()));
/// // ... later
/// handle.stop(std::time::Duration::from_secs(5)).await;
/// # Ok(()) }
/// ```
pub struct Server {
    /// The plain listener first, then the TLS one if configured.
    listeners: Vec<(TcpListener, Option<Tls>)>,
    config: ServerConfig,
    shared: Arc<Shared>,
}

/// Binds and listens; the error names the address.
fn listen(bind: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if bind.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    };
    socket
        .and_then(|s| {
            s.set_reuseaddr(true)?;
            s.bind(bind)?;
            s.listen(backlog)
        })
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {bind}: {e}")))
}

impl Server {
    /// Binds the listening sockets: the plain one, and the TLS one if
    /// `config.tls` is set.
    ///
    /// # Errors
    /// If an address cannot be bound.
    pub async fn bind(config: ServerConfig) -> io::Result<Self> {
        let listener = listen(config.bind, config.backlog)?;
        let local_addr = listener.local_addr()?;
        #[cfg(feature = "tls")]
        let tls = match &config.tls {
            Some(t) => Some((listen(t.bind, config.backlog)?, Some(t.acceptor.clone()))),
            None => None,
        };
        #[cfg(not(feature = "tls"))]
        let tls = None;
        let listeners: Vec<_> = std::iter::once((listener, None)).chain(tls).collect();
        let tls_addr = match listeners.get(1) {
            Some((l, _)) => Some(l.local_addr()?),
            None => None,
        };
        let shared = Arc::new(Shared {
            table: Table::new(config.max_sessions),
            limits: config.session_limits(),
            counters: Counters::default(),
            gather: config.gather.map(|every| Arc::new(Gather::new(every))),
            local_addr,
            tls_addr,
            #[cfg(feature = "tls")]
            handshake_timeout: config.handshake_timeout,
            sessions: AtomicUsize::new(0),
            tasks: AtomicUsize::new(0),
            tasks_done: Notify::new(),
            stopping: AtomicBool::new(false),
            stop_wake: Notify::new(),
            per_ip: config
                .max_sessions_per_ip
                .map(|m| (m, std::sync::Mutex::default())),
        });
        Ok(Self {
            listeners,
            config,
            shared,
        })
    }

    /// A handle for sending, disconnecting and stopping.
    pub fn handle(&self) -> Handle {
        Handle(self.shared.clone())
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The TLS listener's address, if there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.shared.tls_addr
    }

    /// Starts accepting on the current tokio runtime and returns a handle.
    pub fn start<H: Handler>(self, handler: H) -> Handle {
        let handle = self.handle();
        let handler = Arc::new(handler);
        let config = Arc::new(self.config);
        for (listener, tls) in self.listeners {
            self.shared.tasks.fetch_add(1, Ordering::AcqRel);
            tokio::spawn(accept_loop(
                listener,
                tls,
                config.clone(),
                self.shared.clone(),
                handler.clone(),
            ));
        }
        tokio::spawn(watch(Arc::downgrade(&self.shared)));
        if let Some(g) = &self.shared.gather {
            gather::start(g, tokio::runtime::Handle::current().metrics());
        }
        handle
    }
}

/// The sessions' watchdog: a few times a second, looks at every session
/// for its timeouts ([`SessionShared::look`]). One task per server, so a
/// session needs no timer of its own.
async fn watch(shared: std::sync::Weak<Shared>) {
    let Some(every) = shared.upgrade().map(|s| session::watch_interval(&s.limits)) else {
        return;
    };
    let mut tick = crate::ticker(every);
    loop {
        tick.tick().await;
        // Ends with the server: the handles and tasks hold it, this does not.
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        shared
            .table
            .for_each(|s| s.look(&shared.limits, every, now, &shared.counters));
    }
}

/// Sends to sessions, disconnects them, reads counters, stops the server.
/// Cheap to clone; safe to use from any thread.
#[derive(Clone)]
pub struct Handle(Arc<Shared>);

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
        self.0.table.with(id, SessionShared::pending_bytes)
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

    /// Whether [`stop`](Self::stop) has been called.
    pub fn is_stopping(&self) -> bool {
        self.0.stopping.load(Ordering::Acquire)
    }

    /// Stops gracefully: closes the listeners, flushes every session's queue
    /// for up to `linger`, closes every session, and returns once every
    /// session has left (its `on_leave` has returned). On a server that was
    /// bound but never started it returns at once.
    pub async fn stop(&self, linger: Duration) {
        let s = &self.0;
        s.stopping.store(true, Ordering::SeqCst);
        s.stop_wake.notify_waiters();
        let deadline = Instant::now() + linger;
        s.table.for_each(|session| session.close(Close::Flush(deadline)));
        crate::wait_until(&s.tasks_done, || s.tasks.load(Ordering::Acquire) == 0).await;
    }
}

impl Shared {
    /// A session's task has ended: it leaves the table and the counts.
    fn forget(&self, session: &SessionShared) {
        self.table.remove(session.id);
        self.release_ip(session.peer.ip());
        self.sessions.fetch_sub(1, Ordering::AcqRel);
    }

    fn task_done(&self) {
        if self.tasks.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.tasks_done.notify_waiters();
        }
    }

    async fn stopped(&self) {
        crate::wait_until(&self.stop_wake, || self.stopping.load(Ordering::SeqCst)).await;
    }
}

struct ServerEvents<H>(Arc<H>);

impl<H: Handler> Events for ServerEvents<H> {
    fn recv(&self, id: SessionId, frame: &[u8]) -> impl Future<Output = ()> + Send {
        self.0.on_recv(id, frame)
    }
    fn eof(&self, id: SessionId) -> impl Future<Output = bool> + Send {
        self.0.on_peer_closed(id)
    }
    fn sent(&self, id: SessionId, bytes: usize) {
        self.0.on_send(id, bytes);
    }
    fn dropped(&self, id: SessionId, count: u64) {
        self.0.on_dropped(id, count);
    }
}

async fn accept_loop<H: Handler>(
    listener: TcpListener,
    tls: Option<Tls>,
    config: Arc<ServerConfig>,
    shared: Arc<Shared>,
    handler: Arc<H>,
) {
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = tokio::select! {
            biased;
            () = shared.stopped() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS...: back off instead of spinning;
                // sessions that leave meanwhile free descriptors.
                shared.counters.accept_errors.incr();
                backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                tracing::warn!(error = %e, ?backoff, "accept failed; backing off");
                handler.on_error(None, &NetError::Accept(e));
                tokio::select! {
                    () = shared.stopped() => break,
                    () = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        backoff = Duration::ZERO;
        if !handler.on_connection_request(peer) {
            shared.counters.refused_by_handler.incr();
            tracing::debug!(%peer, "connection refused by handler");
            continue;
        }
        if !shared.admit_ip(peer.ip()) {
            shared.counters.refused_per_ip.incr();
            tracing::debug!(%peer, "connection refused: too many from this address");
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            continue;
        }
        let Some(id) = shared.table.reserve() else {
            shared.release_ip(peer.ip());
            shared.counters.refused_full.incr();
            tracing::debug!(%peer, max = config.max_sessions, "connection refused: server full");
            // Reset instead of FIN so a flood does not leave TIME_WAIT here.
            // (A zero linger resets at once; it never blocks on close.)
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            continue;
        };
        if let Err(e) = configure(&stream, &config) {
            shared.table.unreserve(id);
            shared.release_ip(peer.ip());
            handler.on_error(None, &NetError::Io(e));
            continue;
        }
        shared.counters.accepted.incr();
        let session = Arc::new(SessionShared::new(
            id,
            peer,
            &shared.limits,
            shared.counters.dropped.clone(),
        ));
        shared.tasks.fetch_add(1, Ordering::AcqRel);
        shared.sessions.fetch_add(1, Ordering::AcqRel);
        shared.table.insert(session.clone());
        if shared.stopping.load(Ordering::SeqCst) {
            // stop() may have swept the table before this insert.
            session.close(Close::Flush(Instant::now() + shared.limits.linger));
        }
        tokio::spawn(run_session(
            shared.clone(),
            handler.clone(),
            session,
            Stream::Tcp(stream),
            tls.clone(),
        ));
    }
    drop(listener);
    shared.task_done();
}

fn configure(stream: &TcpStream, config: &ServerConfig) -> io::Result<()> {
    stream.set_nodelay(config.nodelay)?;
    if let Some(idle) = config.keepalive {
        let ka = socket2::TcpKeepalive::new().with_time(idle);
        socket2::SockRef::from(stream).set_tcp_keepalive(&ka)?;
    }
    Ok(())
}

// Not an async fn: that would keep the arguments twice in every
// session's task (rust-lang/rust#62958).
#[expect(clippy::manual_async_fn, reason = "smaller session tasks")]
fn run_session<H: Handler>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    session: Arc<SessionShared>,
    mut stream: Stream,
    tls: Option<Tls>,
) -> impl Future<Output = ()> + Send {
    // The stream stays in this one place (taken for the handshake, put
    // back, lent to the session): each move to a new binding would keep
    // another copy of the socket in every session's task.
    async move {
        let id = session.id;
        if let Some(tls) = tls {
            // Boxed: the handshake's state is large and lasts a moment; inline,
            // it would size every session's task, TLS or not.
            match Box::pin(handshake(&shared, &session, &tls, stream)).await {
                Some(s) => stream = s,
                // A failed handshake never joined: no events at all.
                None => {
                    shared.forget(&session);
                    return shared.task_done();
                }
            }
        }
        handler.on_join(id, session.peer).await;
        let events = ServerEvents(handler.clone());
        let error = session::run(
            &session,
            &mut stream,
            &events,
            &shared.limits,
            &shared.counters,
            shared.gather.as_deref(),
        )
        .await;
        drop(stream);
        if let Some(e) = error {
            if matches!(e, NetError::SlowConsumer { .. }) {
                shared.counters.slow_consumers.incr();
            }
            tracing::debug!(session = %id, peer = %session.peer, error = %e, "session closed on error");
            handler.on_error(Some(id), &e);
        }
        shared.forget(&session);
        handler.on_leave(id).await;
        shared.task_done();
    }
}

impl Server {
    /// The size of one plain-TCP session's task future with `handler`: what
    /// the session driver costs every connection, for a test that guards it
    /// (a byte over an allocator size class costs the whole next class per
    /// connection). The future is built on a loopback socket and dropped
    /// unpolled. Not part of the API.
    ///
    /// # Errors
    /// If the loopback socket cannot be made.
    #[doc(hidden)]
    pub async fn session_task_size<H: Handler>(self, handler: H) -> io::Result<usize> {
        let stream = TcpStream::connect(self.shared.local_addr).await?;
        let id = self
            .shared
            .table
            .reserve()
            .ok_or_else(|| io::Error::other("no slot"))?;
        let peer = stream.local_addr()?;
        let session = Arc::new(SessionShared::new(
            id,
            peer,
            &self.shared.limits,
            self.shared.counters.dropped.clone(),
        ));
        let task = run_session(
            self.shared.clone(),
            Arc::new(handler),
            session,
            Stream::Tcp(stream),
            None,
        );
        Ok(std::mem::size_of_val(&task))
    }
}

/// Runs the TLS handshake, bounded by the handshake timeout and cut short
/// by a disconnect or stop. `None` (counted and logged): the connection is
/// dropped.
#[cfg(feature = "tls")]
async fn handshake(shared: &Shared, session: &SessionShared, tls: &Tls, stream: Stream) -> Option<Stream> {
    let Stream::Tcp(tcp) = stream else {
        return Some(stream);
    };
    let accept = tokio::time::timeout(shared.handshake_timeout, tls.accept(tcp));
    let error = tokio::select! {
        biased;
        () = session.closed() => "closed during the handshake".to_owned(),
        r = accept => match r {
            Ok(Ok(stream)) => {
                shared.counters.tls_accepted.incr();
                return Some(stream);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no handshake within {:?}", shared.handshake_timeout),
        },
    };
    shared.counters.tls_handshake_failures.incr();
    tracing::debug!(session = %session.id, peer = %session.peer, %error, "TLS handshake failed");
    None
}

#[cfg(not(feature = "tls"))]
async fn handshake(_: &Shared, _: &SessionShared, tls: &Tls, _: Stream) -> Option<Stream> {
    match *tls {}
}
