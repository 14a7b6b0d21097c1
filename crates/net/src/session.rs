//! One session: a reader and a writer driven together in one task.
//!
//! The reader reads into the session's [`RecvBuf`] and hands every
//! complete frame to the handler in place, in order. The writer is the
//! only one that writes to the stream (1-send): it takes
//! the whole outbox at once and writes it with one vectored write, then
//! flushes (which TLS needs and TCP answers at once). Both stop when the
//! session is closed, from inside (EOF, bad frame, write error) or outside
//! (disconnect, slow consumer, timeout, server stop); the first reason to
//! close wins, except that an abort overrides a pending flush.
//!
//! A session holds no timer. Its halves leave progress marks, and a
//! watchdog that looks at every session of a server a few times a second
//! ([`SessionShared::look`]) closes those idle, stalled on a write, or
//! lingering past their deadline. An idle session so holds little more than
//! its socket: no buffer, no timer, one waker.

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::SessionLimits;
use crate::gather::Gather;
use crate::outbox::{Batch, Close, MAX_IOV, Outbox};
use crate::recv_buf::RecvBuf;
use crate::stats::Counters;
use crate::stream::Sock;
use crate::{NetError, SendError, SessionId, Stream};

/// What the session driver reports to its owner (server or client).
pub(crate) trait Events: Send + Sync + 'static {
    fn recv(&self, id: SessionId, frame: &[u8]) -> impl Future<Output = ()> + Send;
    /// The peer finished sending. `true`: close the session now (after
    /// what is queued); `false`: the owner closes it when it is done.
    fn eof(&self, id: SessionId) -> impl Future<Output = bool> + Send;
    fn sent(&self, id: SessionId, bytes: usize);
    fn dropped(&self, id: SessionId, count: u64);
}

/// The part of a session other threads reach: its outbox, its doorbell
/// and the marks its watchdog reads.
pub(crate) struct SessionShared {
    pub(crate) id: SessionId,
    pub(crate) peer: SocketAddr,
    outbox: Mutex<Outbox>,
    /// Rung for queued packets and for a close. The writer always listens
    /// (idle or mid-write); the reader learns of a close because both
    /// halves are polled whenever the task wakes (see `Both`).
    wake: Doorbell,
    closing: AtomicBool,
    aborted: AtomicBool,
    marks: Marks,
}

/// A doorbell with one listener: a flag and the listener's waker. A ring
/// with no one listening is kept for the next look, and several rings
/// before a look are one. (tokio's `Notify` takes a lock per ring with a
/// waiter and puts a 64-byte `Notified` in the listener's task.)
#[derive(Default)]
struct Doorbell {
    rung: AtomicBool,
    waker: AtomicWaker,
}

impl Doorbell {
    fn ring(&self) {
        self.rung.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Makes the next ring wake this task, without taking a ring meant for
    /// the listener: for the reader draining after a close, which shares
    /// the writer's task (and so its waker).
    fn listen(&self, cx: &mut Context<'_>) {
        self.waker.register(cx.waker());
    }

    /// Ready, once, after a ring since the last time it was ready.
    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Register before the second look, so a ring between the two is seen.
        if !self.rung.swap(false, Ordering::AcqRel) {
            self.waker.register(cx.waker());
            if !self.rung.swap(false, Ordering::AcqRel) {
                return Poll::Pending;
            }
        }
        Poll::Ready(())
    }
}

/// Progress marks the halves leave for the watchdog, and its counts.
/// Relaxed: a mark seen one look late only delays a timeout by a look.
#[derive(Default)]
struct Marks {
    /// The reader is waiting for the peer's bytes.
    reading: AtomicBool,
    /// Bytes arrived since the watchdog's last look.
    read_seen: AtomicBool,
    /// A write, flush or shutdown is in flight.
    writing: AtomicBool,
    /// A write made progress since the watchdog's last look.
    write_seen: AtomicBool,
    /// Looks in a row that found the reader waiting and nothing read.
    idle_looks: AtomicU32,
    /// Looks in a row that found a write in flight and no progress.
    stalled_looks: AtomicU32,
}

/// Counts one look: `looks` goes back to zero if there was `progress` or
/// nothing was `waiting`, else up by one. Returns the new count.
fn count_look(looks: &AtomicU32, waiting: &AtomicBool, progress: &AtomicBool) -> u32 {
    let n = if progress.swap(false, Ordering::Relaxed) || !waiting.load(Ordering::Relaxed) {
        0
    } else {
        looks.load(Ordering::Relaxed).saturating_add(1)
    };
    looks.store(n, Ordering::Relaxed);
    n
}

