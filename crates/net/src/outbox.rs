//! A session's send queue: the 1-send discipline.
//!
//! Senders on any thread append under a short lock; the session's single
//! writer takes everything queued at once and writes it with one vectored
//! write, so there is at most one write in flight per session and whatever
//! queued meanwhile goes out together in the next one.
//!
//! Two kinds of data share the queue, in order:
//! - [`Bytes`] shared by reference count: a packet sent to many sessions is
//!   encoded once and each outbox holds a pointer to it, never a copy;
//! - bytes encoded straight into the outbox's own buffer (`send_with`), for
//!   per-session replies, so those allocate nothing in the steady state.
//!
//! The writer swaps the queue's containers with spare ones it keeps, so
//! neither side allocates while a burst lasts; when the writer finds the
//! queue empty it gives both back to a shared pool (`pool.rs`), so an idle
//! session holds no send buffer, and the next message takes them again.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use tokio::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use crate::pool::Pool;
use crate::stats::Counter;
use crate::{NetError, SendError};

/// Most buffers handed to one gathered write (`sendmsg`).
pub(crate) const MAX_IOV: usize = 64;

pub(crate) enum Segment {
    Shared(Bytes),
    /// Shared, and may be dropped (oldest first) to make room when the
    /// session is behind, instead of disconnecting it.
    Droppable(Bytes),
    /// The next `n` bytes of the inline buffer.
    Inline(usize),
}

/// How a session is being closed.
#[derive(Debug)]
pub(crate) enum Close {
    /// Write what is queued, until the deadline, then close.
    Flush(Instant),
    /// A slow consumer's last words replaced what was queued for it: write
    /// them, until the deadline, then close and report the error.
    Farewell(Instant, NetError),
    /// Close now; queued data is dropped. The error (if any) is reported.
    Abort(Option<NetError>),
}

/// What every outbox of a server (or client) shares.
#[derive(Default)]
pub(crate) struct Common {
    /// Droppable packets dropped, for the server's counters.
    pub(crate) dropped: Arc<Counter>,
    /// Writes made and bytes written by a caller of
    /// [`Writes::flush`](crate::Writes::flush), for the same counters.
    pub(crate) writes: Arc<Counter>,
    pub(crate) bytes_out: Arc<Counter>,
    /// What a slow consumer gets instead of what was queued for it, and
    /// how long it has to read it (`ServerConfig::slow_farewell`); `None`:
    /// it is cut at once.
    pub(crate) last_words: Option<(Bytes, std::time::Duration)>,
    /// `ServerConfig::drop_tag`.
    pub(crate) drop_tag: Option<fn(&[u8]) -> u64>,
}

/// Droppable packets dropped for a session that reads too slowly, since
/// they were last reported ([`Handler::on_dropped`](crate::Handler::on_dropped)).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// How many.
    pub count: u64,
    /// The first one's tag (`ServerConfig::drop_tag`; 0 without one).
    pub first: u64,
    /// The last one's tag.
    pub last: u64,
}

impl Segment {
    fn len(&self) -> usize {
        match self {
            Segment::Shared(b) | Segment::Droppable(b) => b.len(),
            Segment::Inline(n) => *n,
        }
    }
}

/// Queued bytes, written from the front: a write that stops inside a
/// segment leaves its rest at the front ([`Queue::consume`]).
#[derive(Default)]
pub(crate) struct Queue {
    pub(crate) segments: VecDeque<Segment>,
    pub(crate) inline: BytesMut,
    /// The front segment is partly written: its rest must go out whole.
    begun: bool,
}

/// What a queue allocates when its first packet after a quiet spell
/// arrives: room for a typical burst, so it rarely grows again.
const FIRST_SEGMENTS: usize = 16;
const FIRST_INLINE: usize = 256;
/// Inline buffers larger than this are freed, not kept.
const SPARE_INLINE_MAX: usize = 4096;

/// Spare queue containers.
static SPARE: Pool<Queue> = Pool::new(128);

impl Queue {
    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Bytes queued.
    fn len(&self) -> usize {
        self.segments.iter().map(Segment::len).sum()
    }

    /// Fills `out` with the queued bytes, in order; returns how many slices
    /// were filled.
    pub(crate) fn slices<'a>(&'a self, out: &mut [IoSlice<'a>; MAX_IOV]) -> usize {
        let mut base = 0;
        let mut n = 0;
        for (slot, s) in out.iter_mut().zip(&self.segments) {
            *slot = IoSlice::new(match s {
                Segment::Shared(b) | Segment::Droppable(b) => b,
                Segment::Inline(len) => {
                    base += len;
                    &self.inline[base - len..base]
                }
            });
            n += 1;
        }
        n
    }

