//! The IRC front end: Plaza's rooms as channels `#0`..`#N-1`, for IRC
//! clients (docs/IRC.md).
//!
//! Its own plaza-net server cuts lines ([`Lines`]). Inbound
//! ([`inbound.rs`](inbound)), a registered client's commands become the
//! binary protocol's requests, encoded and decoded by the same
//! [`Gateway`] as a packet would be (so every check and limit is the
//! same); registration (NICK, USER, PASS, SASL PLAIN; CAP in
//! [`caps.rs`](caps)) and the commands Plaza has no request for
//! ([`queries.rs`](queries), [`modes.rs`](modes)) are answered here, in
//! the order of the lines, under their IRCv3 labels ([`Order`]). Outbound,
//! the hub's events become IRC lines: answers ([`outbound.rs`](outbound));
//! fan-outs, each written once per form (with or without server-time, and
//! for room messages `msgid`) and shared by every IRC recipient of that
//! form: presence news ([`presence.rs`](presence)) and room messages
//! ([`history.rs`](history), which also answers CHATHISTORY).
//!
//! IRC needs context the hub's events leave out (which channel, a
//! leaver's nick): [`Irc`] keeps each session's nick, capabilities and
//! channel, and the names and nicks of the channels IRC users are in
//! ([`channels.rs`](channels)).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use plaza_net::{FrameError, Framing, Handle, Handler, NetError, ServerConfig, SessionId};

use super::binary::Gateway;
use channels::Channels;
use order::Order;

mod caps;
mod channels;
mod history;
mod inbound;
pub(crate) mod line;
mod modes;
mod order;
mod outbound;
mod presence;
mod queries;
mod registration;

pub(crate) use history::Chat;
pub(crate) use presence::Fanout;

/// IRC's framing: lines ending in `\n`, tags and all at most
/// [`line::MAX_TAGS`] + [`line::MAX_LINE`] bytes (a longer line closes
/// the connection; a line merely over 512 bytes is answered with 417).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lines;

impl Framing for Lines {
    fn header_len(&self) -> usize {
        1
    }
    fn max_frame(&self) -> usize {
        line::MAX_TAGS + line::MAX_LINE
    }
    fn frame_len(&self, _: &[u8]) -> Result<usize, FrameError> {
        Err(FrameError::Invalid("IRC lines have no header"))
    }
    fn delimiter(&self) -> Option<u8> {
        Some(b'\n')
    }
}

/// Makes `config` the IRC front end's: lines, a PING to quiet clients.
pub(crate) fn configure(config: &mut ServerConfig) {
    config.max_frame = Lines.max_frame();
    if let Some(idle) = config.idle_timeout {
        let ping = Bytes::from_static(b"PING :plaza\r\n");
        config.quiet_ping = Some((super::ws::ping_after(idle), ping));
    }
    config.farewell = Some(Bytes::from_static(
        b"ERROR :Closing link: server shutting down; reconnect in a few seconds\r\n",
    ));
    config.slow_farewell = Some(Bytes::from_static(
        b"ERROR :Closing link: too slow: messages for you piled up\r\n",
    ));
}

/// IRCv3 capabilities a session asked for.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Caps {
    /// `echo-message`: a client hears its own messages back.
    pub(crate) echo: bool,
    /// `cap-notify` (asked for, or implied by `CAP LS 302`).
    pub(crate) notify: bool,
    /// `server-time`: every line says when the server sent it.
    pub(crate) time: bool,
    /// `userhost-in-names`: NAMES lists `nick!user@host`.
    pub(crate) userhost: bool,
    /// `multi-prefix`: every prefix of a member in NAMES and WHO. Plaza's
    /// members have at most one (none in NAMES), so it changes nothing.
    pub(crate) multi_prefix: bool,
    /// `message-tags`: lines carry tags (`msgid` on room messages).
    pub(crate) tags: bool,
    /// `batch`: related lines come inside `BATCH +ref` ... `BATCH -ref`.
    pub(crate) batch: bool,
    /// `labeled-response`: a line's `label` comes back on its answer.
    pub(crate) labeled: bool,
    /// `draft/chathistory`: CHATHISTORY is asked for.
    pub(crate) history: bool,
    /// `away-notify`: AWAY from the IRC users of its channel.
    pub(crate) away_notify: bool,
    /// `setname`: SETNAME from the IRC users of its channel.
    pub(crate) setname: bool,
    /// Negotiating (CAP LS or REQ before CAP END): registration waits.
    pub(crate) negotiating: bool,
    /// `CAP LS 302` or later: `cap-notify` is implied.
    pub(crate) v302: bool,
}

impl Caps {
    /// `lines` as this session gets them: with server-time's tag if asked.
    pub(crate) fn stamp(&self, lines: BytesMut) -> BytesMut {
        if !self.time || lines.is_empty() {
            return lines;
        }
        // Lines that carry their own time (history) keep it.
        let now = line::time(std::time::SystemTime::now());
        line::with_tag(&lines, &format!("time={now}"))
    }
}