/// Looks in a row without progress that make `timeout`: the last progress
/// came before the first of them, so `timeout` has passed by the last.
fn looks_for(timeout: Duration, every: Duration) -> u32 {
    let n = timeout.as_nanos().div_ceil(every.as_nanos().max(1));
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

/// How often a watchdog looks at its sessions: each timeout fires at most
/// an eighth of itself (and at most a second) late.
pub(crate) fn watch_interval(limits: &SessionLimits) -> Duration {
    let shortest = limits
        .idle_timeout
        .unwrap_or(Duration::MAX)
        .min(limits.write_timeout)
        .min(limits.linger);
    (shortest / 8).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

impl SessionShared {
    pub(crate) fn new(
        id: SessionId,
        peer: SocketAddr,
        limits: &SessionLimits,
        dropped: std::sync::Arc<crate::stats::Counter>,
    ) -> Self {
        Self {
            id,
            peer,
            outbox: Mutex::new(Outbox::new(limits.max_send_queue, dropped)),
            wake: Doorbell::default(),
            closing: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            marks: Marks::default(),
        }
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // A panic while holding this lock leaves the queue consistent (every
        // update is a single push or swap), so poisoning is ignored.
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a shared packet.
    pub(crate) fn send(&self, packet: Bytes) -> Result<(), SendError> {
        let r = self.outbox().push_shared(packet);
        self.after_push(r)
    }

    /// Queues a packet that may be dropped (oldest first) when the session
    /// falls behind.
    pub(crate) fn send_droppable(&self, packet: Bytes) -> Result<(), SendError> {
        let r = self.outbox().push_droppable(packet);
        self.after_push(r)
    }

    /// Encodes straight into this session's outbox.
    pub(crate) fn send_with(&self, encode: impl FnOnce(&mut BytesMut)) -> Result<(), SendError> {
        let r = self.outbox().push_with(encode);
        self.after_push(r)
    }

    /// Wakes the writer if the push asked for it; on a full queue (the
    /// outbox recorded the abort) wakes the task to act on it.
    fn after_push(&self, r: Result<bool, SendError>) -> Result<(), SendError> {
        if r == Err(SendError::QueueFull) {
            self.signal_close(true);
        }
        if r? {
            self.wake.ring();
        }
        Ok(())
    }

    /// Bytes queued or being written.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.outbox().pending
    }

    /// Starts closing the session. A flush keeps an earlier abort; an abort
    /// replaces an earlier flush.
    pub(crate) fn close(&self, how: Close) {
        let abort = matches!(how, Close::Abort(_));
        {
            let mut o = self.outbox();
            match (&o.close, &how) {
                (None, _) | (Some(Close::Flush(_)), Close::Abort(_)) => o.close = Some(how),
                (Some(Close::Flush(old)), Close::Flush(new)) if new < old => o.close = Some(how),
                _ => {}
            }
        }
        self.signal_close(abort);
    }

    fn signal_close(&self, abort: bool) {
        if abort {
            self.aborted.store(true, Ordering::Release);
        }
        self.closing.store(true, Ordering::Release);
        self.wake.ring();
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// Resolves once the session is closing. Only for before [`run`]: the
    /// doorbell has one listener, the writer once it runs.
    pub(crate) async fn closed(&self) {
        poll_fn(|cx| {
            while !self.is_closing() {
                std::task::ready!(self.wake.poll(cx));
            }
            Poll::Ready(())
        })
        .await;
    }

    fn abort(&self, error: NetError) {
        self.close(Close::Abort(Some(error)));
    }

    /// The error that ended the session, if it ended in error.
    fn take_error(&self) -> Option<NetError> {
        match self.outbox().close.take() {
            Some(Close::Abort(e)) => e,
            _ => None,
        }
    }

    /// The watchdog's look, one every `every`: closes the session if it
    /// has read nothing for the idle timeout, if a write has made no
    /// progress for the write timeout, or if a flush has run past its
    /// deadline.
    pub(crate) fn look(&self, limits: &SessionLimits, every: Duration, now: Instant, counters: &Counters) {
        if self.is_aborted() {
            return;
        }
        let m = &self.marks;
        let closing = self.is_closing();
        if let Some(t) = limits.idle_timeout
            && !closing
            && count_look(&m.idle_looks, &m.reading, &m.read_seen) >= looks_for(t, every)
        {
            counters.idle_timeouts.incr();
            return self.abort(NetError::IdleTimeout(t));
        }
        if count_look(&m.stalled_looks, &m.writing, &m.write_seen) >= looks_for(limits.write_timeout, every) {
            counters.write_timeouts.incr();
            return self.abort(NetError::WriteTimeout(limits.write_timeout));
        }
        if closing {
            let expired = {
                let o = self.outbox();
                matches!(o.close, Some(Close::Flush(d)) if now >= d).then_some(o.pending)
            };
            match expired {
                Some(0) => self.close(Close::Abort(None)),
                Some(pending) => self.abort(NetError::LingerExpired(pending)),
                None => {}
            }
        }
    }
}

/// Looks at one session every [`watch_interval`], for as long as the
/// caller polls this (a client's connection; a server watches its table).
pub(crate) async fn watch_one(
    session: &SessionShared,
    limits: &SessionLimits,
    counters: &Counters,
) -> std::convert::Infallible {
    let every = watch_interval(limits);
    let mut tick = crate::ticker(every);
    loop {
        tick.tick().await;
        session.look(limits, every, Instant::now(), counters);
    }
}

/// Runs a session until it is fully closed. Returns the error that ended it,
/// if any; the caller then drops the stream, which closes the socket. The
/// stream is lent, not moved in: a move keeps a second copy of the socket
/// in every session's task. Timeouts are the watchdog's: see
/// [`SessionShared::look`].
// Not an async fn: that would keep the arguments twice in every
// session's task (rust-lang/rust#62958).
#[expect(clippy::manual_async_fn, reason = "smaller session tasks")]
pub(crate) fn run<E: Events>(
    shared: &SessionShared,
    stream: &mut Stream,
    events: &E,
    limits: &SessionLimits,
    counters: &Counters,
    gather: Option<&Gather>,
) -> impl Future<Output = Option<NetError>> {
    async move {
        // The halves take their ends by value and are awaited in place: a
        // local or a helper future here would sit in every session's task.
        match stream {
            Stream::Tcp(tcp) => {
                Both::new(
                    read_loop(shared, Sock(tcp), events, limits, counters),
                    write_loop(shared, Sock(tcp), events, counters, gather),
                )
                .await;
            }
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => {
                // Both halves are polled from this one task, so the lock
                // `split` puts between them is never contended.
                let (rd, wr) = tokio::io::split(&mut **tls);
                Both::new(
                    read_loop(shared, rd, events, limits, counters),
                    write_loop(shared, wr, events, counters, gather),
                )
                .await;
            }
        }
        shared.take_error()
    }
}

pin_project_lite::pin_project! {
    /// A session's reader and writer, run together until both have ended.
    /// Both are polled each time the task wakes: that is how one learns
    /// the other closed the session, with no waker of its own. One that
    /// ends makes the other look again at once.
    struct Both<R, W> {
        #[pin]
        read: R,
        #[pin]
        write: W,
        done: (bool, bool),
    }
}

impl<R: Future<Output = ()>, W: Future<Output = ()>> Both<R, W> {
    fn new(read: R, write: W) -> Self {
        Self {
            read,
            write,
            done: (false, false),
        }
    }
}

impl<R: Future<Output = ()>, W: Future<Output = ()>> Future for Both<R, W> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        loop {
            let before = *this.done;
            if !this.done.0 {
                this.done.0 = this.read.as_mut().poll(cx).is_ready();
            }
            if !this.done.1 {
                this.done.1 = this.write.as_mut().poll(cx).is_ready();
            }
            if this.done.0 && this.done.1 {
                return Poll::Ready(());
            }
            if *this.done == before {
                return Poll::Pending;
            }
        }
    }
}

/// A read half a session reads from.
pub(crate) trait Source: AsyncRead + Unpin {
    /// Ready once a read would not wait. Streams that cannot tell are
    /// always ready.
    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = cx;
        Poll::Ready(Ok(()))
    }
}

