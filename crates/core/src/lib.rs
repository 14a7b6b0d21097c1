//! plaza-core: the chat rules as a sans-IO state machine.
//!
//! [`Hub`] owns every piece of chat state (sessions, logged-in names, rooms,
//! mutes) and changes it only in [`Hub::handle`], one [`Input`] at a time.
//! It never touches a socket, a clock or a store: the caller passes `now`,
//! and the hub answers through a [`Sink`] (packets to send, sessions to
//! disconnect, and [`Effect`]s such as credential checks whose results come
//! back later as inputs). Because it is plain data and code, it is tested
//! without a runtime and is the single owner of state the server's logic
//! task drives.
//!
//! Results of asynchronous checks are re-validated when they return: a login
//! whose session left, or whose ticket was superseded, is dropped. While a
//! session waits for one (a login, a cluster seat, a publish), its later
//! requests wait in a short queue, so every session's responses come back in
//! the order of its requests.
//!
//! In cluster mode ([`Config::node_tag`] non-zero) the hub also keeps a
//! replica of the users and room members on other nodes, fed by
//! [`Input::Remote`] and friends, and asks for [`Effect::Publish`] and
//! [`Effect::ClaimSeat`] where other nodes are involved (see `remote.rs`).
#![warn(missing_docs)]

mod remote;
mod room;

pub use remote::{BusMsg, RemoteEntry, SeatOutcome};
use room::Room;
pub use room::{MAX_TICKS, MEMBERS_PER_TICK};

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use plaza_proto::{Event, Request, ResultCode, USER_LIST_PAGE};

/// A session, by the network layer's session id.
pub type Conn = u64;

/// Limits and policy of the chat service.
#[derive(Clone, Debug)]
pub struct Config {
    /// Rooms, numbered `0..rooms`.
    pub rooms: u32,
    /// Members per room.
    pub room_capacity: usize,
    /// Users logged in (or logging in) at once; the next login gets 32.
    pub max_users: usize,
    /// Whether REGISTER creates accounts.
    pub registration: bool,
    /// Secret that elevates any logged-in user with ADMIN; `None` means only
    /// users with the admin role can elevate.
    pub admin_secret: Option<String>,
    /// Credential checks and registrations in flight at once; more get BUSY.
    pub max_pending: usize,
    /// Chat messages (room chat, whisper, broadcast) per second per session,
    /// with bursts of twice that; more get RATE_LIMITED. 0: no limit.
    pub chat_rate: u32,
    /// Time a connection may stay without logging in before it is closed.
    /// `None`: no limit.
    pub login_timeout: Option<Duration>,
    /// This node's tag in a cluster (1..=65535), or 0 for a single node.
    /// Room member ids shown to clients carry it in their top 16 bits, so ids
    /// from different nodes never collide.
    pub node_tag: u16,
    /// Room presence (enter and leave notices) waits for
    /// [`Hub::flush_presence`], which the caller runs on a timer, instead of
    /// going out at once: see `room.rs`.
    pub batch_presence: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rooms: 1000,
            room_capacity: 200,
            max_users: 10_000,
            registration: true,
            admin_secret: None,
            max_pending: 1024,
            chat_rate: 0,
            login_timeout: None,
            node_tag: 0,
            batch_presence: false,
        }
    }
}

/// Something that happened, for the hub to act on.
#[derive(Debug)]
pub enum Input {
    /// A session connected.
    Connect {
        /// The session.
        conn: Conn,
    },
    /// The peer finished sending (its half of the connection is closed).
    /// Its requests before that are answered, then the session is closed
    /// after what was queued for it is written.
    PeerClosed {
        /// The session.
        conn: Conn,
    },
    /// A session is gone (its socket is closed).
    Disconnect {
        /// The session.
        conn: Conn,
    },
    /// A decoded request.
    Request {
        /// From.
        conn: Conn,
        /// What.
        request: Request,
    },
    /// A request that failed to decode; answered with `result`.
    Invalid {
        /// From.
        conn: Conn,
        /// Its packet id.
        request_id: u16,
        /// The code to answer with.
        result: ResultCode,
    },
    /// A credential check finished.
    AuthDone {
        /// The session that asked.
        conn: Conn,
        /// The ticket the hub issued with the check.
        ticket: u64,
        /// The verdict.
        outcome: AuthOutcome,
    },
    /// A registration finished.
    RegisterDone {
        /// The session that asked.
        conn: Conn,
        /// The verdict.
        outcome: RegisterOutcome,
    },
    /// Begin a graceful shutdown (operator signal or admin request).
    Shutdown,
    /// Cluster: another node announced something.
    Remote {
        /// The node it came from.
        node: u64,
        /// What.
        msg: BusMsg,
    },
    /// Cluster: the full state of one other node (empty: the node is gone).
    NodeState {
        /// The node.
        node: u64,
        /// Its logged-in users.
        users: Vec<RemoteEntry>,
    },
    /// Cluster: the full state of every other node, replacing the replica
    /// (after the bus link was (re)established).
    Snapshot {
        /// Each live node and its users.
        nodes: Vec<(u64, Vec<RemoteEntry>)>,
    },
    /// Cluster: an [`Effect::Publish`] with an `ack` finished.
    Published {
        /// The session waiting for it.
        conn: Conn,
        /// Whether the message reached the bus.
        ok: bool,
    },
    /// Cluster: an [`Effect::ClaimSeat`] finished.
    SeatDone {
        /// The session.
        conn: Conn,
        /// Its name when it asked.
        name: String,
        /// Its member id.
        uid: u64,
        /// The room.
        room: u32,
        /// The verdict.
        outcome: SeatOutcome,
    },
}

/// What a login presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The password (LOGIN_REQUEST).
    Password(String),
    /// A resume token from an earlier login (RESUME_REQUEST).
    Token(String),
}

/// A credential check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Valid, and the name is now marked logged in for this session in the
    /// store (so other nodes sharing it refuse it with 31).
    Valid {
        /// The account has the admin role.
        admin: bool,
        /// The account's mute from the store: `None` not muted,
        /// `Some(None)` indefinitely, `Some(Some(d))` for `d` more.
        mute: Option<Option<Duration>>,
        /// A fresh resume token and its lifetime in seconds, if issued.
        token: Option<(String, u32)>,
    },
    /// Wrong name, password or token.
    Invalid,
    /// The name is logged in elsewhere (another node sharing the store).
    AlreadyLoggedIn,
    /// The store could not answer.
    Unavailable,
}

impl AuthOutcome {
    /// A valid login with no mute and no token.
    pub fn valid(admin: bool) -> Self {
        Self::Valid {
            admin,
            mute: None,
            token: None,
        }
    }
}

