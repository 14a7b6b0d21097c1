//! A client's lines: registration, and commands turned into the hub's
//! requests (or answered here when Plaza has no request for them).

use std::sync::Arc;

use base64::Engine as _;
use bytes::BytesMut;
use plaza_core::Input;
use plaza_net::SessionId;
use plaza_proto::{Request, limits};

use super::channels::Departure;
use super::line::{self, LineError, Message, Prefix};
use super::queries;
use super::{Irc, IrcGateway, Login, Session, State, Target};

/// A request as the binary protocol's packet, for the gateway to decode
/// (and check) as it would one from a socket.
pub(super) fn frame(request: &Request) -> BytesMut {
    let mut b = BytesMut::new();
    request.encode(&mut b);
    b
}

/// What a line asks of the hub, beside the replies written here.
#[derive(Default)]
pub(super) struct Out {
    pub(super) replies: BytesMut,
    pub(super) requests: Vec<Request>,
    /// Lines for other sessions (away-notify, INVITE).
    pub(super) others: Vec<(SessionId, BytesMut)>,
    guest: Option<String>,
    close: Option<&'static str>,
}

/// One session's line being handled, with the state it may change.
pub(super) struct Cx<'a> {
    pub(super) irc: &'a Irc,
    pub(super) state: &'a mut State,
    pub(super) id: SessionId,
    pub(super) out: Out,
}

impl Cx<'_> {
    pub(super) fn request(&mut self, request: Request) {
        self.out.requests.push(request);
    }

    /// The lines written back so far.
    pub(super) fn replies(&mut self) -> &mut BytesMut {
        &mut self.out.replies
    }

    pub(super) fn s(&mut self) -> &mut Session {
        self.state.sessions.get_mut(&self.id).expect("checked before")
    }

    pub(super) fn me(&self) -> String {
        self.state.sessions[&self.id].me().to_owned()
    }

    /// A numeric reply to this session.
    pub(super) fn num(&mut self, code: &str, params: &[&str]) {
        let me = self.me();
        let mut all = Vec::with_capacity(params.len() + 1);
        all.push(me.as_str());
        all.extend_from_slice(params);
        line::put(
            &mut self.out.replies,
            Prefix::Server(&self.irc.server),
            code,
            &all,
        );
    }

    pub(super) fn need_params(&mut self, m: &Message<'_>, n: usize) -> bool {
        if m.params.len() < n || m.params[..n].iter().any(|p| p.is_empty()) {
            self.num("461", &[m.command, "Not enough parameters"]);
            return false;
        }
        true
    }
}