/// How a session is logging in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Login {
    /// Not yet.
    None,
    /// SASL PLAIN, as `account`, waiting for the hub.
    Sasl(String),
    /// Registration with PASS, as its nick.
    Pass,
    /// Registration as a guest.
    Guest,
    /// Logged in (by SASL; registration may not have ended).
    Done,
}

/// One IRC session's state.
#[derive(Debug)]
pub(crate) struct Session {
    /// The nick asked for (before registration) or held (after).
    pub(crate) nick: Option<Arc<str>>,
    /// USER's user name (empty until USER is sent) and real name.
    pub(crate) username: String,
    pub(crate) realname: String,
    /// OPER succeeded: a Plaza admin.
    pub(crate) oper: bool,
    pub(crate) pass: Option<String>,
    pub(crate) caps: Caps,
    /// AUTHENTICATE PLAIN was sent; its payload is awaited.
    pub(crate) sasl_started: bool,
    pub(crate) login: Login,
    /// Welcomed (001 sent): commands are accepted.
    pub(crate) registered: bool,
    /// The channel it is in.
    pub(crate) room: Option<u32>,
    /// The channel a JOIN asked for, until the hub answers.
    pub(crate) joining: Option<u32>,
    /// Targets of whispers, kicks and mutes the hub has not answered yet,
    /// in order (their answers name them).
    pub(crate) targets: std::collections::VecDeque<Target>,
    pub(crate) away: Option<String>,
    /// The MOTD is still to follow the welcome (after LUSERS).
    pub(crate) motd_due: bool,
    /// Replies waiting for the hub's answers to earlier lines.
    pub(crate) order: Order,
    /// QUIT was sent: the link closes once the logout is answered.
    pub(crate) quitting: bool,
    /// A PART (or JOIN 0) of its channel is under way: it is as good as
    /// out of it (a JOIN of the same channel right after enters again).
    pub(crate) leaving: bool,
    /// PART's reason, for its own PART line.
    pub(crate) parting: Option<String>,
    /// CHATHISTORY requests the hub has not answered yet, in order.
    pub(crate) wanted: std::collections::VecDeque<history::Wanted>,
    /// WHOWAS has it (`State::remember`).
    pub(crate) remembered: bool,
}

/// Whom a request the hub has not answered yet was about.
#[derive(Debug)]
pub(crate) enum Target {
    /// A PRIVMSG (or, `notice`, a NOTICE: errors are not told) to a nick.
    Whisper { nick: String, notice: bool },
    /// KICK: a member put out of the channel (a room kick).
    Kick(String),
    /// MODE +o, -o, +v or -v.
    Op(String),
    /// INVITE of `nick` to `channel`.
    Invite { nick: String, channel: String },
    /// MODE of the room's modes (+t, +m, +l, +k).
    Mode,
    /// KILL: Plaza's kick (the user is disconnected).
    Kill(String),
    /// MODE +q (`on`) or -q.
    Mute { nick: String, on: bool },
}

impl Session {
    fn new() -> Self {
        Self {
            nick: None,
            username: String::new(),
            realname: String::new(),
            oper: false,
            pass: None,
            caps: Caps::default(),
            sasl_started: false,
            login: Login::None,
            registered: false,
            room: None,
            joining: None,
            targets: std::collections::VecDeque::new(),
            away: None,
            motd_due: false,
            order: Order::default(),
            quitting: false,
            leaving: false,
            parting: None,
            wanted: std::collections::VecDeque::new(),
            remembered: false,
        }
    }

    /// The nick for numerics: `*` before one is chosen.
    pub(crate) fn me(&self) -> &str {
        self.nick.as_deref().unwrap_or("*")
    }

    /// Whether it is in `room`'s channel or joining it: a request sent
    /// after a JOIN waits behind it in the hub, so it acts once the JOIN
    /// did (a bot's `JOIN #c` then `PRIVMSG #c` without waiting).
    pub(crate) fn present(&self, room: u32) -> bool {
        self.room == Some(room) || self.joining == Some(room)
    }
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) sessions: HashMap<SessionId, Session>,
    pub(crate) channels: Channels,
    /// IRC users who left this node, newest first (WHOWAS).
    pub(crate) gone: std::collections::VecDeque<Gone>,
}

/// Users WHOWAS remembers.
pub(crate) const WHOWAS_KEPT: usize = 128;

/// An IRC user who left, as WHOWAS tells of it.
#[derive(Debug)]
pub(crate) struct Gone {
    pub(crate) nick: Arc<str>,
    pub(crate) username: String,
    pub(crate) realname: String,
}

impl State {
    /// `id` is gone: its channel, and one it was joining, lose it.
    fn forget(&mut self, id: SessionId) {
        self.remember(id);
        if let Some(s) = self.sessions.remove(&id) {
            for room in s.room.into_iter().chain(s.joining) {
                self.channels.release(room);
            }
        }
    }

