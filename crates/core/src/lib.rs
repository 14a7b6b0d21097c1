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
//!
//! Where things are: `io.rs` the types the hub takes and gives; `session.rs`
//! a session's state and its queue of waiting requests; `login.rs` logins,
//! registrations, logouts and shutdown; `request.rs` what each request does;
//! `rooms.rs` entering, leaving and telling a room; `moderation.rs` admin
//! targets, kicks, mutes and publishes that wait for the bus; `operator.rs`
//! the control link's API; `remote.rs` cluster mode; `room.rs` one room's
//! members and gathered presence news.
#![warn(missing_docs)]

mod away;
mod history;
mod interest;
mod io;
mod login;
mod moderation;
mod modes;
mod numbering;
mod operator;
mod ops;
mod remote;
mod request;
mod room;
mod rooms;
mod send;
mod session;
mod topic;

pub use away::INBOX_WHISPERS;
pub use history::{HELD_OVERHEAD, HistoryLimits};
pub use io::{
    AWAY, AuthOutcome, Config, Conn, Credential, Effect, Input, Reach, Recipient, RegisterOutcome, Sink,
    UserInfo,
};
pub use numbering::{Logged, RoomEpochs, RoomLog};
pub use plaza_proto::bus::BusMsg;
pub use remote::{RemoteEntry, SeatHolder, SeatOutcome, node_tag};
use room::Room;
pub use room::{MAX_TICKS, MEMBERS_PER_TICK};
pub use send::{SEND_ID_WINDOW, SEND_IDS};
pub use session::{Bucket, Drops, LoginResults, MAX_QUEUED};
use session::{Queued, Session, State, Waiting};

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plaza_proto::{Event, Request, ResultCode};

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
    /// Message ids of recent ROOM_SENDs, per user.
    sent_ids: send::SentIds,
    /// Users who dropped and may come back (see `away.rs`).
    away: HashMap<Arc<str>, away::Away>,
    /// Each room's history epoch, shared with the front ends.
    epochs: Arc<RoomEpochs>,
    /// Epochs this node took for rooms it numbers again (`numbering.rs`).
    epochs_taken: u64,
    /// Senders waiting for their room message's copy (`numbering.rs`).
    parked: Vec<numbering::Parked>,
}

impl Hub {
    /// An empty hub.
    pub fn new(config: Config) -> Self {
        Self {
            rooms: vec![Room::new(config.epoch); config.rooms as usize],
            epochs: Arc::new(RoomEpochs::new(config.rooms, config.epoch)),
            epochs_taken: 0,
            parked: Vec::new(),
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
            sent_ids: send::SentIds::default(),
            away: HashMap::new(),
        }
    }

    /// Each room's history epoch, as it changes (for front ends that name
    /// messages by it).
    pub fn epochs(&self) -> Arc<RoomEpochs> {
        self.epochs.clone()
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

    /// Bytes of room history held, as [`HistoryLimits::bytes`] counts them.
    pub fn history_bytes(&self) -> usize {
        self.rooms.iter().map(|r| r.history.bytes()).sum()
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
                    history: false,
                    notices: false,
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
                let away = self.hold(conn, now, sink);
                self.sign_out(conn, away && self.cluster(), sink);
                self.sessions.remove(&conn);
            }
            Input::Request { conn, request } => self.submit(conn, Queued::Request(request), now, sink),
            Input::Guest { conn, name } => self.submit(conn, Queued::Guest(name), now, sink),
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
            Input::Remote { node, msg } => self.remote(node, *msg, now, sink),
            Input::NodeState { node, users } => self.node_state(node, users, sink),
            Input::BusGap {
                node,
                missed,
                room,
                members,
            } => self.bus_gap(node, missed, room, &members, now, sink),
            Input::Snapshot { rooms, cut } => self.snapshot(rooms, cut, now, sink),
            Input::Published { conn, result, place } => self.published(conn, result, place, now, sink),
            Input::UsersListed {
                conn,
                result,
                total,
                names,
                more,
            } => self.users_listed(conn, result, total, names, more, now, sink),
            Input::RoomLog { room, log } => {
                if self.interested(room) {
                    self.adopt(room, *log, now);
                }
            }
            Input::RoomRoles { room, roles } => self.set_roles(room, roles),
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
            Queued::Guest(name) => self.login(conn, name, Credential::Guest, sink),
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

    /// The session logged in (not just logging in) as `name` on this node.
    fn conn_of(&self, name: &str) -> Option<Conn> {
        let c = *self.claimed.get(name)?;
        (self.name_of(c).map(|n| &**n) == Some(name)).then_some(c)
    }

    // ---- Operator interface (the control link), no admin session needed.
}

/// Compares secrets in time that depends only on their lengths, so a
/// client cannot find the secret byte by byte from response times.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests;

#[doc(hidden)]
pub mod fuzzing;