    /// Takes the first `written` bytes off the front. A segment written in
    /// part stays at the front with its rest, no longer droppable: what
    /// follows a frame's first bytes must be the rest of that frame.
    pub(crate) fn consume(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.segments.front_mut() else {
                debug_assert!(false, "consumed past the queue");
                return;
            };
            let len = front.len();
            if written < len {
                match front {
                    Segment::Shared(b) => b.advance(written),
                    Segment::Droppable(b) => {
                        b.advance(written);
                        *front = Segment::Shared(std::mem::take(b));
                    }
                    Segment::Inline(n) => {
                        *n -= written;
                        self.inline.advance(written);
                    }
                }
                self.begun = true;
                return;
            }
            if let Segment::Inline(n) = front {
                self.inline.advance(*n);
            }
            self.segments.pop_front();
            self.begun = false;
            written -= len;
        }
    }

    /// Takes spare containers from the pool if this queue has none.
    fn refill(&mut self) {
        if self.segments.capacity() == 0
            && self.inline.capacity() == 0
            && let Some(spare) = SPARE.take()
        {
            *self = spare;
        }
    }

    fn push(&mut self, segment: Segment) {
        self.refill();
        if self.segments.capacity() == 0 {
            self.segments.reserve_exact(FIRST_SEGMENTS);
        }
        self.segments.push_back(segment);
    }

    fn push_inline(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if let Some(Segment::Inline(last)) = self.segments.back_mut() {
            *last += n;
        } else {
            self.push(Segment::Inline(n));
        }
    }

    /// Gives the containers of an empty queue back: to the pool at their
    /// usual size, to the allocator when a burst (a member list, a room's
    /// presence news) grew them. Called when the writer goes idle.
    pub(crate) fn release(&mut self) {
        debug_assert!(self.is_empty());
        let mut q = std::mem::take(self);
        if q.segments.capacity() == 0 && q.inline.capacity() == 0 {
            return;
        }
        if q.segments.capacity() <= FIRST_SEGMENTS * 2 && q.inline.capacity() <= SPARE_INLINE_MAX {
            q.inline.clear();
            SPARE.give(q);
        }
    }
}

pub(crate) struct Outbox {
    pub(crate) queue: Queue,
    /// Bytes queued or being written.
    pub(crate) pending: usize,
    pub(crate) close: Option<Close>,
    /// The writer has been woken for what is queued (or, inside
    /// [`Writes::defer`](crate::Writes::defer), the session was noted for
    /// the caller to write).
    pub(crate) signalled: bool,
    /// The writer holds a batch it has not finished writing: nothing else
    /// may write to the socket before it does.
    pub(crate) writing: bool,
    /// Past this, at once: a slow consumer.
    limit: usize,
    /// Droppable packets are dropped to stay under this; the watchdog cuts
    /// a session that stays over it.
    pub(crate) soft: usize,
    /// Droppable packets dropped since the writer last reported them.
    pub(crate) missed: Dropped,
    pub(crate) common: Arc<Common>,
}

impl Outbox {
    pub(crate) fn new(limit: usize, soft: usize, common: Arc<Common>) -> Self {
        Self {
            queue: Queue::default(),
            pending: 0,
            close: None,
            signalled: false,
            writing: false,
            limit,
            soft: soft.min(limit),
            missed: Dropped::default(),
            common,
        }
    }

    fn drop_one(&mut self, packet: &[u8]) {
        let tag = self.common.drop_tag.map_or(0, |tag| tag(packet));
        let m = &mut self.missed;
        if m.count == 0 {
            m.first = tag;
        }
        m.count += 1;
        m.last = tag;
        self.common.dropped.incr();
    }

    /// Appends a packet that may be dropped to make room. When the queue is
    /// over its soft limit, the oldest droppable packets still queued go first;
    /// if none is left to drop, this one is dropped. Either way the session
    /// stays, and `missed` counts the drops.
    pub(crate) fn push_droppable(&mut self, packet: Bytes) -> Result<bool, SendError> {
        if self.close.is_some() {
            return Err(SendError::Closing);
        }
        if !self.make_room(packet.len(), self.soft) {
            self.drop_one(&packet);
            return Ok(false);
        }
        self.pending += packet.len();
        self.queue.push(Segment::Droppable(packet));
        Ok(self.signal())
    }

    /// Drops the oldest droppable packets not yet taken by the writer until
    /// `n` more bytes fit under `cap`. Returns whether they do.
    fn make_room(&mut self, n: usize, cap: usize) -> bool {
        while self.pending + n > cap {
            let Some(i) = (self.queue.segments.iter()).position(|s| matches!(s, Segment::Droppable(_)))
            else {
                return false;
            };
            if let Some(Segment::Droppable(b)) = self.queue.segments.remove(i) {
                self.pending -= b.len();
                self.drop_one(&b);
            }
        }
        true
    }