/// A registration's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// The account was created.
    Created,
    /// The name is taken.
    NameTaken,
    /// The store could not answer.
    Unavailable,
}

/// A logged-in user, for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// Account name.
    pub name: String,
    /// Session.
    pub conn: Conn,
    /// Room, if in one.
    pub room: Option<u32>,
    /// Elevated with ADMIN.
    pub admin: bool,
    /// `Some(None)`: muted indefinitely; `Some(Some(d))`: for `d` more.
    pub muted: Option<Option<Duration>>,
}

/// Work the hub asks the outside world to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    /// Check credentials and mark the name logged in for `conn`; answer
    /// with [`Input::AuthDone`] carrying `ticket`.
    Authenticate {
        /// The session.
        conn: Conn,
        /// Echo this back.
        ticket: u64,
        /// Account name.
        name: String,
        /// Password or resume token.
        credential: Credential,
    },
    /// The name is no longer logged in on `conn`: clear its mark in the store.
    Release {
        /// The session that held it.
        conn: Conn,
        /// Account name.
        name: String,
    },
    /// Persist an account's mute (`seconds` as in MUTE_REQUEST; 0 lifts it).
    Mute {
        /// Account name.
        name: String,
        /// Duration.
        seconds: u32,
    },
    /// Create an account; answer with [`Input::RegisterDone`].
    Register {
        /// The session.
        conn: Conn,
        /// Account name.
        name: String,
        /// Password.
        password: String,
    },
    /// Stop the network gracefully: everything sent so far must be flushed.
    Shutdown,
    /// Cluster: send `msg` to the other nodes, in order. With `ack`, answer
    /// with [`Input::Published`] for that session.
    Publish {
        /// What.
        msg: BusMsg,
        /// The session waiting for the outcome, if any.
        ack: Option<Conn>,
    },
    /// Cluster: take a seat in `room` atomically across nodes (capacity is
    /// checked in the shared store); answer with [`Input::SeatDone`].
    ClaimSeat {
        /// The session.
        conn: Conn,
        /// Its name.
        name: String,
        /// Its member id.
        uid: u64,
        /// The room.
        room: u32,
    },
}

/// Where the hub's output goes.
pub trait Sink {
    /// Send `event` to one session.
    fn send(&mut self, to: Conn, event: &Event);
    /// Send already encoded frames (one or several, whole), shared by every
    /// recipient.
    fn send_shared(&mut self, to: Conn, frame: &Bytes);
    /// Send the frames `encode` writes. A network sink encodes them straight
    /// into the session's queue; by default they go to a buffer of their own
    /// and on as [`send_shared`](Self::send_shared).
    fn send_with(&mut self, to: Conn, encode: impl FnOnce(&mut BytesMut)) {
        let mut b = BytesMut::new();
        encode(&mut b);
        self.send_shared(to, &b.freeze());
    }
    /// Send a room message that may be dropped (oldest first) for a
    /// recipient that reads too slowly, under the drop-oldest policy. Only
    /// for connections that understand MESSAGES_MISSED (341).
    fn send_droppable(&mut self, to: Conn, frame: &Bytes) {
        self.send_shared(to, frame);
    }
    /// Close a session after flushing what was sent to it.
    fn disconnect(&mut self, conn: Conn);
    /// Carry out an effect.
    fn effect(&mut self, effect: Effect);
}

#[derive(Debug)]
enum State {
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
enum Waiting {
    Login,
    Register,
    Seat {
        room: u32,
    },
    /// A publish; answered with this response and the outcome's code.
    Ack(fn(ResultCode) -> Event),
}

#[derive(Debug)]
enum Queued {
    Request(Request),
    Invalid(u16, ResultCode),
    /// The peer finished sending: close once the requests before are answered.
    Close,
}

#[derive(Debug)]
struct Session {
    state: State,
    room: Option<u32>,
    admin: bool,
    admin_role: bool,
    /// Said HELLO with [`plaza_proto::features::NOTIFICATIONS`] (or
    /// registered, or resumed): gets Plaza's notifications. A connection
    /// without it is a seed client and gets only the seed's packets and
    /// the responses to its own requests.
    plaza: bool,
    waiting: Option<Waiting>,
    /// Requests behind the unanswered one, freed once drained. Boxed: most
    /// sessions never queue one, and 8 bytes here instead of 32 put a
    /// session in jemalloc's 128-byte class rather than the 160.
    #[expect(clippy::box_collection, reason = "the size of every idle session")]
    queued: Option<Box<VecDeque<Queued>>>,
    /// Chat rate limit.
    bucket: Bucket,
    /// When the session last became a guest (connect or logout).
    guest_since: Instant,
    /// Last chat in a slow-mode room.
    last_slow_chat: Option<Instant>,
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

/// The chat state machine. See the crate docs.
pub struct Hub {
    config: Config,
    /// Boxed: the map keeps spare slots (32,768 for 19,000 sessions), which
    /// then hold a pointer each, not a session.
    sessions: HashMap<Conn, Box<Session>>,
    /// Names logged in or with a login pending, so a name is claimed once.
    claimed: HashMap<Arc<str>, Conn>,
    /// Logged-in names, sorted for paged user lists.
    online: BTreeSet<Arc<str>>,
    rooms: Vec<Room>,
    /// Rooms with presence news, for [`Hub::flush_presence`].
    listed: Vec<u32>,
    /// Cluster: users on other nodes, and room members on other nodes.
    remote: remote::Replica,
    /// Muted account names and when the mute ends (`None`: indefinite).
    mutes: HashMap<Arc<str>, Option<Instant>>,
    pending: usize,
    /// Names of logins in flight, by (session, ticket), so a check that
    /// comes back for a session that left can still be undone in the store.
    stale_names: HashMap<(Conn, u64), String>,
    next_ticket: u64,
    /// New logins are refused.
    draining: bool,
    /// The network is being stopped.
    shutting_down: bool,
    /// Rooms in slow mode: one message per member per interval.
    slow: HashMap<u32, Duration>,
    /// Guests by when they connected, oldest first, for the login timeout.
    guests: VecDeque<(Instant, Conn)>,
    drops: Drops,
    logins: LoginResults,
}

impl Hub {
    /// An empty hub.
    pub fn new(config: Config) -> Self {
        Self {
            rooms: vec![Room::default(); config.rooms as usize],
            listed: Vec::new(),
            remote: remote::Replica::default(),
            config,
            sessions: HashMap::new(),
            claimed: HashMap::new(),
            online: BTreeSet::new(),
            mutes: HashMap::new(),
            pending: 0,
            stale_names: HashMap::new(),
            next_ticket: 1,
            draining: false,
            shutting_down: false,
            slow: HashMap::new(),
            guests: VecDeque::new(),
            drops: Drops::default(),
            logins: LoginResults::default(),
        }
    }