impl IrcGateway {
    /// Handles one line; returns what to queue for the hub.
    pub(super) fn command(&self, id: SessionId, raw: &[u8]) -> Vec<Input> {
        let mut out = {
            let mut state = self.irc.lock();
            if !state.sessions.contains_key(&id) {
                return Vec::new();
            }
            let mut cx = Cx {
                irc: &self.irc,
                state: &mut state,
                id,
                out: Out::default(),
            };
            let mut label = None;
            match line::parse(raw) {
                Ok(m) => {
                    label = m.label.map(str::to_owned);
                    dispatch(&mut cx, &m)
                }
                Err(LineError::Empty) => {}
                Err(LineError::TooLong) => cx.num("417", &["Input line was too long"]),
                Err(LineError::NotUtf8) => {
                    let me = cx.me();
                    let text = "Your line was not UTF-8 and was ignored";
                    line::put(
                        &mut cx.out.replies,
                        Prefix::Server(&cx.irc.server),
                        "FAIL",
                        &["*", "INVALID_UTF8", &me, text],
                    );
                }
            }
            let mut out = cx.out;
            // Replies leave in the order of the lines: after the answers to
            // this line's requests and to any still unanswered.
            let asked = out.requests.len() + usize::from(out.guest.is_some());
            let replies = std::mem::take(&mut out.replies);
            if let Some(s) = state.sessions.get_mut(&id) {
                let replies = s.caps.stamp(replies);
                // Room messages the sender will hear back (echo-message).
                let chats = match s.caps.echo {
                    true => (out.requests.iter())
                        .filter(|r| matches!(r, Request::RoomChat { .. } | Request::RoomNotice { .. }))
                        .count(),
                    false => 0,
                };
                let now = match out.close {
                    // Closing: everything goes now, before the ERROR.
                    Some(_) => s.order.all(replies),
                    None => s.order.line(
                        &s.caps,
                        &self.irc.server,
                        (asked, chats),
                        label.as_deref(),
                        replies,
                    ),
                };
                self.irc.send(id, now);
            }
            out
        };
        for (other, lines) in out.others.drain(..) {
            self.irc.send(other, lines);
        }
        let mut inputs: Vec<Input> = out
            .requests
            .iter()
            .map(|r| self.gateway.input(id, &frame(r)))
            .collect();
        if let Some(name) = out.guest {
            let allowed = match self.irc.net.peer_addr(id) {
                Some(peer) => self.gateway.logins.allow(peer.ip(), Some(&name)),
                None => true,
            };
            let conn = self.gateway.conn(id);
            // Refused by the rate limit as a login would be: the hub is
            // not asked, and the client is told as for a failed login.
            inputs.insert(
                0,
                if allowed {
                    Input::Guest { conn, name }
                } else {
                    Input::Invalid {
                        conn,
                        request_id: plaza_proto::id::LOGIN_REQUEST,
                        result: plaza_proto::ResultCode::RATE_LIMITED,
                    }
                },
            );
        }
        if let Some(why) = out.close {
            tracing::debug!(session = %id, why, "closing an IRC session");
            let _ = self.irc.net.disconnect(id);
        }
        inputs
    }
}

fn dispatch(cx: &mut Cx<'_>, m: &Message<'_>) {
    if cx.s().quitting {
        return;
    }
    // Upper-cased on the stack: no command Plaza knows is longer.
    let mut upper = [0u8; 16];
    let cmd = match upper.get_mut(..m.command.len()) {
        Some(u) => {
            u.copy_from_slice(m.command.as_bytes());
            u.make_ascii_uppercase();
            std::str::from_utf8(u).unwrap_or_default()
        }
        None => "",
    };
    match cmd {
        "CAP" => return super::caps::cap(cx, m),
        "PING" => {
            if cx.need_params(m, 1) {
                let token = m.params[0];
                line::put(
                    &mut cx.out.replies,
                    Prefix::Server(&cx.irc.server),
                    "PONG",
                    &[&cx.irc.server, token],
                );
            }
            return;
        }
        "PONG" => return,
        "QUIT" => {
            let reason = m.param(0).unwrap_or("Client quit");
            let text = format!("Closing link: Quit: {reason}");
            line::error(&mut cx.out.replies, &text);
            if let (Some(room), Some(nick)) = (cx.s().room, cx.s().nick.clone()) {
                let why = Departure::Quit(format!("Quit: {reason}"));
                cx.state.channels.depart(room, &nick, why);
            }
            // Its nick is free from now on, though the session lingers
            // until the link is closed.
            cx.s().quitting = true;
            if cx.s().login == Login::Done {
                // Logged out before the link closes, so that the client can
                // come straight back under the same name.
                cx.request(Request::Logout);
            } else {
                cx.out.close = Some("quit");
            }
            return;
        }
        _ => {}
    }
    if !cx.s().registered {
        return match cmd {
            "NICK" => nick(cx, m),
            "USER" => user(cx, m),
            "PASS" => {
                if cx.need_params(m, 1) {
                    cx.s().pass = Some(m.params[0].to_owned());
                }
            }
            "AUTHENTICATE" => authenticate(cx, m),
            _ => cx.num("451", &["You have not registered"]),
        };
    }
    match cmd {
        "NICK" => match m.param(0) {
            Some(n) if Some(n) != cx.s().nick.as_deref() && queries::irc_session(cx.state, n).is_some() => {
                cx.num("433", &[n, "Nickname is already in use"]);
            }
            Some(n) if Some(n) != cx.s().nick.as_deref() => {
                cx.num("484", &["Plaza names are account names and cannot change"]);
            }
            _ => {}
        },
        "USER" | "PASS" => cx.num("462", &["You may not reregister"]),
        "AUTHENTICATE" => cx.num("907", &["You have already authenticated"]),
        "JOIN" => join(cx, m),
        "PART" => part(cx, m),
        "PRIVMSG" | "NOTICE" => message(cx, m, cmd == "NOTICE"),
        "NAMES" => queries::names(cx, m.param(0)),
        "WHO" => queries::who(cx, m),
        "WHOIS" => queries::whois(cx, m),
        "WHOWAS" => queries::whowas(cx, m),
        "USERHOST" => queries::userhost(cx, m),
        "TOPIC" => queries::topic(cx, m),
        "LIST" => queries::list(cx),
        "TIME" => queries::time(cx),
        "INFO" => queries::info(cx),
        "MODE" => super::modes::mode(cx, m),
        "CHATHISTORY" => super::history::chathistory(cx, m),
        "INVITE" => queries::invite(cx, m),
        "SETNAME" => queries::setname(cx, m),
        // Client tags are denied (ISUPPORT CLIENTTAGDENY=*): nothing to relay.
        "TAGMSG" => {}
        "KICK" => kick(cx, m),
        "KILL" => {
            // Plaza's kick: the user is disconnected (admins only).
            if cx.need_params(m, 1) {
                cx.s().targets.push_back(Target::Kill(m.params[0].to_owned()));
                cx.request(Request::Kick {
                    name: m.params[0].to_owned(),
                });
            }
        }
        "AWAY" => {
            let away = m.param(0).filter(|a| !a.is_empty()).map(str::to_owned);
            let code = if away.is_some() { "306" } else { "305" };
            let text = if away.is_some() {
                "You have been marked as being away"
            } else {
                "You are no longer marked as being away"
            };
            cx.num(code, &[text]);
            super::queries::tell_away(cx, away.as_deref());
            cx.s().away = away;
        }
        "MOTD" => {
            let me = cx.me();
            super::registration::put_motd(&mut cx.out.replies, &cx.irc.server, &me);
        }
        "LUSERS" => cx.out.requests.push(Request::UserList { after: String::new() }),
        "OPER" => {
            if cx.need_params(m, 2) {
                cx.out.requests.push(Request::Admin {
                    secret: m.params[1].to_owned(),
                });
            }
        }
        _ => cx.num("421", &[m.command, "Unknown command"]),
    }
}

