//! Buffers sessions hand back when they go idle and take again when they
//! wake, so that a session at chat rates does not allocate per message and
//! an idle one holds no buffer.
//!
//! A session frees its receive buffer whenever it has read everything and
//! waits, and its send queues whenever the writer finds them empty: at a
//! few messages a second, that is every message. Given back to the
//! allocator, each message costs an allocation per recipient; kept by the
//! session, every idle connection holds kilobytes. Here they wait in a
//! small process-wide stack instead, shared by every session of every
//! server and client (the logic thread that queues a message and the
//! worker that writes it are not the same thread, so the stack is behind a
//! short lock rather than per thread). It holds at most a few dozen, so it
//! costs the process a few hundred kilobytes, not a buffer per connection.

use std::sync::{Mutex, PoisonError};

/// A bounded stack of spare buffers.
pub(crate) struct Pool<T> {
    free: Mutex<Vec<T>>,
    max: usize,
}

impl<T> Pool<T> {
    pub(crate) const fn new(max: usize) -> Self {
        Self {
            free: Mutex::new(Vec::new()),
            max,
        }
    }

    /// A spare, if there is one.
    pub(crate) fn take(&self) -> Option<T> {
        self.free.lock().unwrap_or_else(PoisonError::into_inner).pop()
    }

    /// Keeps `spare` for the next taker, or frees it when the pool is full.
    pub(crate) fn give(&self, spare: T) {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < self.max {
            free.push(spare);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_pool_frees_what_it_is_given() {
        let pool = Pool::new(2);
        for i in 0..5 {
            pool.give(i);
        }
        assert_eq!(pool.take(), Some(1));
        assert_eq!(pool.take(), Some(0));
        assert_eq!(pool.take(), None);
    }
}