impl Source for Sock<'_> {
    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_read_ready(cx)
    }
}

/// TLS keeps its own buffers per connection anyway; the receive buffer is
/// kept too.
#[cfg(feature = "tls")]
impl Source for tokio::io::ReadHalf<&mut tokio_rustls::TlsStream<tokio::net::TcpStream>> {}

/// Reads into `buf` until bytes arrive (`Some(Ok(n))`, 0 at EOF), the read
/// fails, or the session is closing (`None`).
fn poll_read<R: Source>(
    cx: &mut Context<'_>,
    shared: &SessionShared,
    rd: &mut R,
    buf: &mut RecvBuf,
    want: usize,
    size: usize,
) -> Poll<Option<io::Result<usize>>> {
    if shared.is_closing() {
        return Poll::Ready(None);
    }
    // An idle connection holds no receive buffer: with no partial frame
    // pending and nothing to read yet, the buffer is freed and allocated
    // again when bytes arrive.
    if buf.is_empty() {
        match rd.poll_ready(cx) {
            Poll::Pending => {
                buf.release();
                return Poll::Pending;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {}
        }
    }
    let mut rb = ReadBuf::new(buf.spare(want, size));
    match Pin::new(rd).poll_read(cx, &mut rb) {
        Poll::Ready(Ok(())) => Poll::Ready(Some(Ok(rb.filled().len()))),
        // TLS: the peer closed without close_notify. The framing already
        // tells a whole frame from a cut one (a cut one is dropped), so
        // this is the peer's end of input like any other, not an error.
        Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Some(Ok(0))),
        Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
        Poll::Pending => {
            // The socket looked ready (its readiness outlives the read that
            // drained it) but had nothing: free the buffer here too, or the
            // session keeps it until its task next wakes.
            if buf.is_empty() {
                buf.release();
            }
            Poll::Pending
        }
    }
}

