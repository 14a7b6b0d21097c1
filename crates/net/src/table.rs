//! The session table: slots addressed by [`SessionId`], reused with a new
//! generation each time, so a stale id never reaches a newer session.
//!
//! Each slot has its own lock, so sends to different sessions never contend;
//! the free list is touched only on join and leave.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::SessionId;
use crate::session::SessionShared;

struct Slot {
    generation: AtomicU32,
    session: Mutex<Option<Arc<SessionShared>>>,
}

pub(crate) struct Table {
    slots: Box<[Slot]>,
    free: Mutex<Vec<u32>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section here is a single assignment, so a poisoned
    // lock still guards consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Table {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = u32::try_from(capacity).unwrap_or(u32::MAX);
        Self {
            slots: (0..capacity)
                .map(|_| Slot {
                    generation: AtomicU32::new(0),
                    session: Mutex::new(None),
                })
                .collect(),
            // Popped from the end: slot 0 first.
            free: Mutex::new((0..capacity).rev().collect()),
        }
    }

    /// Takes a free slot and returns the id its next session will have, or
    /// `None` when every slot is in use.
    pub(crate) fn reserve(&self) -> Option<SessionId> {
        let slot = lock(&self.free).pop()?;
        let prev = self.slots[slot as usize]
            .generation
            .fetch_add(1, Ordering::Relaxed);
        // Generation 0 is never handed out, so `SessionId(0)` is never live.
        let generation = if prev == u32::MAX {
            self.slots[slot as usize].generation.store(1, Ordering::Relaxed);
            1
        } else {
            prev + 1
        };
        Some(SessionId::new(slot, generation))
    }

    /// Gives back a reserved slot that was never filled.
    pub(crate) fn unreserve(&self, id: SessionId) {
        lock(&self.free).push(id.slot());
    }

    pub(crate) fn insert(&self, session: Arc<SessionShared>) {
        let slot = session.id.slot() as usize;
        *lock(&self.slots[slot].session) = Some(session);
    }

    /// Runs `f` on the live session `id`, under its slot's lock.
    pub(crate) fn with<R>(&self, id: SessionId, f: impl FnOnce(&Arc<SessionShared>) -> R) -> Option<R> {
        let slot = self.slots.get(id.slot() as usize)?;
        let guard = lock(&slot.session);
        match guard.as_ref() {
            Some(s) if s.id == id => Some(f(s)),
            _ => None,
        }
    }

    /// Removes session `id` and frees its slot.
    pub(crate) fn remove(&self, id: SessionId) {
        let Some(slot) = self.slots.get(id.slot() as usize) else {
            return;
        };
        let removed = {
            let mut guard = lock(&slot.session);
            match guard.as_deref() {
                Some(s) if s.id == id => guard.take(),
                _ => None,
            }
        };
        if removed.is_some() {
            lock(&self.free).push(id.slot());
        }
    }

    /// Every live session, for stop.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<SessionShared>)) {
        for slot in self.slots.iter() {
            if let Some(s) = lock(&slot.session).as_ref() {
                f(s);
            }
        }
    }
}