/// Whether `nick` is an IRC nick Plaza can hold: RFC 2812's characters,
/// and a valid Plaza name.
fn valid_nick(nick: &str) -> bool {
    let special = |c: char| "[]\\`_^{|}".contains(c);
    let mut chars = nick.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || special(c))
        && chars.all(|c| c.is_ascii_alphanumeric() || special(c) || c == '-')
        && plaza_proto::valid_name(nick)
}

fn nick(cx: &mut Cx<'_>, m: &Message<'_>) {
    let Some(nick) = m.param(0).filter(|n| !n.is_empty()) else {
        return cx.num("431", &["No nickname given"]);
    };
    if !valid_nick(nick) {
        return cx.num("432", &[nick, "Erroneous nickname"]);
    }
    let taken = cx.state.sessions.iter().any(|(id, s)| {
        *id != cx.id && !s.quitting && s.nick.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(nick))
    });
    if taken {
        return cx.num("433", &[nick, "Nickname is already in use"]);
    }
    cx.s().nick = Some(Arc::from(nick));
    try_register(cx);
}

fn user(cx: &mut Cx<'_>, m: &Message<'_>) {
    if cx.need_params(m, 4) {
        let s = cx.s();
        s.username = m.params[0].chars().take(16).collect();
        let realname = line::pieces(m.params[3], queries::NAMELEN).next();
        s.realname = realname.unwrap_or_default().to_owned();
        try_register(cx);
    }
}