    /// Appends a shared packet. Returns whether the writer must be woken.
    pub(crate) fn push_shared(&mut self, packet: Bytes) -> Result<bool, SendError> {
        self.admit(packet.len())?;
        self.pending += packet.len();
        self.queue.push(Segment::Shared(packet));
        Ok(self.signal())
    }

    /// Whether this push must wake the writer: the first since it last took
    /// the queue.
    fn signal(&mut self) -> bool {
        !std::mem::replace(&mut self.signalled, true)
    }

    /// Encodes into the inline buffer. Returns whether the writer must be
    /// woken.
    pub(crate) fn push_with(&mut self, encode: impl FnOnce(&mut BytesMut)) -> Result<bool, SendError> {
        if self.close.is_some() {
            return Err(SendError::Closing);
        }
        self.queue.refill();
        let before = self.queue.inline.len();
        if self.queue.inline.capacity() == 0 {
            self.queue.inline.reserve(FIRST_INLINE);
        }
        encode(&mut self.queue.inline);
        let n = self.queue.inline.len() - before;
        if let Err(e) = self.admit(n) {
            self.queue.inline.truncate(before);
            return Err(e);
        }
        if n == 0 {
            return Ok(false);
        }
        self.pending += n;
        self.queue.push_inline(n);
        Ok(self.signal())
    }

    fn admit(&mut self, n: usize) -> Result<(), SendError> {
        if self.close.is_some() {
            return Err(SendError::Closing);
        }
        // Room made the droppable way, as far as it goes; past the hard
        // limit even so, a slow consumer.
        self.make_room(n, self.soft);
        if self.pending + n > self.limit {
            self.cut_slow(self.pending + n, self.limit);
            return Err(SendError::QueueFull);
        }
        Ok(())
    }

    /// Closes a slow consumer, `queued` bytes against `limit`: with its
    /// last words, if the server has some, else at once.
    pub(crate) fn cut_slow(&mut self, queued: usize, limit: usize) {
        let error = NetError::SlowConsumer { queued, limit };
        self.close = Some(match self.common.last_words.clone() {
            Some((words, linger)) => {
                self.replace_queue_with(words);
                Close::Farewell(Instant::now() + linger, error)
            }
            None => Close::Abort(Some(error)),
        });
    }

    /// Drops everything queued and not yet taken by the writer (what it is
    /// writing goes on, and so does a frame begun: frames end whole) and
    /// queues `words` instead.
    fn replace_queue_with(&mut self, words: Bytes) {
        let q = &mut self.queue;
        let keep = usize::from(q.begun);
        let kept_inline = match q.segments.front() {
            Some(Segment::Inline(n)) if q.begun => *n,
            _ => 0,
        };
        let queued: usize = q.segments.drain(keep..).map(|s| s.len()).sum();
        q.inline.truncate(kept_inline);
        self.pending -= queued;
        self.pending += words.len();
        self.queue.push(Segment::Shared(words));
    }

    /// Whether the session is being cut now (not flushed first).
    pub(crate) fn is_aborting(&self) -> bool {
        matches!(self.close, Some(Close::Abort(_)))
    }
}

/// A batch taken by the writer.
pub(crate) struct Batch {
    pub(crate) queue: Queue,
    /// Bytes taken.
    pub(crate) len: usize,
}

impl Batch {
    pub(crate) fn new() -> Self {
        Self {
            queue: Queue::default(),
            len: 0,
        }
    }

    /// Swaps the outbox's queue into this (empty) batch; the writer holds
    /// it until [`Outbox::written`].
    pub(crate) fn take_from(&mut self, outbox: &mut Outbox) {
        debug_assert!(self.queue.is_empty() && self.queue.inline.is_empty());
        std::mem::swap(&mut self.queue, &mut outbox.queue);
        outbox.signalled = false;
        outbox.writing = true;
        self.len = self.queue.len();
    }

    pub(crate) fn is_done(&self) -> bool {
        self.queue.is_empty()
    }

    /// Empties the batch, keeping the containers' capacity for the next
    /// take of the same burst.
    pub(crate) fn clear(&mut self) {
        self.queue.segments.clear();
        self.queue.inline.clear();
        self.len = 0;
    }
}