    /// Login and resume answers given so far, by result code (rate-limit
    /// refusals are answered before the hub and are not here).
    pub fn login_results(&self) -> &LoginResults {
        &self.logins
    }

    fn count_login(&mut self, code: ResultCode) {
        *self.logins.0.entry(code.0).or_default() += 1;
    }

    /// What the hub refused or closed, by reason.
    pub fn drops(&self) -> Drops {
        self.drops
    }

    /// Puts `room` in slow mode (one message per member per `interval`), or
    /// takes it out with `None`. Returns `false` for a room out of range.
    pub fn set_slow_mode(&mut self, room: u32, interval: Option<Duration>) -> bool {
        if room >= self.config.rooms {
            return false;
        }
        match interval {
            Some(i) if !i.is_zero() => self.slow.insert(room, i),
            _ => self.slow.remove(&room),
        };
        true
    }

    /// Rooms in slow mode.
    pub fn slow_rooms(&self) -> Vec<(u32, Duration)> {
        let mut v: Vec<_> = self.slow.iter().map(|(r, d)| (*r, *d)).collect();
        v.sort_unstable();
        v
    }

    /// Closes connections that have not logged in within the login timeout.
    /// Call it now and then (the server does every second).
    pub fn expire_guests(&mut self, now: Instant, sink: &mut impl Sink) {
        let Some(timeout) = self.config.login_timeout else {
            return;
        };
        while let Some(&(since, conn)) = self.guests.front() {
            if since + timeout > now {
                return;
            }
            self.guests.pop_front();
            let Some(s) = self.sessions.get_mut(&conn) else {
                continue;
            };
            // Still the guest it was then (not logged in since, not closing).
            // One with a login in flight is checked when the login fails.
            if matches!(s.state, State::Guest) && s.guest_since == since {
                self.time_out(conn, sink);
            }
        }
    }

    fn time_out(&mut self, conn: Conn, sink: &mut impl Sink) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.state = State::Closing;
            s.queued = None;
        }
        self.drops.login_timeouts += 1;
        tracing::info!(conn, "closing a connection that did not log in in time");
        if self.plaza(conn) {
            sink.send(
                conn,
                &Event::Notice {
                    message: "login timed out".into(),
                },
            );
        }
        sink.disconnect(conn);
    }

    /// Whether `conn` may chat now in `room` (rate limit and slow mode).
    fn may_chat(&mut self, conn: Conn, room: Option<u32>, now: Instant) -> bool {
        let rate = f64::from(self.config.chat_rate);
        let slow = room.and_then(|r| self.slow.get(&r)).copied();
        let Some(s) = self.sessions.get_mut(&conn) else {
            return false;
        };
        if rate > 0.0 && !s.bucket.take(rate, rate * 2.0, now) {
            self.drops.chat_rate_limited += 1;
            return false;
        }
        if let Some(interval) = slow {
            if s.last_slow_chat
                .is_some_and(|t| now.saturating_duration_since(t) < interval)
            {
                self.drops.chat_rate_limited += 1;
                return false;
            }
            s.last_slow_chat = Some(now);
        }
        true
    }

    /// Sessions connected.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Users logged in.
    pub fn users_online(&self) -> usize {
        self.online.len()
    }

    /// Rooms with at least one member.
    pub fn rooms_in_use(&self) -> usize {
        self.rooms.iter().filter(|r| !r.is_empty()).count()
    }

    /// Whether a shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Members of `room` by name, in join order (for operators and tests).
    pub fn room_members(&self, room: u32) -> Vec<String> {
        self.rooms
            .get(room as usize)
            .map(|m| {
                m.members()
                    .iter()
                    .filter_map(|c| self.name_of(*c))
                    .map(|n| n.to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `conn` gets Plaza's notifications (see `Session::plaza`).
    fn plaza(&self, conn: Conn) -> bool {
        self.sessions.get(&conn).is_some_and(|s| s.plaza)
    }

    /// Sends a room message to the members of `room` on this node:
    /// droppable for those that understand MESSAGES_MISSED, not for seed
    /// clients (a slow one is disconnected at the limit instead of losing
    /// messages it would never hear of). A room with no seed client costs
    /// no lookup per member.
    fn send_room_message(&self, room: u32, frame: &Bytes, sink: &mut impl Sink) {
        let room = &self.rooms[room as usize];
        for m in room.members() {
            if room.seed == 0 || self.plaza(*m) {
                sink.send_droppable(*m, frame);
            } else {
                sink.send_shared(*m, frame);
            }
        }
    }

    fn name_of(&self, conn: Conn) -> Option<&Arc<str>> {
        match &self.sessions.get(&conn)?.state {
            State::User { name } => Some(name),
            _ => None,
        }
    }

    /// Applies one input.
    pub fn handle(&mut self, input: Input, now: Instant, sink: &mut impl Sink) {
        match input {
            Input::Connect { conn } => {
                let session = Session {
                    state: State::Guest,
                    room: None,
                    admin: false,
                    admin_role: false,
                    plaza: false,
                    waiting: None,
                    queued: None,
                    bucket: Bucket::full(f64::from(self.config.chat_rate) * 2.0, now),
                    guest_since: now,
                    last_slow_chat: None,
                };
                self.sessions.insert(conn, Box::new(session));
                if self.config.login_timeout.is_some() {
                    self.guests.push_back((now, conn));
                }
                if self.draining {
                    // Nothing to tell it: it has not said HELLO yet.
                    sink.disconnect(conn);
                }
            }
            Input::PeerClosed { conn } => self.submit(conn, Queued::Close, now, sink),
            Input::Disconnect { conn } => {
                self.sign_out(conn, sink);
                self.sessions.remove(&conn);
            }
            Input::Request { conn, request } => self.submit(conn, Queued::Request(request), now, sink),
            Input::Invalid {
                conn,
                request_id,
                result,
            } => self.submit(conn, Queued::Invalid(request_id, result), now, sink),
            Input::AuthDone {
                conn,
                ticket,
                outcome,
            } => self.auth_done(conn, ticket, outcome, now, sink),
            Input::RegisterDone { conn, outcome } => {
                self.pending = self.pending.saturating_sub(1);
                let code = match outcome {
                    RegisterOutcome::Created => ResultCode::OK,
                    RegisterOutcome::NameTaken => ResultCode::NAME_TAKEN,
                    RegisterOutcome::Unavailable => ResultCode::SERVICE_UNAVAILABLE,
                };
                if self.sessions.contains_key(&conn) {
                    sink.send(conn, &Event::RegisterResult(code));
                    self.finish(conn, now, sink);
                }
            }
            Input::Shutdown => self.shutdown(sink),
            Input::Remote { node, msg } => self.remote(node, msg, now, sink),
            Input::NodeState { node, users } => self.node_state(node, users, sink),
            Input::Snapshot { nodes } => self.snapshot(nodes, sink),
            Input::Published { conn, ok } => self.published(conn, ok, now, sink),
            Input::SeatDone {
                conn,
                name,
                uid,
                room,
                outcome,
            } => self.seat_done(conn, name, uid, room, outcome, now, sink),
        }
    }

    /// Runs a request now, or queues it behind the session's unanswered one.
    fn submit(&mut self, conn: Conn, q: Queued, now: Instant, sink: &mut impl Sink) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if s.waiting.is_none() && s.queued.as_ref().is_none_or(|q| q.is_empty()) {
            return self.run(conn, q, now, sink);
        }
        let queued = s.queued.get_or_insert_default();
        if queued.len() < MAX_QUEUED {
            queued.push_back(q);
        } else {
            tracing::info!(
                conn,
                "closing a session with {MAX_QUEUED} requests queued behind an unanswered one"
            );
            s.queued = None;
            sink.disconnect(conn);
        }
    }

    fn run(&mut self, conn: Conn, q: Queued, now: Instant, sink: &mut impl Sink) {
        match q {
            Queued::Request(request) => self.request(conn, request, now, sink),
            Queued::Invalid(id, code) => sink.send(conn, &Request::failure(id, code)),
            Queued::Close => sink.disconnect(conn),
        }
    }

    /// The session's unanswered request is answered: run what queued behind it.
    fn finish(&mut self, conn: Conn, now: Instant, sink: &mut impl Sink) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.waiting = None;
        }
        while let Some(s) = self.sessions.get_mut(&conn) {
            if s.waiting.is_some() {
                return;
            }
            let Some(q) = s.queued.as_mut().and_then(|q| q.pop_front()) else {
                // Drained: a session that pipelined once keeps no queue
                // while idle (it was 200 B a session after a reconnect
                // storm, each resume with its room enter behind it).
                s.queued = None;
                return;
            };
            self.run(conn, q, now, sink);
        }
    }

    /// The id room members know this session by.
    fn uid(&self, conn: Conn) -> u64 {
        match self.config.node_tag {
            0 => conn,
            tag => (u64::from(tag) << 48) | (conn & 0xFFFF_FFFF_FFFF),
        }
    }

    fn cluster(&self) -> bool {
        self.config.node_tag != 0
    }

    fn shutdown(&mut self, sink: &mut impl Sink) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.draining = true;
        let notice = Event::Notice {
            message: "server is shutting down".into(),
        }
        .to_bytes();
        for (conn, s) in &self.sessions {
            if s.plaza {
                sink.send_shared(*conn, &notice);
            }
        }
        sink.effect(Effect::Shutdown);
    }

