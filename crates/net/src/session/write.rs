//! The writer: the only one that writes (1-send). It takes the whole
//! outbox at once and writes it with one vectored write, then flushes.

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::Poll;

use tokio::io::AsyncWrite;

use super::{Events, SessionShared};
use crate::gather::Gather;
use crate::outbox::{Batch, Close, MAX_IOV};
use crate::stats::Counters;

// Not an async fn: that would keep the arguments twice in every
// session's task (rust-lang/rust#62958).
#[expect(clippy::manual_async_fn, reason = "smaller session tasks")]
pub(super) fn write_loop<E: Events, W: AsyncWrite + Unpin>(
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
                    // Idle until the next packet: the queues go back to the
                    // pool, and the session keeps no send buffer.
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
                // (docs/BENCHMARKS.md, "The writer yields once before it
                // gathers").
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
                    let n = batch.queue.slices(&mut iov);
                    Pin::new(&mut wr).poll_write_vectored(cx, &iov[..n])
                });
                let Some(k) = unless_aborted(shared, write).await else {
                    return;
                };
                counters.writes.incr();
                if k == 0 {
                    return shared.abort(io::Error::from(io::ErrorKind::WriteZero).into());
                }
                batch.queue.consume(k);
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
                o.written(len);
                std::mem::take(&mut o.missed)
            };
            events.sent(shared.id, len);
            if missed.count > 0 {
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