impl Outbox {
    /// The writer's batch of `len` bytes is written.
    pub(crate) fn written(&mut self, len: usize) {
        self.pending -= len;
        self.writing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gather(queue: &Queue) -> Vec<u8> {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let n = queue.slices(&mut iov);
        iov[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn shared_and_inline_keep_their_order_across_partial_writes() {
        let mut o = Outbox::new(1000, 1000, Arc::default());
        assert!(o.push_with(|b| b.extend_from_slice(b"ab")).unwrap());
        assert!(!o.push_with(|b| b.extend_from_slice(b"cd")).unwrap());
        assert!(!o.push_shared(Bytes::from_static(b"EFG")).unwrap());
        assert!(!o.push_with(|b| b.extend_from_slice(b"hi")).unwrap());
        assert_eq!(o.pending, 9);
        let mut batch = Batch::new();
        batch.take_from(&mut o);
        assert!(o.queue.is_empty());
        assert_eq!(batch.len, 9);
        assert_eq!(gather(&batch.queue), b"abcdEFGhi");
        for expect in [&b"bcdEFGhi"[..], b"FGhi", b"i"] {
            batch.queue.consume(batch.queue.len() - expect.len());
            assert_eq!(gather(&batch.queue), expect);
            assert_eq!(batch.queue.len(), expect.len());
        }
        batch.queue.consume(1);
        assert!(batch.is_done());
    }

    #[test]
    fn a_frame_begun_is_finished_before_drops_or_last_words() {
        let common = Common {
            last_words: Some((Bytes::from_static(b"BYE"), std::time::Duration::from_secs(1))),
            ..Common::default()
        };
        let mut o = Outbox::new(12, 8, Arc::new(common));
        o.push_droppable(Bytes::from_static(b"aaaa")).unwrap();
        o.push_droppable(Bytes::from_static(b"bbbb")).unwrap();
        // A write takes "aa" of the first frame, from the outbox itself.
        o.queue.consume(2);
        o.pending -= 2;
        // Room for "cccc" is made from "bbbb", not the frame begun.
        o.push_droppable(Bytes::from_static(b"cccc")).unwrap();
        assert_eq!(gather(&o.queue), b"aacccc");
        assert_eq!(o.missed.count, 1);
        // A slow consumer's last words follow the rest of that frame.
        o.push_with(|b| b.extend_from_slice(b"0123456789A")).unwrap_err();
        assert_eq!(gather(&o.queue), b"aaBYE");
        assert_eq!(o.pending, 5);
    }

    #[test]
    fn droppable_packets_make_room_oldest_first_and_are_counted() {
        // Tagged by their first byte, as a sequence number would be.
        let common = Common {
            drop_tag: Some(|p: &[u8]| u64::from(p[0])),
            ..Common::default()
        };
        let mut o = Outbox::new(10, 10, Arc::new(common));
        o.push_droppable(Bytes::from_static(b"aaa")).unwrap();
        o.push_with(|b| b.extend_from_slice(b"R")).unwrap();
        o.push_droppable(Bytes::from_static(b"bbb")).unwrap();
        o.push_droppable(Bytes::from_static(b"ccc")).unwrap();
        let dropped = |count, first: u8, last: u8| Dropped {
            count,
            first: u64::from(first),
            last: u64::from(last),
        };
        assert_eq!((o.pending, o.missed), (10, Dropped::default()));
        // Over the limit: "aaa" (the oldest droppable) goes, not the reply.
        o.push_droppable(Bytes::from_static(b"ddd")).unwrap();
        assert_eq!((o.pending, o.missed), (10, dropped(1, b'a', b'a')));
        // A reply that does not fit pushes out droppables too.
        o.push_with(|b| b.extend_from_slice(b"SSSSS")).unwrap();
        assert_eq!((o.pending, o.missed), (9, dropped(3, b'a', b'c')));
        assert!(o.close.is_none(), "the session stays");
        let mut batch = Batch::new();
        batch.take_from(&mut o);
        assert_eq!(gather(&batch.queue), b"RdddSSSSS");
        // With nothing droppable left, a droppable packet that does not fit
        // is itself dropped; a reply that does not fit still disconnects.
        let mut o = Outbox::new(4, 4, Arc::default());
        o.push_with(|b| b.extend_from_slice(b"RRR")).unwrap();
        assert_eq!(o.push_droppable(Bytes::from_static(b"xx")), Ok(false));
        assert_eq!(o.missed.count, 1);
        assert_eq!(
            o.push_with(|b| b.extend_from_slice(b"RR")),
            Err(SendError::QueueFull)
        );
    }

    #[test]
    fn over_limit_closes_as_slow_consumer() {
        let mut o = Outbox::new(4, 4, Arc::default());
        o.push_shared(Bytes::from_static(b"abc")).unwrap();
        assert_eq!(
            o.push_shared(Bytes::from_static(b"de")),
            Err(SendError::QueueFull)
        );
        assert!(matches!(
            o.close,
            Some(Close::Abort(Some(NetError::SlowConsumer { .. })))
        ));
        assert_eq!(
            o.push_with(|b| b.extend_from_slice(b"x")),
            Err(SendError::Closing)
        );
    }
}