    fn release(&mut self, name: &Arc<str>, conn: Conn) {
        if self.claimed.get(name) == Some(&conn) {
            self.claimed.remove(name);
        }
    }

    /// Leaves the room (telling the others) and gives up the name.
    fn sign_out(&mut self, conn: Conn, sink: &mut impl Sink) {
        self.leave_room(conn, sink);
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        s.admin = false;
        s.admin_role = false;
        match std::mem::replace(&mut s.state, State::Guest) {
            State::User { name } => {
                if !self.remote.users.contains_key(&name) {
                    self.online.remove(&name);
                }
                self.release(&name, conn);
                if self.cluster() {
                    let msg = BusMsg::Offline {
                        name: name.to_string(),
                    };
                    sink.effect(Effect::Publish { msg, ack: None });
                }
                sink.effect(Effect::Release {
                    conn,
                    name: name.to_string(),
                });
            }
            // A pending login is cancelled: its result will find no ticket.
            State::Pending { name, .. } => self.release(&name, conn),
            State::Guest => {}
            State::Closing => s.state = State::Closing,
        }
    }

    fn leave_room(&mut self, conn: Conn, sink: &mut impl Sink) -> bool {
        let Some(room) = self.sessions.get_mut(&conn).and_then(|s| s.room.take()) else {
            return false;
        };
        let uid = self.uid(conn);
        let seed = !self.plaza(conn);
        let r = &mut self.rooms[room as usize];
        r.remove(conn);
        r.seed -= usize::from(seed);
        self.tell_room(room, &Event::RoomLeaveUser { uid }, sink);
        if self.cluster() {
            if let Some(name) = self.name_of(conn) {
                let msg = BusMsg::Leave {
                    name: name.to_string(),
                    uid,
                    room,
                };
                sink.effect(Effect::Publish { msg, ack: None });
            }
        }
        true
    }

    fn auth_done(
        &mut self,
        conn: Conn,
        ticket: u64,
        outcome: AuthOutcome,
        now: Instant,
        sink: &mut impl Sink,
    ) {
        self.pending = self.pending.saturating_sub(1);
        // Re-validate: the session may have left, or been superseded.
        let current = self.sessions.get(&conn).and_then(|s| match &s.state {
            State::Pending { ticket: t, name } if *t == ticket => Some(name.clone()),
            _ => None,
        });
        let stale = self.stale_names.remove(&(conn, ticket));
        let Some(name) = current else {
            if let (AuthOutcome::Valid { .. }, Some(name)) = (outcome, stale) {
                // The store marked a login nobody will use: unmark it.
                sink.effect(Effect::Release { conn, name });
            }
            return;
        };
        let s = self.sessions.get_mut(&conn).expect("checked above");
        let code = match outcome {
            AuthOutcome::Valid { admin, mute, token } if !self.draining => {
                s.state = State::User { name: name.clone() };
                s.admin_role = admin;
                let plaza = s.plaza;
                match mute {
                    Some(m) => {
                        self.mutes.insert(name.clone(), m.map(|d| now + d));
                    }
                    None => {
                        self.mutes.remove(&name);
                    }
                }
                self.online.insert(name.clone());
                self.count_login(ResultCode::OK);
                sink.send(conn, &Event::LoginResult(ResultCode::OK));
                if plaza {
                    if let Some((token, ttl_secs)) = token {
                        sink.send(conn, &Event::ResumeToken { token, ttl_secs });
                    }
                    // A user who comes back muted learns it now, not at
                    // their first refused message.
                    if let Some(seconds) = mute.map(|m| m.map_or(u32::MAX, mute_seconds)) {
                        sink.send(conn, &Event::Muted { seconds });
                    }
                }
                if self.cluster() {
                    let msg = BusMsg::Online {
                        name: name.to_string(),
                        uid: self.uid(conn),
                    };
                    sink.effect(Effect::Publish { msg, ack: None });
                }
                return self.finish(conn, now, sink);
            }
            AuthOutcome::Valid { .. } => {
                sink.effect(Effect::Release {
                    conn,
                    name: name.to_string(),
                });
                ResultCode::SHUTTING_DOWN
            }
            AuthOutcome::Invalid => ResultCode::INVALID_CREDENTIALS,
            AuthOutcome::AlreadyLoggedIn => ResultCode::LOGIN_ALREADY,
            AuthOutcome::Unavailable => ResultCode::SERVICE_UNAVAILABLE,
        };
        s.state = State::Guest;
        // A login that failed after the login timeout passed ends the
        // connection (the timeout skipped it while the check ran).
        let late = self
            .config
            .login_timeout
            .is_some_and(|t| now.saturating_duration_since(s.guest_since) >= t);
        self.release(&name, conn);
        self.count_login(code);
        sink.send(conn, &Event::LoginResult(code));
        if late {
            return self.time_out(conn, sink);
        }
        self.finish(conn, now, sink);
    }