    /// `id` is leaving (its link closes, or is closed): WHOWAS tells of it
    /// from now on.
    pub(crate) fn remember(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let (true, false, Some(nick)) = (s.registered, s.remembered, s.nick.clone()) else {
            return;
        };
        s.remembered = true;
        let gone = Gone {
            nick,
            username: s.username.clone(),
            realname: s.realname.clone(),
        };
        if self.gone.len() == WHOWAS_KEPT {
            self.gone.pop_back();
        }
        self.gone.push_front(gone);
    }
}

/// The IRC front end, shared by its gateway (inbound) and the hub's sink
/// (outbound).
pub(crate) struct Irc {
    pub(crate) net: Handle,
    pub(crate) state: Mutex<State>,
    /// Clients without credentials get in under their nick.
    pub(crate) allow_guests: bool,
    /// The server's name in its lines.
    pub(crate) server: Box<str>,
    /// Each room's history epoch, as the hub changes them: message ids
    /// carry it.
    pub(crate) epochs: Arc<plaza_core::RoomEpochs>,
    /// The most users LUSERS has counted (265, 266).
    pub(crate) most_users: std::sync::atomic::AtomicU32,
    /// A moment on the hub's clock and on the wall clock, to show when
    /// the hub took a message.
    pub(crate) clock: (std::time::Instant, std::time::SystemTime),
}

impl Irc {
    pub(crate) fn new(
        net: Handle,
        rooms: u32,
        allow_guests: bool,
        server: &str,
        epochs: Arc<plaza_core::RoomEpochs>,
    ) -> Arc<Self> {
        Arc::new(Self {
            net,
            state: Mutex::new(State {
                sessions: HashMap::new(),
                channels: Channels::new(rooms),
                gone: std::collections::VecDeque::new(),
            }),
            allow_guests,
            server: server.into(),
            epochs,
            most_users: std::sync::atomic::AtomicU32::new(0),
            clock: (std::time::Instant::now(), std::time::SystemTime::now()),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `lines` to `id` (nothing if empty).
    pub(crate) fn send(&self, id: SessionId, lines: BytesMut) {
        if !lines.is_empty() {
            let _ = self.net.send(id, lines.freeze());
        }
    }
}

/// The IRC sessions' handler.
pub(crate) struct IrcGateway {
    pub(crate) gateway: Gateway,
    pub(crate) irc: Arc<Irc>,
}

impl Handler for IrcGateway {
    async fn on_join(&self, id: SessionId, peer: SocketAddr) {
        let mut session = Session::new();
        // The HELLO below.
        let _ = session
            .order
            .line(&Caps::default(), "", (1, 0), None, BytesMut::new());
        self.irc.lock().sessions.insert(id, session);
        self.gateway.on_join(id, peer).await;
        // IRC clients hear Plaza's notices (server notices, mutes), and
        // take room messages with their sequence numbers (history.rs).
        let hello = plaza_proto::Request::Hello {
            version: plaza_proto::VERSION,
            features: plaza_proto::features::NOTIFICATIONS
                | plaza_proto::features::HISTORY
                | plaza_proto::features::NOTICES,
        };
        let input = self.gateway.input(id, &inbound::frame(&hello));
        self.gateway.queue(Some(input)).await;
    }

    fn on_recv(&self, id: SessionId, frame: &[u8]) -> impl Future<Output = ()> + Send {
        let inputs = self.command(id, frame);
        async move {
            for input in inputs {
                self.gateway.queue(Some(input)).await;
            }
        }
    }

    fn on_peer_closed(&self, id: SessionId) -> impl Future<Output = bool> + Send {
        self.gateway.on_peer_closed(id)
    }

    async fn on_leave(&self, id: SessionId) {
        let logged_in = {
            let mut state = self.irc.lock();
            let (logged_in, room, nick) = match state.sessions.get(&id) {
                Some(s) => (s.login == Login::Done && !s.quitting, s.room, s.nick.clone()),
                None => (false, None, None),
            };
            if let (true, Some(room), Some(nick)) = (logged_in, room, nick) {
                let why = channels::Departure::Quit("Connection closed".into());
                state.channels.depart(room, &nick, why);
            }
            state.forget(id);
            logged_in
        };
        if logged_in {
            // An IRC client that drops leaves at once, as after QUIT: the
            // hub's resume window is for clients that rejoin, which IRC
            // clients do not.
            let logout = self
                .gateway
                .input(id, &inbound::frame(&plaza_proto::Request::Logout));
            self.gateway.queue(Some(logout)).await;
        }
        self.gateway.on_leave(id).await;
    }

    fn on_dropped(&self, id: SessionId, dropped: plaza_net::Dropped) {
        let count = dropped.count;
        tracing::debug!(session = %id, count, "room messages dropped for a slow IRC reader");
        let mut b = BytesMut::new();
        let me = self.irc.lock().sessions.get(&id).map(|s| s.me().to_owned());
        let text = format!("{count} messages were dropped: you read too slowly");
        line::put(
            &mut b,
            line::Prefix::Server(&self.irc.server),
            "NOTICE",
            &[me.as_deref().unwrap_or("*"), &text],
        );
        self.irc.send(id, b);
    }

    fn on_error(&self, id: Option<SessionId>, error: &NetError) {
        self.gateway.on_error(id, error);
    }
}
