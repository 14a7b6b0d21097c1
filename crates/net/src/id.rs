//! Session identifiers that a later session can never be mistaken for.

use std::fmt;

/// Identifies one session for its whole life, and never any other.
///
/// The low 32 bits are the session's slot in the server's table and the high
/// 32 bits the slot's generation, bumped each time the slot is reused. A send
/// or disconnect aimed at a session that has left fails cleanly
/// ([`SendError::NoSession`](crate::SendError::NoSession)) even when a newer
/// session sits in the same slot: it would take 2^32 reuses of one slot for an
/// old id to match again.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(u64);

impl SessionId {
    pub(crate) fn new(slot: u32, generation: u32) -> Self {
        Self((u64::from(generation) << 32) | u64::from(slot))
    }

    /// The slot index in the server's session table.
    pub fn slot(self) -> u32 {
        self.0 as u32
    }

    /// How many times the slot had been used when this session took it.
    pub fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The id as one number, for logs and for protocols that carry it.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Rebuilds an id from [`as_u64`](Self::as_u64).
    pub fn from_u64(raw: u64) -> Self {
        Self(raw)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S{}.{}", self.slot(), self.generation())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_and_generation_round_trip() {
        let id = SessionId::new(7, 3);
        assert_eq!(id.slot(), 7);
        assert_eq!(id.generation(), 3);
        assert_eq!(SessionId::from_u64(id.as_u64()), id);
        assert_ne!(id, SessionId::new(7, 4));
    }
}
