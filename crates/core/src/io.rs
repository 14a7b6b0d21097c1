//! What the hub takes (inputs), what it gives (sends and effects through a
//! [`Sink`]), and its configuration.

use std::time::{Duration, Instant};

use plaza_proto::{Event, Request, ResultCode, Roster};

use bytes::Bytes;

use crate::{BusMsg, HistoryLimits, RemoteEntry, SeatHolder, SeatOutcome};

/// A session, by the network layer's session id.
pub type Conn = u64;

/// The session of a user who is away (`away.rs`): no session. No real one
/// has this id (its slot would be the last of 2^32).
pub const AWAY: Conn = u64::MAX;

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
    /// This hub's history epoch: a random non-zero number, new at every
    /// start, so sequence numbers from before a restart are never taken for
    /// this run's (see `history.rs`). Every room starts in it; in cluster
    /// mode a room may move to others (`numbering.rs`).
    pub epoch: u64,
    /// How much history each room keeps.
    pub history: HistoryLimits,
    /// How long a user with room history who dropped keeps its seat and
    /// its whispers (see `away.rs`); zero: it leaves at once.
    pub resume_window: Duration,
    /// The wall clock, in Unix microseconds: when a room's topic was set.
    pub wall_clock: fn() -> u64,
}

/// The system's wall clock, in Unix microseconds.
pub(crate) fn unix_micros() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
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
            epoch: 1,
            history: HistoryLimits::default(),
            resume_window: Duration::ZERO,
            wall_clock: unix_micros,
        }
    }
}

/// Where a published message goes, and whose subscriptions must get it
/// for it to count as published (cluster mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Every live node (the bus).
    Every,
    /// This many nodes, this one included: the nodes with members in the
    /// message's room (the room's channel).
    Nodes(usize),
    /// The node the named user is logged in on, found in the shared
    /// store's directory at the moment of publishing (that node's own
    /// channel): a whisper, kick or mute. Not found: USER_NOT_FOUND.
    User,
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
    /// A front end lets a client in as a guest under `name` (the IRC front
    /// end with guests allowed): a login with no credential, refused if
    /// `name` is an account's. No client packet produces it.
    Guest {
        /// The session.
        conn: Conn,
        /// The name it asked for (checked by the front end).
        name: String,
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
        /// What (boxed: an input is sent by every session's task, whose
        /// future holds one, and a bus message is the largest).
        msg: Box<BusMsg>,
    },
    /// Cluster: the full state of one other node (empty: the node is gone).
    NodeState {
        /// The node.
        node: u64,
        /// Its logged-in users.
        users: Vec<RemoteEntry>,
    },
    /// Cluster: messages from `node` were missed (its stamps on a channel
    /// jumped; this node's bus link was cut meanwhile).
    BusGap {
        /// The node.
        node: u64,
        /// How many of its messages went by unseen (an upper bound: some
        /// may never have been published).
        missed: u64,
        /// The room whose channel they were on (`None`: the bus).
        room: Option<u32>,
        /// That room's members, read again, as (member id, node, name).
        members: Vec<SeatHolder>,
    },
    /// Cluster: the members of every followed room, as (member id, node,
    /// name), replacing the replica (after the bus link was
    /// (re)established, or another node rewrote its state).
    Snapshot {
        /// Each followed room and its members on every node.
        rooms: Vec<(u32, Vec<SeatHolder>)>,
        /// The link was down before it: what the rooms carried meanwhile
        /// may have gone by unseen.
        cut: bool,
    },
    /// Cluster: an [`Effect::Publish`] with an `ack` finished.
    Published {
        /// The session waiting for it.
        conn: Conn,
        /// OK; USER_NOT_FOUND (a message for a user no node has);
        /// SERVICE_UNAVAILABLE (not published, or not to every node that
        /// must get it).
        result: ResultCode,
        /// Room chat: where the cluster's numbering put it.
        place: Option<plaza_proto::bus::Place>,
    },
    /// Cluster: an [`Effect::ListUsers`] finished.
    UsersListed {
        /// The session.
        conn: Conn,
        /// OK, or SERVICE_UNAVAILABLE.
        result: ResultCode,
        /// Users logged in on every node.
        total: u32,
        /// The page: names after the one asked for, in order.
        names: Vec<String>,
        /// Whether more follow.
        more: bool,
    },
    /// Cluster: the log of a room with members on several nodes, read
    /// with an [`Effect::ClaimSeat`] that asked for it, just before its
    /// [`Input::SeatDone`] (`numbering.rs`).
    RoomLog {
        /// The room.
        room: u32,
        /// Its recent messages.
        log: Box<crate::RoomLog>,
    },
    /// Cluster: a room's members' roles, as the shared store had them
    /// when an [`Effect::ClaimSeat`] took a seat, just before its
    /// [`Input::SeatDone`] (`ops.rs`).
    RoomRoles {
        /// The room.
        room: u32,
        /// (member id, [`plaza_proto::roles`] bits).
        roles: Vec<(u64, u8)>,
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
    /// None: a guest, let in under a name that is no account's (a front
    /// end that allows guests asks with [`Input::Guest`]).
    Guest,
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
    /// Cluster: `conn` dropped and its user `name` is away (`away.rs`): its
    /// logged-in mark, if `conn` still holds it, passes to [`AWAY`] on this
    /// node, so that whispers from other nodes still come here. A login on
    /// any node may take an away mark over; [`Effect::Release`] with
    /// [`AWAY`] clears it when the user's time away ends.
    Away {
        /// The session that held the mark.
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
        /// Where it goes, and whose subscriptions must get it for it to
        /// count as published.
        reach: Reach,
    },
    /// Cluster: a page of the users logged in on every node (USER_LIST),
    /// from the shared store's directory; answer with
    /// [`Input::UsersListed`].
    ListUsers {
        /// The session.
        conn: Conn,
        /// The page starts after this name.
        after: String,
    },
    /// Cluster: follow `room` (`on`; before the seat claim that needs it) or
    /// stop following it (after its last member here left).
    Interest {
        /// The room.
        room: u32,
        /// Start or stop.
        on: bool,
    },
    /// Cluster: `name` dropped and may come back (`away.rs`); its seat in
    /// `room`, member id `uid`, is held meanwhile. The shared store records
    /// the seat as this node's, so that a burial of the node frees it; the
    /// seat's [`BusMsg::Leave`] frees it for good.
    HoldSeat {
        /// Account name.
        name: String,
        /// The seat's member id.
        uid: u64,
        /// The room.
        room: u32,
    },
    /// Cluster: the seat [`Effect::HoldSeat`] recorded moved to another
    /// node (the user came back there): this node no longer holds it.
    Unhold {
        /// Account name.
        name: String,
        /// The seat's member id.
        uid: u64,
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
        /// This node does not follow the room yet: read the room's log
        /// too, if it has members on other nodes (`numbering.rs`).
        fill: bool,
        /// The room's key, as the entrant gave it ("": none).
        key: String,
    },
}

