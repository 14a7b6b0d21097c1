//! The per-session receive buffer.
//!
//! A linear buffer with a read cursor: bytes arrive at the end, complete
//! frames are handed out in place from the start, and the unconsumed tail is
//! moved to the front only when the free space at the end runs short. It
//! grows only when one frame is larger than the buffer, up to the frame cap,
//! so the steady state allocates nothing and copies nothing per packet. An
//! empty buffer goes back to a shared pool while its session waits.

use crate::pool::Pool;

/// Spare receive buffers.
static SPARE: Pool<Vec<u8>> = Pool::new(16);
/// Buffers larger than this (grown for one big frame) are freed, not kept.
const SPARE_MAX: usize = 16 * 1024;

pub(crate) struct RecvBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl RecvBuf {
    pub(crate) fn new() -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    /// Whether every byte received has been consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Gives the buffer's memory back (to the pool, or to the allocator
    /// when it grew for a big frame); it must be empty. The next
    /// [`spare`](Self::spare) takes one again.
    pub(crate) fn release(&mut self) {
        debug_assert!(self.is_empty());
        let buf = std::mem::take(&mut self.buf);
        if (1..=SPARE_MAX).contains(&buf.len()) {
            SPARE.give(buf);
        }
    }

    /// The received bytes not consumed yet.
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` bytes at the start as consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start);
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space to read into, making sure there is room for at least
    /// `want` bytes of data in total (the pending frame's size) and for a
    /// useful read. `size` is the buffer's normal size.
    pub(crate) fn spare(&mut self, want: usize, size: usize) -> &mut [u8] {
        let len = self.end - self.start;
        let need = want.max(size).max(len + 1);
        if self.buf.is_empty()
            && let Some(spare) = SPARE.take()
        {
            self.buf = spare;
        }
        if self.buf.len() < need {
            // First use, or a frame larger than the buffer: grow once to fit.
            self.compact();
            self.buf.resize(need, 0);
        } else if self.buf.len() - self.end < (size / 4).max(want.saturating_sub(len)).max(1) {
            self.compact();
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into [`spare`](Self::spare).
    pub(crate) fn filled(&mut self, n: usize) {
        self.end += n;
        debug_assert!(self.end <= self.buf.len());
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(b: &mut RecvBuf, bytes: &[u8], want: usize) {
        let spare = b.spare(want, 8);
        spare[..bytes.len()].copy_from_slice(bytes);
        b.filled(bytes.len());
    }

    #[test]
    fn keeps_partial_data_across_compaction_and_growth() {
        let mut b = RecvBuf::new();
        push(&mut b, b"abcdefg", 0);
        b.consume(5);
        assert_eq!(b.data(), b"fg");
        // Room is short at the end: the tail moves to the front.
        push(&mut b, b"hijkl", 0);
        assert_eq!(b.data(), b"fghijkl");
        // A frame of 20 bytes is pending: the buffer grows to hold it.
        let s = b.spare(20, 8);
        assert!(s.len() >= 13);
        s[..13].copy_from_slice(b"mnopqrstuvwxy");
        b.filled(13);
        assert_eq!(b.data(), b"fghijklmnopqrstuvwxy");
        b.consume(20);
        assert!(b.data().is_empty());
    }
}

#[cfg(test)]
mod reassembly {
    //! Property: however the byte stream is cut into reads, the frames that
    //! come out are exactly the frames that went in, in order.

    use bytes::BytesMut;
    use proptest::prelude::*;

    use super::RecvBuf;
    use crate::framing::wanted;
    use crate::fuzzing::{Five, put_five};
    use crate::{Framing, Lan, next_frame, put_lan_frame};

    /// Feeds `stream` through a RecvBuf in reads of the given sizes, the way
    /// the session's read loop does, and returns the frames it cuts.
    fn reassemble(framing: &dyn Framing, stream: &[u8], reads: &[usize], buf_size: usize) -> Vec<Vec<u8>> {
        let mut buf = RecvBuf::new();
        let mut want = framing.header_len();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut reads = reads.iter().cycle();
        while pos < stream.len() {
            let spare = buf.spare(want, buf_size);
            let n = (*reads.next().unwrap())
                .min(spare.len())
                .min(stream.len() - pos)
                .max(1);
            spare[..n].copy_from_slice(&stream[pos..pos + n]);
            buf.filled(n);
            pos += n;
            while let Some(len) = next_frame(framing, buf.data(), framing.max_frame()).unwrap() {
                out.push(buf.data()[..len].to_vec());
                buf.consume(len);
            }
            want = wanted(framing, buf.data());
        }
        assert!(buf.data().is_empty());
        out
    }

    proptest! {
        #[test]
        fn any_split_yields_the_same_frames(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 1..40),
            reads in proptest::collection::vec(1usize..900, 1..20),
            buf_size in 5usize..2048,
            lan in any::<bool>(),
        ) {
            let framing: &dyn Framing = if lan { &Lan } else { &Five };
            let mut stream = BytesMut::new();
            let mut frames = Vec::new();
            for (i, body) in bodies.iter().enumerate() {
                let start = stream.len();
                if lan {
                    put_lan_frame(&mut stream, body);
                } else {
                    put_five(&mut stream, i as u16, body);
                }
                frames.push(stream[start..].to_vec());
            }
            prop_assert_eq!(reassemble(framing, &stream, &reads, buf_size), frames);
        }
    }
}