/// After a graceful close, reads and throws away what the peer still
/// sends until it closes its side (or the session aborts: an error, or the
/// watchdog at the linger deadline). Closing a socket with unread input
/// makes the kernel reset the connection, and a reset throws away what the
/// peer had not read yet: the answers and messages the close was flushing.
fn drain<R: Source>(cx: &mut Context<'_>, shared: &SessionShared, rd: &mut R) -> Poll<()> {
    loop {
        if shared.is_aborted() {
            return Poll::Ready(());
        }
        // An abort rings the doorbell; hear it even once the writer is done.
        shared.wake.listen(cx);
        // On the stack of this poll, not in the session's task.
        let mut scratch = [0u8; 512];
        let mut rb = ReadBuf::new(&mut scratch);
        match Pin::new(&mut *rd).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) if !rb.filled().is_empty() => {}
            Poll::Ready(_) => return Poll::Ready(()),
            Poll::Pending => return Poll::Pending,
        }
    }
}

// Not an async fn: that would keep the arguments twice in every
// session's task (rust-lang/rust#62958).
#[expect(clippy::manual_async_fn, reason = "smaller session tasks")]
fn read_loop<E: Events, R: Source>(
    shared: &SessionShared,
    mut rd: R,
    events: &E,
    limits: &SessionLimits,
    counters: &Counters,
) -> impl Future<Output = ()> {
    async move {
        let framing = limits.framing;
        let mut buf = RecvBuf::new();
        // The size the pending frame needs, once its header is in.
        let mut want = framing.header_len();
        // How reading ended, when the session is to go on after it.
        enum End {
            /// The session is closing gracefully: drain the peer.
            Closing,
            /// The peer finished sending.
            Eof,
        }
        let end = 'read: loop {
            // (Nothing here is kept across the handler's await below but
            // what must be: this state sits in every session's task.)
            let n = {
                shared.marks.reading.store(true, Ordering::Relaxed);
                let r =
                    poll_fn(|cx| poll_read(cx, shared, &mut rd, &mut buf, want, limits.recv_buffer)).await;
                shared.marks.reading.store(false, Ordering::Relaxed);
                match r {
                    None => break 'read End::Closing,
                    Some(Ok(0)) => break 'read End::Eof,
                    Some(Ok(n)) => n,
                    Some(Err(e)) => return shared.abort(e.into()),
                }
            };
            shared.marks.read_seen.store(true, Ordering::Relaxed);
            buf.filled(n);
            counters.bytes_in.add(n);
            let mut frames = 0;
            loop {
                match framing.next_frame(buf.data(), limits.max_frame) {
                    Ok(Some(len)) => {
                        frames += 1;
                        events.recv(shared.id, &buf.data()[..len]).await;
                        buf.consume(len);
                        if shared.is_closing() {
                            counters.frames_in.add(frames);
                            break 'read End::Closing;
                        }
                    }
                    Ok(None) => {
                        want = framing.declared_len(buf.data()).unwrap_or(framing.header_len());
                        break;
                    }
                    Err(e) => {
                        counters.bad_frames.incr();
                        return shared.abort(e.into());
                    }
                }
            }
            counters.frames_in.add(frames);
        };
        // The buffer goes first: what follows waits, and holds nothing.
        drop(buf);
        match end {
            End::Closing => poll_fn(|cx| drain(cx, shared, &mut rd)).await,
            // Once the owner has answered what came before, deliver what
            // is queued, then close.
            End::Eof => {
                if events.eof(shared.id).await {
                    shared.close(Close::Flush(Instant::now() + limits.linger));
                }
            }
        }
    }
}