/// One session a fan-out goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipient {
    /// The session.
    pub conn: Conn,
    /// The first of the fan-out's events it gets (a newcomer to a room hears
    /// only the news after its arrival).
    pub from: usize,
    /// May be dropped, oldest first, for a session that reads too slowly
    /// (the drop-oldest policy). Only for sessions that understand
    /// MESSAGES_MISSED (341).
    pub droppable: bool,
}

impl Recipient {
    /// Gets every event, and may not lose any.
    pub fn all(conn: Conn) -> Self {
        Self {
            conn,
            from: 0,
            droppable: false,
        }
    }
}

/// Where the hub's output goes: format-neutral events addressed to
/// sessions. Each session belongs to a front end (a wire format) that the
/// sink knows; the sink turns events into that front end's bytes.
pub trait Sink {
    /// Send `event` to one session.
    fn send(&mut self, to: Conn, event: &Event);
    /// Send a room's member list to one session entering it.
    fn send_members(&mut self, to: Conn, members: &Roster);
    /// Send `events` to many sessions, each from its [`Recipient::from`]: a
    /// front end encodes them once for all of its recipients, and they
    /// share those bytes.
    fn fanout(&mut self, events: &[Event], to: impl IntoIterator<Item = Recipient>);
    /// Send one packet of the binary protocol, already encoded, to many
    /// sessions (a room message with its sequence number: the bytes the
    /// room's history keeps). Only sessions on front ends that carry the
    /// binary protocol's packets take it, or can turn it into their own
    /// (IRC); `at` is when the hub took the message, the time a front end
    /// shows with it, now and in a replay.
    fn fanout_packet(&mut self, packet: &Bytes, at: Instant, to: impl IntoIterator<Item = Recipient>);
    /// Send packets already encoded (a replay from a room's history) to one
    /// session, together, each with when the hub took it.
    fn send_packets<'a>(&mut self, to: Conn, packets: impl IntoIterator<Item = (&'a Bytes, Instant)>);
    /// Close a session after flushing what was sent to it.
    fn disconnect(&mut self, conn: Conn);
    /// Carry out an effect.
    fn effect(&mut self, effect: Effect);
}
