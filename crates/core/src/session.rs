//! A session's state, the requests waiting behind its unanswered one, and
//! the counters and token bucket the hub keeps.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use plaza_proto::{Event, Request, ResultCode};

#[derive(Debug)]
pub(crate) enum State {
    Guest,
    Pending {
        ticket: u64,
        name: Arc<str>,
    },
    User {
        name: Arc<str>,
    },
    /// Kicked: disconnect requested, waiting for the socket to close.
    Closing,
}

/// Requests a session may queue behind one that has not been answered yet
/// (a login, a cluster seat or publish); one more closes the session.
pub const MAX_QUEUED: usize = 64;

/// What a session's oldest unanswered request waits for.
#[derive(Debug)]
pub(crate) enum Waiting {
    Login,
    Register,
    Seat {
        room: u32,
        /// A ROOM_REJOIN's epoch and last sequence number seen: answered
        /// with the replay, not ROOM_ENTER's response. Boxed: it keeps a
        /// session within 128 bytes.
        rejoin: Option<Box<(u64, u64)>>,
    },
    /// A publish; answered with this response and the outcome's code.
    Ack(fn(ResultCode) -> Event),
    /// A page of the cluster's users, from the shared store.
    Users,
    /// Room chat handed to the cluster (boxed: a session stays within 128
    /// bytes).
    Chat(Box<crate::numbering::Chat>),
}

#[derive(Debug)]
pub(crate) enum Queued {
    Request(Request),
    Invalid(u16, ResultCode),
    /// [`Input::Guest`](crate::Input::Guest).
    Guest(String),
    /// The peer finished sending: close once the requests before are answered.
    Close,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) state: State,
    pub(crate) room: Option<u32>,
    pub(crate) admin: bool,
    pub(crate) admin_role: bool,
    /// Said HELLO with [`plaza_proto::features::NOTIFICATIONS`] (or
    /// registered, or resumed): gets Plaza's notifications. A connection
    /// without it is a seed client and gets only the seed's packets and
    /// the responses to its own requests.
    pub(crate) plaza: bool,
    /// Takes room messages with sequence numbers (ROOM_MESSAGE, 345):
    /// [`plaza_proto::features::HISTORY`].
    pub(crate) history: bool,
    /// Takes notices as notices (ROOM_NOTICE, WHISPER_NOTICE):
    /// [`plaza_proto::features::NOTICES`].
    pub(crate) notices: bool,
    pub(crate) waiting: Option<Waiting>,
    /// Requests behind the unanswered one, freed once drained. Boxed: most
    /// sessions never queue one, and 8 bytes here instead of 32 put a
    /// session in jemalloc's 128-byte class rather than the 160.
    #[expect(clippy::box_collection, reason = "the size of every idle session")]
    pub(crate) queued: Option<Box<VecDeque<Queued>>>,
    /// Chat rate limit.
    pub(crate) bucket: Bucket,
    /// When the session last became a guest (connect or logout).
    pub(crate) guest_since: Instant,
    /// Last chat in a slow-mode room.
    pub(crate) last_slow_chat: Option<Instant>,
}

// Every connection has one: keep it in the allocator's 128-byte class.
const _: () = assert!(std::mem::size_of::<Session>() <= 128);

/// A token bucket: `rate` per second, up to `burst` saved.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled completely by `now`.
    pub fn is_full(&self, rate: f64, burst: f64, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate >= burst
    }
}

/// Why the hub refused or closed something, counted for operators.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drops {
    /// Chat messages refused by the per-session rate limit or slow mode.
    pub chat_rate_limited: u64,
    /// Connections closed for not logging in in time.
    pub login_timeouts: u64,
    /// Connections closed for queueing too many requests.
    pub queue_overflows: u64,
}

/// Login and resume answers given, by result code.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoginResults(pub std::collections::BTreeMap<u16, u64>);