fn authenticate(cx: &mut Cx<'_>, m: &Message<'_>) {
    if !cx.need_params(m, 1) {
        return;
    }
    let arg = m.params[0];
    if matches!(cx.s().login, Login::Done | Login::Sasl(_)) {
        return cx.num("907", &["You have already authenticated"]);
    }
    if arg == "*" {
        cx.s().sasl_started = false;
        return cx.num("906", &["SASL authentication aborted"]);
    }
    if !cx.s().sasl_started {
        if arg.eq_ignore_ascii_case("PLAIN") {
            cx.s().sasl_started = true;
            cx.out.replies.extend_from_slice(b"AUTHENTICATE +\r\n");
        } else {
            cx.num("908", &["PLAIN", "are available SASL mechanisms"]);
            cx.num("904", &["SASL authentication failed"]);
        }
        return;
    }
    cx.s().sasl_started = false;
    let plain = base64::engine::general_purpose::STANDARD.decode(arg).ok();
    let fields = plain.as_deref().map(|p| p.split(|&b| b == 0).collect::<Vec<_>>());
    let Some([_authz, account, password]) = fields.as_deref() else {
        return cx.num("904", &["SASL authentication failed"]);
    };
    let (Ok(account), Ok(password)) = (std::str::from_utf8(account), std::str::from_utf8(password)) else {
        return cx.num("904", &["SASL authentication failed"]);
    };
    cx.s().login = Login::Sasl(account.to_owned());
    cx.out.requests.push(Request::Login {
        name: account.to_owned(),
        password: password.to_owned(),
    });
}

/// Ends registration once NICK and USER are in and CAP negotiation is
/// over: logs in with PASS, or as a guest, or (after SASL) welcomes.
pub(super) fn try_register(cx: &mut Cx<'_>) {
    let allow_guests = cx.irc.allow_guests;
    let s = cx.s();
    if s.registered || s.nick.is_none() || s.username.is_empty() || s.caps.negotiating {
        return;
    }
    match s.login {
        Login::Done => {
            let mut b = std::mem::take(&mut cx.out.replies);
            super::registration::welcome(&mut b, &cx.irc.server, cx.s());
            cx.out.replies = b;
            cx.out.requests.push(Request::UserList { after: String::new() });
        }
        Login::Sasl(_) | Login::Pass | Login::Guest => {}
        Login::None => {
            let nick = s.nick.as_deref().unwrap_or_default().to_owned();
            if let Some(password) = s.pass.take() {
                s.login = Login::Pass;
                cx.out.requests.push(Request::Login { name: nick, password });
            } else if allow_guests {
                s.login = Login::Guest;
                cx.out.guest = Some(nick);
            } else {
                let text = "This server needs an account: log in with SASL PLAIN or PASS";
                cx.num("464", &[text]);
                line::error(&mut cx.out.replies, "Closing link: no account");
                cx.out.close = Some("no credentials and guests are not allowed");
                return;
            }
            // LUSERS and the MOTD follow the welcome (`outbound.rs`).
            cx.out.requests.push(Request::UserList { after: String::new() });
        }
    }
}

fn join(cx: &mut Cx<'_>, m: &Message<'_>) {
    if !cx.need_params(m, 1) {
        return;
    }
    let mut channels = m.params[0].split(',');
    let first = channels.next().unwrap_or("");
    if first == "0" {
        if cx.s().room.is_some() && !cx.s().leaving {
            cx.s().leaving = true;
            cx.out.requests.push(Request::RoomLeave);
        }
        return;
    }
    for more in channels {
        cx.num("405", &[more, "You may be in one channel at a time"]);
    }
    let known = cx.state.channels.find(first);
    let s = cx.s();
    if known.is_some() && ((s.room == known && !s.leaving) || s.joining == known) {
        return;
    }
    if s.joining.is_some() {
        // The hub has not answered the JOIN before: one at a time.
        return cx.num(
            "405",
            &[first, "You may be in one channel at a time (a JOIN is under way)"],
        );
    }
    let Some(room) = cx.state.channels.claim(first) else {
        return cx.num("403", &[first, "No such channel (or no free room for it)"]);
    };
    if cx.s().room.is_some() && !cx.s().leaving {
        // One room at a time: the first is parted.
        cx.s().leaving = true;
        cx.out.requests.push(Request::RoomLeave);
    }
    cx.s().joining = Some(room);
    let room = room as i32;
    cx.out
        .requests
        .push(match m.param(1).and_then(|keys| keys.split(',').next()) {
            Some(key) => Request::RoomEnterKey {
                room,
                key: key.to_owned(),
            },
            None => Request::RoomEnter { room },
        });
}

