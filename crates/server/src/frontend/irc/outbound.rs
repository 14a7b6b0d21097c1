//! The hub's events as IRC lines: one session's answers (fan-outs are in
//! [`presence.rs`](super::presence) and [`history.rs`](super::history)).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use plaza_net::SessionId;
use plaza_proto::{Event, ResultCode, Roster};

use super::line::{self, Prefix};
use super::presence::Fanout;
use super::registration::{login, put_motd};
use super::{Irc, State, Target};

/// The longest list of nicks in one RPL_NAMREPLY.
const NAMES_PER_LINE: usize = 400;

pub(super) fn num(b: &mut BytesMut, server: &str, me: &str, code: &str, params: &[&str]) {
    let mut all = Vec::with_capacity(params.len() + 1);
    all.push(me);
    all.extend_from_slice(params);
    line::put(b, Prefix::Server(server), code, &all);
}
/// RPL_NAMREPLY lines (of channel type `kind`: `=`, or `@` for a secret
/// channel) and RPL_ENDOFNAMES.
pub(super) fn put_names<'n>(
    b: &mut BytesMut,
    server: &str,
    me: &str,
    (channel, kind): (&str, &str),
    names: impl Iterator<Item = &'n str>,
) {
    let mut list = String::new();
    for n in names {
        if list.len() + n.len() > NAMES_PER_LINE {
            num(b, server, me, "353", &[kind, channel, &list]);
            list.clear();
        }
        if !list.is_empty() {
            list.push(' ');
        }
        list.push_str(n);
    }
    if !list.is_empty() {
        num(b, server, me, "353", &[kind, channel, &list]);
    }
    num(b, server, me, "366", &[channel, "End of /NAMES list"]);
}

/// `text` in as many lines as it takes: as one line when an IRC client
/// could have sent it (`command target text\r\n` in 512 bytes: text
/// without a space needs no colon), so a
/// message passes from IRC client to IRC client unchanged even though the
/// source prefix takes the server's line past 512 bytes (as Ergo does);
/// longer text (a binary or browser client may send 1,024 bytes) in
/// pieces that each fit such a line.
pub(super) fn put_text(b: &mut BytesMut, from: Prefix<'_>, command: &str, target: &str, text: &str) {
    let room = line::MAX_LINE.saturating_sub(command.len() + target.len() + 4);
    for piece in line::pieces(text, room.max(64)) {
        line::put(b, from, command, &[target, piece]);
    }
}

impl Irc {
    /// One event for one session.
    pub(crate) fn event(&self, id: SessionId, event: &Event) {
        if let Event::RoomTopic { room, at, by, topic } = event {
            // Entering: kept for the JOIN's answer (332, 333), which the
            // member list that follows completes.
            let mut state = self.lock();
            if state.sessions.get(&id).is_some_and(|s| s.joining == Some(*room)) {
                return state.channels.keep_topic(*room, by, *at, topic);
            }
        }
        // Fan-out events, written as the fan-out writes them (a room's
        // modes and roles told to an entrant, `by` empty, only update its
        // channel: no line).
        if matches!(
            event,
            Event::RoomNewUser { .. }
                | Event::RoomLeaveUser { .. }
                | Event::Broadcast { .. }
                | Event::RoomTopic { .. }
                | Event::RoomRole { .. }
                | Event::RoomKicked { .. }
                | Event::RoomMode { .. }
        ) {
            return Fanout::new(std::slice::from_ref(event)).send(self, id, 0, false);
        }
        let mut b = BytesMut::new();
        let close = {
            let mut state = self.lock();
            if !state.sessions.contains_key(&id) {
                return;
            }
            // The common answers say nothing in IRC (a room message taken).
            let silent = match event {
                Event::RoomChatResult(c)
                | Event::BroadcastResult(c)
                | Event::RoomEnterResult(c)
                | Event::RoomTopicResult(c) => c.is_ok(),
                // A NOTICE's (ROOM_NOTICE's) errors are never told.
                Event::Hello { .. } | Event::ResumeToken { .. } | Event::RoomSendResult { .. } => true,
                _ => false,
            };
            let close = !silent && answer(&mut state, self, id, event, &mut b);
            if let Some(s) = state.sessions.get_mut(&id) {
                b = s.caps.stamp(b);
                if event.is_response() {
                    // A room message taken: the sender hears it back.
                    let taken = match event {
                        Event::RoomChatResult(c) | Event::RoomSendResult { result: c, .. } => c.is_ok(),
                        _ => false,
                    } && s.caps.echo;
                    b = s.order.answered(&s.caps, &self.server, b, taken);
                }
                if close {
                    b.extend_from_slice(&s.order.all(BytesMut::new()));
                }
            }
            if close {
                state.remember(id);
            }
            close
        };
        self.send(id, b);
        if close {
            let _ = self.net.disconnect(id);
        }
    }