// Not an async fn: that would keep the arguments twice in every
// session's task (rust-lang/rust#62958).
#[expect(clippy::manual_async_fn, reason = "smaller session tasks")]
fn write_loop<E: Events, W: AsyncWrite + Unpin>(
    shared: &SessionShared,
    mut wr: W,
    events: &E,
    counters: &Counters,
    gather: Option<&Gather>,
) -> impl Future<Output = ()> {
    async move {
        let mut batch = Batch::new();
        // The gathering clock's tick at this writer's last write.
        let mut wrote = gather.map_or(0, |g| g.epoch().wrapping_sub(1));
        loop {
            {
                let mut o = shared.outbox();
                if matches!(o.close, Some(Close::Abort(_))) {
                    return;
                }
                if !o.queue.is_empty() {
                    batch.take_from(&mut o);
                } else if o.close.is_some() {
                    break;
                } else {
                    // Idle until the next packet: keep no send buffer.
                    o.queue.release();
                    batch.queue.release();
                }
            }
            if batch.is_done() {
                poll_fn(|cx| shared.wake.poll(cx)).await;
                // Let the rest of this turn run first (the other sessions'
                // reads, the chat logic they feed) and come back after the
                // runtime's next look at the sockets: whatever they queue for
                // this session goes out in this same write. A burst of room
                // chat then costs one write per member, not one per message
                // (measured: write calls per delivery 0.19 -> 0.085 and server
                // CPU per delivery -25% in issue #5's scenario b).
                tokio::task::yield_now().await;
                // While the CPU is short, at most one write a tick.
                if let Some(g) = gather {
                    g.next_write(wrote).await;
                }
                continue;
            }
            if let Some(g) = gather {
                wrote = g.epoch();
            }
            while !batch.is_done() {
                // The slices are gathered on each poll, on the stack: an array
                // held across the await would sit in every session's task,
                // idle or not.
                let write = poll_fn(|cx| {
                    let mut iov = [IoSlice::new(&[]); MAX_IOV];
                    let n = batch.slices(&mut iov);
                    Pin::new(&mut wr).poll_write_vectored(cx, &iov[..n])
                });
                let Some(k) = unless_aborted(shared, write).await else {
                    return;
                };
                counters.writes.incr();
                if k == 0 {
                    return shared.abort(io::Error::from(io::ErrorKind::WriteZero).into());
                }
                batch.advance(k);
                counters.bytes_out.add(k);
            }
            // TLS holds what it encrypted until flushed; TCP answers at once.
            let flush = poll_fn(|cx| Pin::new(&mut wr).poll_flush(cx));
            if unless_aborted(shared, flush).await.is_none() {
                return;
            }
            let len = batch.len;
            batch.clear();
            let missed = {
                let mut o = shared.outbox();
                o.pending -= len;
                std::mem::take(&mut o.missed)
            };
            events.sent(shared.id, len);
            if missed > 0 {
                events.dropped(shared.id, missed);
            }
        }
        // Flushed: send FIN (after TLS's close_notify) so the peer sees an
        // orderly close after the data. The watchdog bounds it by the linger.
        let shutdown = poll_fn(|cx| Pin::new(&mut wr).poll_shutdown(cx));
        let _ = unless_aborted(shared, shutdown).await;
    }
}

/// One write, flush or shutdown, marked for the watchdog and given up when
/// the session aborts (the doorbell rings for that; a ring for a queued
/// packet is harmless, the writer looks at the queue before it waits).
/// `None`: the session is aborting (the reason is recorded); stop writing.
/// (A plain function over an `Unpin` operation, not an async fn: an async
/// fn would hold the operation twice, and its state sits in every
/// session's task.)
fn unless_aborted<T>(
    shared: &SessionShared,
    mut io: impl Future<Output = io::Result<T>> + Unpin,
) -> impl Future<Output = Option<T>> {
    let marks = &shared.marks;
    marks.writing.store(true, Ordering::Relaxed);
    poll_fn(move |cx| {
        let r = loop {
            if shared.is_aborted() {
                break None;
            }
            if let Poll::Ready(r) = Pin::new(&mut io).poll(cx) {
                break Some(r);
            }
            std::task::ready!(shared.wake.poll(cx));
        };
        marks.writing.store(false, Ordering::Relaxed);
        Poll::Ready(match r {
            Some(Ok(v)) => {
                marks.write_seen.store(true, Ordering::Relaxed);
                Some(v)
            }
            Some(Err(e)) => {
                shared.abort(e.into());
                None
            }
            None => None,
        })
    })
}
