//! Writes made by the sender: fan-out without a task wake per recipient.
//!
//! A packet queued for a session wakes the session's writer task, which
//! writes it. A server that sends each message to many sessions then pays,
//! per recipient and message, a wake and two polls of a task that is cold
//! in the cache: half the server's own (user) time in a room fan-out on
//! this project's machines (docs/BENCHMARKS.md, "Issue #32: writes made by
//! the logic task").
//!
//! Inside [`Writes::defer`], a packet queued on this thread for a plain TCP
//! session does not wake its writer: the session is noted instead, once
//! per batch, and [`Writes::flush`] then writes each noted session's queue
//! from the caller's thread, one non-blocking `send` each. What a socket
//! does not take at once (it is full), a session whose writer is busy, a
//! close under way and TLS stay the writer's, woken for it as before. It
//! is the event loop's way (Redis's `handleClientsWithPendingWrites`, NATS's
//! `flushClients`): everything a turn queued for a member goes out in one
//! write, made by the loop that queued it.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Arc;

use crate::session::SessionShared;

thread_local! {
    /// The sessions noted on this thread while a [`Writes::defer`] runs.
    static NOTED: Cell<Option<Noted>> = const { Cell::new(None) };
}

/// Sessions in the order noted; written from the front, a part at a time.
type Noted = VecDeque<Arc<SessionShared>>;

/// Notes `session` for the deferring caller on this thread. `false`: no
/// caller defers here; wake the writer.
pub(crate) fn note(session: &Arc<SessionShared>) -> bool {
    NOTED.with(|noted| match noted.take() {
        Some(mut list) => {
            list.push_back(session.clone());
            noted.set(Some(list));
            true
        }
        None => false,
    })
}

/// Sessions with packets queued and their writers not woken: the caller
/// writes them with [`flush`](Self::flush). Dropped unflushed, it wakes
/// their writers.
#[derive(Default)]
pub struct Writes {
    noted: Noted,
}

impl Writes {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f`; packets it queues on this thread (through any server's
    /// [`Handle`](crate::Handle)) for plain TCP sessions whose writers are
    /// idle are left for [`flush`](Self::flush) instead of waking the
    /// writers. Nested, the inner call's sessions are its own.
    pub fn defer<R>(&mut self, f: impl FnOnce() -> R) -> R {
        /// Puts the list back even if `f` panics, so no session is left
        /// noted and unwritten.
        struct Restore<'a> {
            writes: &'a mut Writes,
            outer: Option<Noted>,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                let mine = NOTED.with(|n| n.replace(self.outer.take()));
                self.writes.noted = mine.unwrap_or_default();
            }
        }
        let mine = std::mem::take(&mut self.noted);
        let outer = NOTED.with(|n| n.replace(Some(mine)));
        let _restore = Restore { writes: self, outer };
        f()
    }

    /// Whether nothing waits for [`flush`](Self::flush).
    pub fn is_empty(&self) -> bool {
        self.noted.is_empty()
    }

    /// Sessions waiting.
    pub fn len(&self) -> usize {
        self.noted.len()
    }

    /// Writes every noted session's queue now, from this thread; a session
    /// the socket does not take all of is left to its writer, woken.
    pub fn flush(&mut self) {
        self.flush_some(usize::MAX);
    }

    /// Takes up to `n` of the sessions noted into a set of their own, for
    /// another thread to write (a flush spread over a runtime's workers).
    pub fn split_off(&mut self, n: usize) -> Writes {
        let at = self.noted.len().saturating_sub(n);
        Writes {
            noted: self.noted.split_off(at),
        }
    }

    /// Writes the first `n` sessions noted (in the order noted), as
    /// [`flush`](Self::flush) does. Between parts, a caller can take in
    /// more (its inputs that arrived meanwhile): what that queues for a
    /// session not written yet goes in the same write.
    pub fn flush_some(&mut self, n: usize) {
        for session in self.noted.drain(..n.min(self.noted.len())) {
            session.write_now();
        }
    }
}

impl Drop for Writes {
    fn drop(&mut self) {
        self.flush();
    }
}