    /// `id` entered a room: its channel's members (the JOIN succeeded).
    pub(crate) fn members(&self, id: SessionId, roster: &Roster) {
        let mut b = BytesMut::new();
        {
            let mut state = self.lock();
            let State {
                sessions, channels, ..
            } = &mut *state;
            let Some(s) = sessions.get_mut(&id) else {
                return;
            };
            let Some(room) = s.joining.take() else {
                tracing::warn!(session = %id, "an IRC session got a member list it did not ask for");
                return;
            };
            s.room = Some(room);
            let channel = channels.name(room);
            let Some(c) = channels.get_mut(room) else {
                tracing::warn!(session = %id, room, "an IRC session entered a channel it had not claimed");
                return;
            };
            // The hub's list is the truth now.
            c.names = roster.iter().map(|(uid, n)| (uid, Arc::from(n))).collect();
            let me = s.me().to_owned();
            let caps = s.caps;
            line::put(&mut b, Prefix::User(&me), "JOIN", &[&channel]);
            if let Some(t) = c.topic.as_ref().filter(|t| !t.text.is_empty()) {
                num(&mut b, &self.server, &me, "332", &[&channel, &t.text]);
                num(
                    &mut b,
                    &self.server,
                    &me,
                    "333",
                    &[&channel, &t.by, &t.at.to_string()],
                );
            }
            let names = super::queries::name_list(&state, room, caps);
            let kind = state.channels.get(room).map_or("=", |c| c.modes.names_type());
            put_names(
                &mut b,
                &self.server,
                &me,
                (&channel, kind),
                names.iter().map(String::as_str),
            );
            b = caps.stamp(b);
            if let Some(s) = state.sessions.get_mut(&id) {
                b = s.order.with_answer(b);
            }
        }
        self.send(id, b);
    }

    /// The hub closes `id`: IRC says so first.
    pub(crate) fn disconnect(&self, id: SessionId) {
        let _ = self.net.send(
            id,
            Bytes::from_static(b"ERROR :Closing link: closed by the server\r\n"),
        );
        let _ = self.net.disconnect(id);
    }
}