    fn is_muted(&mut self, name: &Arc<str>, now: Instant) -> bool {
        match self.mutes.get(name) {
            Some(None) => true,
            Some(Some(until)) if *until > now => true,
            Some(Some(_)) => {
                self.mutes.remove(name);
                false
            }
            None => false,
        }
    }

    fn request(&mut self, conn: Conn, request: Request, now: Instant, sink: &mut impl Sink) {
        // Requests that need no login.
        match request {
            Request::Login { name, password } => {
                return self.login(conn, name, Credential::Password(password), sink);
            }
            Request::Resume { name, token } => {
                self.opt_in(conn, true);
                return self.login(conn, name, Credential::Token(token), sink);
            }
            Request::Register { name, password } => {
                self.opt_in(conn, true);
                let code = if !self.config.registration {
                    ResultCode::REGISTRATION_DISABLED
                } else if self.draining {
                    ResultCode::SHUTTING_DOWN
                } else if self.pending >= self.config.max_pending {
                    ResultCode::BUSY
                } else {
                    self.pending += 1;
                    // Later requests wait for the answer, as behind a login.
                    if let Some(s) = self.sessions.get_mut(&conn) {
                        s.waiting = Some(Waiting::Register);
                    }
                    return sink.effect(Effect::Register { conn, name, password });
                };
                return sink.send(conn, &Event::RegisterResult(code));
            }
            Request::Hello { features, .. } => {
                let features = features & plaza_proto::features::ALL;
                self.opt_in(conn, features & plaza_proto::features::NOTIFICATIONS != 0);
                return sink.send(
                    conn,
                    &Event::Hello {
                        result: ResultCode::OK,
                        version: plaza_proto::VERSION,
                        features,
                        rooms: self.config.rooms,
                    },
                );
            }
            Request::Echo { payload } => {
                return sink.send(
                    conn,
                    &Event::EchoResult {
                        result: ResultCode::OK,
                        payload,
                    },
                );
            }
            Request::Ping { nonce } => return sink.send(conn, &Event::Pong { nonce }),
            _ => {}
        }
        let Some(name) = self.name_of(conn).cloned() else {
            // The seed's requests get the seed server's codes, which answer
            // by the user's state (a guest is in no room); Plaza's get 100.
            let code = match request {
                Request::RoomEnter { .. } => ResultCode::NOT_IN_LOBBY,
                Request::RoomLeave => ResultCode::USER_NOT_IN_ROOM,
                Request::RoomChat { .. } => ResultCode::USER_IN_LOBBY,
                _ => ResultCode::NOT_LOGGED_IN,
            };
            return sink.send(conn, &Request::failure(request.id(), code));
        };
        match request {
            // Entering and leaving tell every member: limited like chat.
            Request::RoomEnter { .. } | Request::RoomLeave if !self.may_chat(conn, None, now) => {
                sink.send(conn, &Request::failure(request.id(), ResultCode::RATE_LIMITED));
            }
            Request::RoomEnter { room } => {
                if let Some(code) = self.enter(conn, &name, room, sink) {
                    sink.send(conn, &Event::RoomEnterResult(code));
                }
            }
            Request::RoomLeave => {
                let code = if self.leave_room(conn, sink) {
                    ResultCode::OK
                } else {
                    ResultCode::USER_NOT_IN_ROOM
                };
                sink.send(conn, &Event::RoomLeaveResult(code));
            }
            Request::RoomChat { message } => {
                let room = self.sessions.get(&conn).and_then(|s| s.room);
                let Some(room) = room else {
                    return sink.send(conn, &Event::RoomChatResult(ResultCode::USER_IN_LOBBY));
                };
                if self.is_muted(&name, now) {
                    return sink.send(conn, &Event::RoomChatResult(ResultCode::MUTED));
                }
                if !self.may_chat(conn, Some(room), now) {
                    return sink.send(conn, &Event::RoomChatResult(ResultCode::RATE_LIMITED));
                }
                let frame = Event::RoomChat {
                    name: name.to_string(),
                    message,
                }
                .to_bytes();
                // Whoever hears this has heard the sender come in.
                let members = &mut self.rooms[room as usize];
                members.flush(sink);
                if self.remote.has_members(room) {
                    // Members on other nodes: answer once the bus has it.
                    self.send_room_message(room, &frame, sink);
                    return self.publish(
                        conn,
                        BusMsg::RoomFrame { room, frame },
                        Event::RoomChatResult,
                        sink,
                    );
                }
                sink.send(conn, &Event::RoomChatResult(ResultCode::OK));
                self.send_room_message(room, &frame, sink);
            }
            Request::Whisper { to, message } => {
                let code = if self.is_muted(&name, now) {
                    ResultCode::MUTED
                } else if !self.may_chat(conn, None, now) {
                    ResultCode::RATE_LIMITED
                } else if let Some(target) = self.conn_of(&to) {
                    if !self.plaza(target) {
                        return sink.send(conn, &Event::WhisperResult(ResultCode::UNREACHABLE));
                    }
                    sink.send(
                        target,
                        &Event::Whisper {
                            from: name.to_string(),
                            message,
                        },
                    );
                    ResultCode::OK
                } else if self.remote.users.contains_key(to.as_str()) {
                    let frame = Event::Whisper {
                        from: name.to_string(),
                        message,
                    }
                    .to_bytes();
                    return self.publish(conn, BusMsg::Whisper { to, frame }, Event::WhisperResult, sink);
                } else {
                    ResultCode::USER_NOT_FOUND
                };
                sink.send(conn, &Event::WhisperResult(code));
            }
            Request::Broadcast { message } => {
                if self.is_muted(&name, now) {
                    return sink.send(conn, &Event::BroadcastResult(ResultCode::MUTED));
                }
                if !self.may_chat(conn, None, now) {
                    return sink.send(conn, &Event::BroadcastResult(ResultCode::RATE_LIMITED));
                }
                let frame = Event::Broadcast {
                    from: name.to_string(),
                    message,
                }
                .to_bytes();
                let remote = !self.remote.users.is_empty();
                if !remote {
                    sink.send(conn, &Event::BroadcastResult(ResultCode::OK));
                }
                self.send_broadcast(&frame, sink);
                if remote {
                    self.publish(conn, BusMsg::Broadcast { frame }, Event::BroadcastResult, sink);
                }
            }
            Request::UserList { after } => {
                let names: Vec<String> = self
                    .online
                    .range::<str, _>((Bound::Excluded(after.as_str()), Bound::Unbounded))
                    .take(USER_LIST_PAGE + 1)
                    .map(|n| n.to_string())
                    .collect();
                let more = names.len() > USER_LIST_PAGE;
                let names = names.into_iter().take(USER_LIST_PAGE).collect();
                sink.send(
                    conn,
                    &Event::UserList {
                        result: ResultCode::OK,
                        total: u32::try_from(self.online.len()).unwrap_or(u32::MAX),
                        names,
                        more,
                    },
                );
            }
            Request::Logout => {
                self.sign_out(conn, sink);
                sink.send(conn, &Event::LogoutResult(ResultCode::OK));
                if let Some(s) = self.sessions.get_mut(&conn) {
                    s.guest_since = now;
                    if self.config.login_timeout.is_some() {
                        self.guests.push_back((now, conn));
                    }
                }
            }
            Request::Admin { secret } => {
                let s = self.sessions.get_mut(&conn).expect("logged-in session exists");
                let by_secret = self.config.admin_secret.as_deref().is_some_and(|expected| {
                    !expected.is_empty() && constant_time_eq(expected.as_bytes(), secret.as_bytes())
                });
                let code = if s.admin_role || by_secret {
                    s.admin = true;
                    ResultCode::OK
                } else {
                    ResultCode::NOT_ADMIN
                };
                sink.send(conn, &Event::AdminResult(code));
            }
            Request::Kick { name: target } => match self.admin_target(conn, &target) {
                Ok(Target::Local(t)) => {
                    self.kick(t, &name, sink);
                    sink.send(conn, &Event::KickResult(ResultCode::OK));
                }
                Ok(Target::Remote) => {
                    let msg = BusMsg::Kick {
                        name: target,
                        by: name.to_string(),
                    };
                    self.publish(conn, msg, Event::KickResult, sink);
                }
                Err(code) => sink.send(conn, &Event::KickResult(code)),
            },
            Request::Mute {
                name: target,
                seconds,
            } => match self.admin_target(conn, &target) {
                Ok(Target::Local(t)) => {
                    self.mute(t, seconds, now, sink);
                    sink.send(conn, &Event::MuteResult(ResultCode::OK));
                }
                Ok(Target::Remote) => {
                    let msg = BusMsg::Mute {
                        name: target,
                        seconds,
                    };
                    self.publish(conn, msg, Event::MuteResult, sink);
                }
                Err(code) => sink.send(conn, &Event::MuteResult(code)),
            },
            Request::Shutdown => {
                let admin = self.sessions.get(&conn).is_some_and(|s| s.admin);
                if admin {
                    sink.send(conn, &Event::ShutdownResult(ResultCode::OK));
                    self.shutdown(sink);
                } else {
                    sink.send(conn, &Event::ShutdownResult(ResultCode::NOT_ADMIN));
                }
            }
            Request::Login { .. }
            | Request::Register { .. }
            | Request::Echo { .. }
            | Request::Ping { .. }
            | Request::Hello { .. } => {
                unreachable!("handled above")
            }
            _ => sink.send(conn, &Request::failure(request.id(), ResultCode::UNKNOWN_PACKET)),
        }
    }