fn part(cx: &mut Cx<'_>, m: &Message<'_>) {
    if !cx.need_params(m, 1) {
        return;
    }
    for name in m.params[0].split(',') {
        match cx.state.channels.find(name) {
            Some(room) if cx.s().room == Some(room) && !cx.s().leaving => {
                cx.s().leaving = true;
                if let (Some(reason), Some(nick)) = (m.param(1), cx.s().nick.clone()) {
                    cx.state
                        .channels
                        .depart(room, &nick, Departure::Part(reason.to_owned()));
                    cx.s().parting = Some(reason.to_owned());
                }
                cx.out.requests.push(Request::RoomLeave);
            }
            Some(_) => cx.num("442", &[name, "You're not on that channel"]),
            None => cx.num("403", &[name, "No such channel"]),
        }
    }
}

fn message(cx: &mut Cx<'_>, m: &Message<'_>, notice: bool) {
    let Some(target) = m.param(0).filter(|t| !t.is_empty()) else {
        if !notice {
            cx.num("411", &[&format!("No recipient given ({})", m.command)]);
        }
        return;
    };
    let Some(text) = m.param(1).filter(|t| !t.is_empty()) else {
        if !notice {
            cx.num("412", &["No text to send"]);
        }
        return;
    };
    if target.contains(',') {
        if !notice {
            cx.num("407", &[target, "Too many recipients (one at a time)"]);
        }
        return;
    }
    if target.starts_with('#') {
        match cx.state.channels.find(target) {
            Some(room) if cx.s().present(room) => {
                for piece in line::pieces(text, limits::ROOM_MESSAGE) {
                    let message = piece.to_owned();
                    cx.out.requests.push(match notice {
                        true => Request::RoomNotice { id: 0, message },
                        false => Request::RoomChat { message },
                    });
                }
            }
            Some(_) if !notice => cx.num("404", &[target, "Cannot send to channel (you are not in it)"]),
            None if !notice => cx.num("403", &[target, "No such channel"]),
            _ => {}
        }
        return;
    }
    if target.starts_with('$') {
        // Everyone on the server: Plaza's broadcast (admins only).
        for piece in line::pieces(text, limits::MESSAGE) {
            cx.out.requests.push(Request::Broadcast {
                message: piece.to_owned(),
            });
        }
        return;
    }
    if cx.s().caps.echo {
        let me = cx.me();
        line::put(&mut cx.out.replies, Prefix::User(&me), m.command, &[target, text]);
    }
    let away = queries::irc_session(cx.state, target).and_then(|s| s.away.clone());
    if let (Some(away), false) = (away, notice) {
        cx.num("301", &[target, &away]);
    }
    for piece in line::pieces(text, limits::MESSAGE) {
        cx.s().targets.push_back(Target::Whisper {
            nick: target.to_owned(),
            notice,
        });
        let (to, message) = (target.to_owned(), piece.to_owned());
        cx.out.requests.push(match notice {
            true => Request::WhisperNotice { to, message },
            false => Request::Whisper { to, message },
        });
    }
}

fn kick(cx: &mut Cx<'_>, m: &Message<'_>) {
    if !cx.need_params(m, 2) {
        return;
    }
    let (channel, target) = (m.params[0], m.params[1]);
    match cx.state.channels.find(channel) {
        None => cx.num("403", &[channel, "No such channel"]),
        Some(room) if !cx.s().present(room) => cx.num("442", &[channel, "You're not on that channel"]),
        Some(_) => {
            cx.s().targets.push_back(Target::Kick(target.to_owned()));
            cx.out.requests.push(Request::RoomKick {
                name: target.to_owned(),
                // KICKLEN: a longer reason is cut.
                reason: line::pieces(m.param(2).unwrap_or(""), limits::REASON)
                    .next()
                    .unwrap_or("")
                    .to_owned(),
            });
        }
    }
}