/// Writes `id`'s answer to `event`; returns whether to close it.
fn answer(state: &mut State, irc: &Irc, id: SessionId, event: &Event, b: &mut BytesMut) -> bool {
    let server = &*irc.server;
    let State {
        sessions, channels, ..
    } = state;
    let s = sessions.get_mut(&id).expect("checked by the caller");
    let me = s.me().to_owned();
    let channel = s.room.map(|r| channels.name(r));
    let chan = channel.as_deref().unwrap_or("*");
    match event {
        Event::LoginResult(code) => return login(s, server, *code, b),
        Event::LogoutResult(_) if s.quitting => return true,
        Event::UserList { result, total, .. } if result.is_ok() && s.registered => {
            // The most users seen logged in at once, as far as IRC users
            // have asked since the server started.
            let most = irc.most_users.fetch_max(*total, Ordering::Relaxed).max(*total);
            let (total, most) = (total.to_string(), most.to_string());
            num(
                b,
                server,
                &me,
                "251",
                &[&format!("There are {total} users and 0 invisible on 1 servers")],
            );
            num(
                b,
                server,
                &me,
                "255",
                &[&format!("I have {total} clients and 0 servers")],
            );
            num(
                b,
                server,
                &me,
                "265",
                &[&total, &most, &format!("Current local users {total}, max {most}")],
            );
            num(
                b,
                server,
                &me,
                "266",
                &[
                    &total,
                    &most,
                    &format!("Current global users {total}, max {most}"),
                ],
            );
            if std::mem::take(&mut s.motd_due) {
                put_motd(b, server, &me);
            }
        }
        Event::RoomEnterResult(code) if !code.is_ok() => {
            // Not joined: the channel's name as the JOIN gave it, and the
            // claim on it given back.
            let joining = s.joining.take();
            let room = joining.map_or_else(|| "*".to_owned(), |r| channels.name(r));
            if let Some(r) = joining {
                channels.release(r);
            }
            let (n, text) = match *code {
                ResultCode::ROOM_FULL => ("471", "Cannot join channel (+l): the room is full"),
                ResultCode::BAD_ROOM_KEY => ("475", "Cannot join channel (+k): wrong key"),
                ResultCode::INVITE_ONLY_ROOM => ("473", "Cannot join channel (+i): you were not invited"),
                ResultCode::RATE_LIMITED => ("263", "Too many joins: wait a moment"),
                c => ("403", c.describe()),
            };
            num(b, server, &me, n, &[&room, text]);
        }
        Event::RoomLeaveResult(code) if code.is_ok() => {
            s.leaving = false;
            if let Some(room) = s.room.take() {
                match s.parting.take() {
                    Some(why) => line::put(b, Prefix::User(&me), "PART", &[chan, &why]),
                    None => line::put(b, Prefix::User(&me), "PART", &[chan]),
                }
                channels.release(room);
            }
        }
        Event::RoomLeaveResult(_) => s.leaving = false,
        Event::RoomTopicResult(code) if !code.is_ok() => {
            let (n, text) = match *code {
                ResultCode::USER_IN_LOBBY => ("442", "You're not on that channel"),
                ResultCode::MUTED => ("482", "You cannot set the topic: you are muted"),
                ResultCode::NOT_ROOM_OPERATOR => ("482", "You're not channel operator (+t)"),
                c => ("482", c.describe()),
            };
            num(b, server, &me, n, &[chan, text]);
        }
        Event::RoomChatResult(code) if !code.is_ok() => {
            let (n, text) = match *code {
                ResultCode::USER_IN_LOBBY => ("442", "You're not on that channel"),
                ResultCode::MUTED => ("404", "Cannot send to channel: you are muted"),
                ResultCode::MODERATED => ("404", "Cannot send to channel (+m): only its operators speak"),
                c => ("404", c.describe()),
            };
            num(b, server, &me, n, &[chan, text]);
        }
        Event::WhisperResult(code) => {
            if let Some(Target::Whisper { nick, notice: false }) = s.targets.pop_front() {
                match *code {
                    ResultCode::OK => {}
                    ResultCode::USER_NOT_FOUND => num(b, server, &me, "401", &[&nick, "No such nick"]),
                    c => num(b, server, &me, "404", &[&nick, c.describe()]),
                }
            }
        }
        Event::Whisper { from, message } => put_text(b, Prefix::User(from), "PRIVMSG", &me, message),
        Event::WhisperNotice { from, message } => put_text(b, Prefix::User(from), "NOTICE", &me, message),
        Event::BroadcastResult(code) if !code.is_ok() => match *code {
            ResultCode::NOT_ADMIN => num(
                b,
                server,
                &me,
                "481",
                &["Permission Denied: only admins may message everyone"],
            ),
            c => num(b, server, &me, "404", &["$*", c.describe()]),
        },
        Event::KickResult(code) => {
            if let Some(Target::Kill(nick)) = s.targets.pop_front() {
                match *code {
                    ResultCode::OK => {}
                    ResultCode::USER_NOT_FOUND => num(b, server, &me, "401", &[&nick, "No such nick"]),
                    ResultCode::NOT_ADMIN => num(
                        b,
                        server,
                        &me,
                        "481",
                        &["Permission Denied: you are not an admin"],
                    ),
                    c => num(b, server, &me, "481", &[c.describe()]),
                }
            }
        }
        Event::RoomInviteResult(code) => {
            if let Some(Target::Invite { nick, channel }) = s.targets.pop_front() {
                match *code {
                    ResultCode::OK => num(b, server, &me, "341", &[&nick, &channel]),
                    ResultCode::ALREADY_IN_ROOM => {
                        num(b, server, &me, "443", &[&nick, &channel, "is already on channel"])
                    }
                    c => refused(b, server, &me, &channel, &nick, c),
                }
            }
        }
        Event::RoomInvite { room, by } => {
            let channel = channels.name(*room);
            line::put(b, Prefix::User(by), "INVITE", &[&me, &channel]);
        }
        // Taken: the room's notification (MODE, KICK) says so.
        Event::RoomRoleResult(code) | Event::RoomKickResult(code) | Event::RoomModeResult(code) => {
            match s.targets.pop_front() {
                _ if code.is_ok() => {}
                Some(Target::Op(nick) | Target::Kick(nick)) => refused(b, server, &me, chan, &nick, *code),
                Some(Target::Mode) => refused(b, server, &me, chan, "*", *code),
                _ => {}
            }
        }
        Event::MuteResult(code) => {
            if let Some(Target::Mute { nick, on }) = s.targets.pop_front() {
                match *code {
                    ResultCode::OK => {
                        let mode = if on { "+q" } else { "-q" };
                        line::put(b, Prefix::User(&me), "MODE", &[chan, mode, &nick]);
                    }
                    c => refused(b, server, &me, chan, &nick, c),
                }
            }
        }
        Event::Kicked { by } => {
            if s.room.is_some() {
                line::put(
                    b,
                    Prefix::User(by),
                    "KICK",
                    &[chan, &me, &format!("Kicked by {by}")],
                );
            }
            line::error(b, &format!("Closing link: kicked by {by}"));
        }
        Event::Muted { seconds } => {
            let text = match *seconds {
                0 => "You are no longer muted".to_owned(),
                u32::MAX => "You are muted".to_owned(),
                s => format!("You are muted for {s} seconds"),
            };
            line::put(b, Prefix::Server(server), "NOTICE", &[&me, &text]);
        }
        Event::Notice { message } => put_text(b, Prefix::Server(server), "NOTICE", &me, message),
        Event::Missed { count, .. } => {
            let text = format!("{count} messages were dropped: you read too slowly");
            line::put(b, Prefix::Server(server), "NOTICE", &[&me, &text]);
        }
        Event::AdminResult(code) => match *code {
            ResultCode::OK => {
                s.oper = true;
                num(
                    b,
                    server,
                    &me,
                    "381",
                    &["You are now an IRC operator (a Plaza admin)"],
                );
                line::put(b, Prefix::User(&me), "MODE", &[&me, "+o"]);
            }
            _ => num(
                b,
                server,
                &me,
                "491",
                &["No O-lines for your host (wrong secret)"],
            ),
        },
        Event::History(replay) => super::history::answered(s, server, replay, b),
        Event::RequestError { result, .. } => {
            let text = format!("Request failed: {}", result.describe());
            line::put(b, Prefix::Server(server), "NOTICE", &[&me, &text]);
        }
        _ => {}
    }
    false
}

/// Why a KICK or a MODE +o/-o/+q/-q on `nick` was refused.
fn refused(b: &mut BytesMut, server: &str, me: &str, chan: &str, nick: &str, code: ResultCode) {
    match code {
        ResultCode::USER_NOT_FOUND => num(b, server, me, "401", &[nick, "No such nick"]),
        ResultCode::NOT_ROOM_OPERATOR => num(b, server, me, "482", &[chan, "You're not channel operator"]),
        ResultCode::NOT_IN_YOUR_ROOM => {
            num(b, server, me, "441", &[nick, chan, "They aren't on that channel"])
        }
        ResultCode::USER_IN_LOBBY => num(b, server, me, "442", &[chan, "You're not on that channel"]),
        ResultCode::NOT_ADMIN => num(
            b,
            server,
            me,
            "482",
            &[chan, "You're not a channel operator (an admin)"],
        ),
        c => num(b, server, me, "482", &[chan, c.describe()]),
    }
}