    /// The logged-in target of an admin command, after the checks.
    fn admin_target(&self, conn: Conn, target: &str) -> Result<Target, ResultCode> {
        if !self.sessions.get(&conn).is_some_and(|s| s.admin) {
            return Err(ResultCode::NOT_ADMIN);
        }
        match self.conn_of(target) {
            Some(t) => Ok(Target::Local(t)),
            None if self.remote.users.contains_key(target) => Ok(Target::Remote),
            None => Err(ResultCode::USER_NOT_FOUND),
        }
    }

    /// Publishes `msg` for `conn`, which waits for the outcome and is then
    /// answered with `reply` (OK, or SERVICE_UNAVAILABLE if the bus failed).
    fn publish(&mut self, conn: Conn, msg: BusMsg, reply: fn(ResultCode) -> Event, sink: &mut impl Sink) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.waiting = Some(Waiting::Ack(reply));
        }
        sink.effect(Effect::Publish { msg, ack: Some(conn) });
    }

    fn published(&mut self, conn: Conn, ok: bool, now: Instant, sink: &mut impl Sink) {
        let Some(Waiting::Ack(reply)) = self.sessions.get_mut(&conn).and_then(|s| s.waiting.take()) else {
            return;
        };
        let code = if ok {
            ResultCode::OK
        } else {
            ResultCode::SERVICE_UNAVAILABLE
        };
        sink.send(conn, &reply(code));
        self.finish(conn, now, sink);
    }

    /// The session logged in (not just logging in) as `name` on this node.
    fn conn_of(&self, name: &str) -> Option<Conn> {
        let c = *self.claimed.get(name)?;
        (self.name_of(c).map(|n| &**n) == Some(name)).then_some(c)
    }

    /// Tells `target` it was kicked, takes it out of its room (the others
    /// are told) and disconnects it after what was queued for it.
    fn kick(&mut self, target: Conn, by: &str, sink: &mut impl Sink) {
        if self.plaza(target) {
            sink.send(target, &Event::Kicked { by: by.to_owned() });
        }
        self.sign_out(target, sink);
        if let Some(s) = self.sessions.get_mut(&target) {
            s.state = State::Closing;
            s.queued = None;
        }
        sink.disconnect(target);
    }

    /// Mutes (or with 0 unmutes) `target`'s account and tells it.
    fn mute(&mut self, target: Conn, seconds: u32, now: Instant, sink: &mut impl Sink) {
        let Some(key) = self.name_of(target).cloned() else {
            return;
        };
        match seconds {
            0 => {
                self.mutes.remove(&key);
            }
            u32::MAX => {
                self.mutes.insert(key.clone(), None);
            }
            s => {
                self.mutes
                    .insert(key.clone(), Some(now + Duration::from_secs(u64::from(s))));
            }
        }
        if self.plaza(target) {
            sink.send(target, &Event::Muted { seconds });
        }
        sink.effect(Effect::Mute {
            name: key.to_string(),
            seconds,
        });
    }

    // ---- Operator interface (the control link), no admin session needed.

    /// Every logged-in user, sorted by name.
    pub fn users(&self, now: Instant) -> Vec<UserInfo> {
        self.online.iter().filter_map(|n| self.user(n, now)).collect()
    }

    /// Every user logged in on this node, with its session: what a shared
    /// store's presence marks are refreshed from.
    pub fn local_users(&self) -> impl Iterator<Item = (&Arc<str>, Conn)> + '_ {
        self.online.iter().filter_map(|n| Some((n, self.conn_of(n)?)))
    }

    /// One logged-in user.
    pub fn user(&self, name: &str, now: Instant) -> Option<UserInfo> {
        let conn = self.conn_of(name)?;
        let s = self.sessions.get(&conn)?;
        let muted = match self.mutes.get(name) {
            Some(None) => Some(None),
            Some(Some(until)) if *until > now => Some(Some(*until - now)),
            _ => None,
        };
        Some(UserInfo {
            name: name.to_owned(),
            conn,
            room: s.room,
            admin: s.admin,
            muted,
        })
    }

    /// Rooms in use and their members, by room number.
    pub fn rooms(&self) -> Vec<(u32, Vec<String>)> {
        (0..self.config.rooms)
            .filter(|r| !self.rooms[*r as usize].is_empty())
            .map(|r| (r, self.room_members(r)))
            .collect()
    }

    /// Kicks `name` on an operator's behalf. Returns whether it was online.
    pub fn operator_kick(&mut self, name: &str, sink: &mut impl Sink) -> bool {
        match self.conn_of(name) {
            Some(t) => self.kick(t, "operator", sink),
            None if self.remote.users.contains_key(name) => {
                let msg = BusMsg::Kick {
                    name: name.to_owned(),
                    by: "operator".into(),
                };
                sink.effect(Effect::Publish { msg, ack: None });
            }
            None => return false,
        }
        true
    }

    /// Mutes (0: unmutes) `name` on an operator's behalf. Returns whether it
    /// was online.
    pub fn operator_mute(&mut self, name: &str, seconds: u32, now: Instant, sink: &mut impl Sink) -> bool {
        match self.conn_of(name) {
            Some(t) => self.mute(t, seconds, now, sink),
            None if self.remote.users.contains_key(name) => {
                let msg = BusMsg::Mute {
                    name: name.to_owned(),
                    seconds,
                };
                sink.effect(Effect::Publish { msg, ack: None });
            }
            None => return false,
        }
        true
    }

    /// Sends a SERVER_NOTICE to every session, or to the members of `room`.
    /// Returns how many got it, or `None` for a room number out of range.
    pub fn notice(&mut self, room: Option<u32>, message: &str, sink: &mut impl Sink) -> Option<usize> {
        let frame = Event::Notice {
            message: message.to_owned(),
        }
        .to_bytes();
        let targets: Vec<Conn> = match room {
            Some(r) => {
                let room = self.rooms.get_mut(r as usize)?;
                room.flush(sink);
                room.members().to_vec()
            }
            None => self.sessions.keys().copied().collect(),
        };
        let mut told = 0;
        for t in targets.into_iter().filter(|t| self.plaza(*t)) {
            sink.send_shared(t, &frame);
            told += 1;
        }
        Some(told)
    }

    /// Refuses new logins (110) from now on, without closing anything:
    /// the first step of a drain.
    pub fn refuse_logins(&mut self) {
        self.draining = true;
    }

    fn login(&mut self, conn: Conn, name: String, credential: Credential, sink: &mut impl Sink) {
        let s = self.sessions.get_mut(&conn).expect("checked by caller");
        let code = match s.state {
            State::User { .. } | State::Pending { .. } => ResultCode::SESSION_ALREADY_LOGGED_IN,
            State::Closing => ResultCode::NOT_LOGGED_IN,
            State::Guest if self.draining => ResultCode::SHUTTING_DOWN,
            State::Guest if self.claimed.len() >= self.config.max_users => ResultCode::SERVER_FULL,
            State::Guest if self.claimed.contains_key(name.as_str()) => ResultCode::LOGIN_ALREADY,
            State::Guest if self.pending >= self.config.max_pending => ResultCode::BUSY,
            State::Guest => {
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                let name: Arc<str> = name.into();
                s.state = State::Pending {
                    ticket,
                    name: name.clone(),
                };
                s.waiting = Some(Waiting::Login);
                self.claimed.insert(name.clone(), conn);
                self.pending += 1;
                self.stale_names.insert((conn, ticket), name.to_string());
                return sink.effect(Effect::Authenticate {
                    conn,
                    ticket,
                    name: name.to_string(),
                    credential,
                });
            }
        };
        self.count_login(code);
        sink.send(conn, &Event::LoginResult(code));
    }

    /// Enters `room`; `None` when the answer comes later (a cluster seat).
    fn enter(&mut self, conn: Conn, name: &Arc<str>, room: i32, sink: &mut impl Sink) -> Option<ResultCode> {
        let s = self.sessions.get_mut(&conn).expect("logged-in session exists");
        if s.room.is_some() {
            return Some(ResultCode::NOT_IN_LOBBY);
        }
        let Some(idx) = u32::try_from(room).ok().filter(|r| *r < self.config.rooms) else {
            return Some(ResultCode::INVALID_ROOM);
        };
        let here = self.rooms[idx as usize].len() + self.remote.members(idx).len();
        if here >= self.config.room_capacity {
            return Some(ResultCode::ROOM_FULL);
        }
        if self.config.node_tag != 0 {
            // The shared store decides, atomically across nodes.
            s.waiting = Some(Waiting::Seat { room: idx });
            let uid = self.uid(conn);
            sink.effect(Effect::ClaimSeat {
                conn,
                name: name.to_string(),
                uid,
                room: idx,
            });
            return None;
        }
        self.seat(conn, name, idx, sink);
        for list in self.rooms[idx as usize].roster().lists() {
            sink.send_with(conn, |b| list.encode(b));
        }
        Some(ResultCode::OK)
    }

    /// Puts `conn` in `room` and tells the members on this node.
    fn seat(&mut self, conn: Conn, name: &Arc<str>, room: u32, sink: &mut impl Sink) {
        let uid = self.uid(conn);
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.room = Some(room);
        }
        let notify = Event::RoomNewUser {
            uid,
            name: name.to_string(),
        };
        self.tell_room(room, &notify, sink);
        let seed = !self.plaza(conn);
        let r = &mut self.rooms[room as usize];
        r.push(conn, uid, name, self.config.batch_presence);
        r.seed += usize::from(seed);
    }

    /// Turns Plaza's notifications on or off for `conn` (HELLO, or on for
    /// REGISTER and RESUME), keeping its room's count of seed clients.
    fn opt_in(&mut self, conn: Conn, on: bool) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if s.plaza == on {
            return;
        }
        s.plaza = on;
        if let Some(r) = s.room {
            let room = &mut self.rooms[r as usize];
            if on {
                room.seed -= 1;
            } else {
                room.seed += 1;
            }
        }
    }

    /// Sends a broadcast frame to every logged-in user on this node that
    /// understands it.
    fn send_broadcast(&self, frame: &Bytes, sink: &mut impl Sink) {
        for (c, s) in &self.sessions {
            if s.plaza && matches!(s.state, State::User { .. }) {
                sink.send_shared(*c, frame);
            }
        }
    }

    /// Tells the members of `room` on this node some presence news.
    fn tell_room(&mut self, room: u32, event: &Event, sink: &mut impl Sink) {
        if self.rooms[room as usize].tell(event, self.config.batch_presence, sink) {
            self.listed.push(room);
        }
    }

    /// Sends the presence news that has waited its turn (see `room.rs`).
    /// With [`Config::batch_presence`], the caller runs this on a timer: the
    /// tick sets how long news waits.
    pub fn flush_presence(&mut self, sink: &mut impl Sink) {
        let mut i = 0;
        while let Some(&r) = self.listed.get(i) {
            let room = &mut self.rooms[r as usize];
            if room.tick() {
                room.flush(sink);
                room.listed = false;
                self.listed.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }
}

/// Whom an admin command is aimed at.
enum Target {
    Local(Conn),
    /// Logged in on another node.
    Remote,
}

/// MUTED_NOTIFY's seconds for a mute that ends in `left`: rounded up, so
/// a mute with under a second left is not told as lifted (0).
fn mute_seconds(left: Duration) -> u32 {
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    u32::try_from(secs).unwrap_or(u32::MAX - 1).clamp(1, u32::MAX - 1)
}

/// Compares secrets in time that depends only on their lengths, so a
/// client cannot find the secret byte by byte from response times.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests;

/// The check the hub fuzz target runs (in `fuzz/`, outside the workspace)
/// and the corpus smoke test replays. Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use plaza_proto::{Event, Request};

    use crate::{AuthOutcome, BusMsg, Config, Conn, Effect, Hub, Input, SeatOutcome, Sink};

    #[derive(Default)]
    struct Out {
        effects: Vec<Effect>,
    }

    impl Sink for Out {
        fn send(&mut self, _: Conn, event: &Event) {
            // Everything the hub sends must encode to a decodable frame.
            let b = event.to_bytes();
            assert!(Event::decode(&b).is_ok(), "hub sent an undecodable {event:?}");
        }
        fn send_shared(&mut self, _: Conn, frames: &Bytes) {
            for frame in crate::room::frames(frames) {
                assert!(Event::decode(frame).is_ok(), "hub shared an undecodable frame");
            }
        }
        fn disconnect(&mut self, _: Conn) {}
        fn effect(&mut self, effect: Effect) {
            self.effects.push(effect);
        }
    }

    /// Drives a hub (cluster mode, small limits, presence batched) with
    /// sessions 1-4 sending whatever `data` decodes to, store and bus
    /// answers in any order, other nodes' messages and time passing (with
    /// presence ticks). Never panics; the counts agree.
    pub fn hub(data: &[u8]) {
        let config = Config {
            rooms: 4,
            room_capacity: 3,
            max_users: 3,
            max_pending: 2,
            chat_rate: 5,
            login_timeout: Some(Duration::from_secs(30)),
            node_tag: 1,
            admin_secret: Some("s".into()),
            batch_presence: true,
            ..Config::default()
        };
        let mut hub = Hub::new(config);
        let mut out = Out::default();
        let mut now = Instant::now();
        let mut rest = data;
        while let Some((&op, tail)) = rest.split_first() {
            let conn = Conn::from(op & 3) + 1;
            let len = usize::from(op >> 3).min(tail.len());
            let (arg, tail) = tail.split_at(len);
            rest = tail;
            let input = match op & 4 == 0 {
                // A frame from a client.
                true => match Request::decode(arg) {
                    Ok(request) => Input::Request { conn, request },
                    Err(e) => Input::Invalid {
                        conn,
                        request_id: plaza_proto::packet_id(arg),
                        result: e.result(),
                    },
                },
                false => match arg.first().copied().unwrap_or(0) % 8 {
                    0 => Input::Connect { conn },
                    1 => Input::Disconnect { conn },
                    2 => match out.effects.pop() {
                        Some(Effect::Authenticate { conn, ticket, .. }) => Input::AuthDone {
                            conn,
                            ticket,
                            outcome: match arg.get(1).copied().unwrap_or(0) % 3 {
                                0 => AuthOutcome::valid(arg.len() > 2),
                                1 => AuthOutcome::Invalid,
                                _ => AuthOutcome::AlreadyLoggedIn,
                            },
                        },
                        Some(Effect::ClaimSeat {
                            conn,
                            name,
                            uid,
                            room,
                        }) => Input::SeatDone {
                            conn,
                            name,
                            uid,
                            room,
                            outcome: SeatOutcome::Seated(vec![(uid, "x".into())]),
                        },
                        Some(Effect::Publish { ack: Some(conn), .. }) => Input::Published {
                            conn,
                            ok: arg.len() % 2 == 0,
                        },
                        _ => continue,
                    },
                    3 => Input::Remote {
                        node: 9,
                        msg: BusMsg::Enter {
                            name: format!("r{}", arg.len() % 5),
                            uid: 9 << 48 | arg.len() as u64,
                            room: u32::from(arg.get(1).copied().unwrap_or(0) % 6),
                        },
                    },
                    4 => Input::NodeState {
                        node: 9,
                        users: Vec::new(),
                    },
                    5 => {
                        now += Duration::from_secs(u64::from(arg.get(1).copied().unwrap_or(1)));
                        hub.expire_guests(now, &mut out);
                        hub.flush_presence(&mut out);
                        continue;
                    }
                    6 => Input::Shutdown,
                    _ => Input::Remote {
                        node: 9,
                        msg: BusMsg::Offline {
                            name: format!("r{}", arg.len() % 5),
                        },
                    },
                },
            };
            hub.handle(input, now, &mut out);
            assert!(hub.users_online() <= hub.sessions() + hub.remote_users());
        }
    }
}
