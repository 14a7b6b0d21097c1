//! Presence news (joins, departures, topics, operators, kicks) and
//! broadcasts as IRC lines, written
//! once per fan-out and shared by every IRC recipient; with away-notify,
//! the AWAY of newcomers who are away.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use plaza_net::SessionId;
use plaza_proto::Event;

use super::channels::{ChannelModes, Channels, Departure};
use super::line::{self, Prefix};
use super::outbound::put_text;
use super::{Irc, State};

/// A fan-out's events (presence news, broadcasts) as IRC lines, written
/// once on first use and shared by every IRC recipient. Room messages come
/// as packets: [`super::Chat`].
pub(crate) struct Fanout<'e> {
    events: &'e [Event],
    bytes: Option<Bytes>,
    /// Where each event ends in `bytes`.
    ends: Vec<usize>,
    /// The same with IRCv3 server-time's tag on every line, for the
    /// recipients that asked for it, and its ends.
    tagged: Option<(Bytes, Vec<usize>)>,
    /// away-notify's AWAY lines: each newcomer who is away, by its event.
    away: Option<Vec<(usize, String, BytesMut)>>,
    /// The room kicks among the events, as (event, room, name): found once
    /// for the fan-out, not per recipient (a presence flush has none).
    kicks: Vec<(usize, u32, &'e str)>,
}

impl<'e> Fanout<'e> {
    pub(crate) fn new(events: &'e [Event]) -> Self {
        Self {
            events,
            bytes: None,
            ends: Vec::new(),
            tagged: None,
            away: None,
            kicks: (events.iter().enumerate())
                .filter_map(|(i, e)| match e {
                    Event::RoomKicked { room, name, .. } => Some((i, *room, name.as_str())),
                    _ => None,
                })
                .collect(),
        }
    }

    /// Sends `events[from..]` to `id`. A room's fan-out goes to the
    /// room's members, so the first recipient's channel is every one's.
    pub(crate) fn send(&mut self, irc: &Irc, id: SessionId, from: usize, droppable: bool) {
        let frame = {
            let mut state = irc.lock();
            let State {
                sessions, channels, ..
            } = &mut *state;
            let Some(s) = sessions.get(&id) else {
                return;
            };
            let (events, ends) = (self.events, &mut self.ends);
            let bytes = self.bytes.get_or_insert_with(|| {
                let mut b = BytesMut::with_capacity(256);
                for event in events {
                    put_event(&mut b, event, s.room, channels, &irc.server);
                    ends.push(b.len());
                }
                b.freeze()
            });
            let (bytes, ends) = if s.caps.time {
                let (plain, ends) = (&*bytes, &self.ends);
                let (tagged, ends) = self.tagged.get_or_insert_with(|| {
                    let (b, ends) = line::tag_lines(plain, &line::time_tag(), ends);
                    (b.freeze(), ends)
                });
                (&*tagged, ends.as_slice())
            } else {
                (&*bytes, self.ends.as_slice())
            };
            let frame = match from {
                0 => bytes.clone(),
                n => bytes.slice(ends[n - 1]..),
            };
            let (caps, me) = (s.caps, s.nick.clone());
            // Kicked out of its channel: in none now.
            let kicked = (self.kicks.iter())
                .find(|(i, room, name)| *i >= from && s.room == Some(*room) && me.as_deref() == Some(*name))
                .map(|(_, room, _)| *room);
            if let Some(room) = kicked {
                if let Some(s) = sessions.get_mut(&id) {
                    s.room = None;
                }
                channels.release(room);
            }
            let away = caps.away_notify.then(|| self.away(&state, from, me.as_deref()));
            (frame, away.flatten().map(|a| caps.stamp(a)))
        };
        let (frame, away) = frame;
        if !frame.is_empty() {
            let _ = if droppable {
                irc.net.send_droppable(id, frame)
            } else {
                irc.net.send(id, frame)
            };
        }
        if let Some(away) = away {
            irc.send(id, away);
        }
    }

    /// away-notify: AWAY for each of `events[from..]`'s newcomers who is
    /// an IRC user marked away, but `me` (looked up once per fan-out).
    fn away(&mut self, state: &State, from: usize, me: Option<&str>) -> Option<BytesMut> {
        let events = self.events;
        let away = self.away.get_or_insert_with(|| {
            let mut away = Vec::new();
            for (i, event) in events.iter().enumerate() {
                if let Event::RoomNewUser { name, .. } = event
                    && let Some(text) =
                        super::queries::irc_session(state, name).and_then(|s| s.away.as_deref())
                {
                    let mut b = BytesMut::new();
                    line::put(&mut b, Prefix::User(name), "AWAY", &[text]);
                    away.push((i, name.clone(), b));
                }
            }
            away
        });
        let mut b = BytesMut::new();
        for (_, _, line) in away
            .iter()
            .filter(|(i, name, _)| *i >= from && Some(name.as_str()) != me)
        {
            b.extend_from_slice(line);
        }
        (!b.is_empty()).then_some(b)
    }
}

/// One fanned-out event, and the channel's nicks kept up to date.
fn put_event(b: &mut BytesMut, event: &Event, room: Option<u32>, channels: &mut Channels, server: &str) {
    let channel = room.map(|r| channels.name(r));
    match (event, room, channel.as_deref()) {
        (Event::RoomNewUser { uid, name }, Some(r), Some(chan)) => {
            if let Some(c) = channels.get_mut(r) {
                c.names.insert(*uid, Arc::from(name.as_str()));
            }
            line::put(b, Prefix::User(name), "JOIN", &[chan]);
        }
        (Event::RoomLeaveUser { uid }, Some(r), Some(chan)) => {
            let Some(c) = channels.get_mut(r) else {
                return;
            };
            if let Some(nick) = c.names.remove(uid) {
                match c.departures.remove(uid) {
                    Some(Departure::Quit(why)) => line::put(b, Prefix::User(&nick), "QUIT", &[&why]),
                    Some(Departure::Part(why)) => line::put(b, Prefix::User(&nick), "PART", &[chan, &why]),
                    None => line::put(b, Prefix::User(&nick), "PART", &[chan]),
                }
            }
        }
        (Event::RoomRole { room, uid, roles, by }, _, _) => {
            let Some(c) = channels.get_mut(*room) else {
                return;
            };
            let old = c.roles.get(uid).copied().unwrap_or(0);
            c.set_roles(*uid, *roles);
            let Some(nick) = c.names.get(uid).cloned().filter(|_| !by.is_empty()) else {
                return;
            };
            // `+o`, `-v`, `+ov`...: one MODE line for what changed.
            let (mut on, mut off) = (String::new(), String::new());
            for (role, letter) in [
                (plaza_proto::roles::OPERATOR, 'o'),
                (plaza_proto::roles::VOICE, 'v'),
            ] {
                match (roles & role != 0, old & role != 0) {
                    (true, false) => on.push(letter),
                    (false, true) => off.push(letter),
                    _ => {}
                }
            }
            let modes = super::channels::mode_string(&on, &off);
            let chan = channels.name(*room);
            let mut params = vec![chan.as_str(), modes.as_str()];
            params.extend(std::iter::repeat_n(&*nick, on.len() + off.len()));
            if !modes.is_empty() {
                line::put(b, Prefix::User(by), "MODE", &params);
            }
        }
        (
            Event::RoomKicked {
                room,
                uid,
                name,
                by,
                reason,
            },
            _,
            _,
        ) => {
            // Its departure that follows is told by this KICK.
            if let Some(c) = channels.get_mut(*room) {
                c.names.remove(uid);
                c.roles.remove(uid);
            }
            let reason = if reason.is_empty() { by } else { reason };
            line::put(
                b,
                Prefix::User(by),
                "KICK",
                &[&channels.name(*room), name, reason],
            );
        }
        (
            Event::RoomMode {
                room,
                flags,
                limit,
                key,
                by,
            },
            _,
            _,
        ) => {
            let Some(c) = channels.get_mut(*room) else {
                return;
            };
            let new = ChannelModes {
                flags: *flags,
                limit: *limit,
                key: key.clone(),
            };
            let changes = new.changes_from(&c.modes);
            c.modes = new;
            if !changes.is_empty() && !by.is_empty() {
                let chan = channels.name(*room);
                let params: Vec<&str> = std::iter::once(chan.as_str())
                    .chain(changes.iter().map(String::as_str))
                    .collect();
                line::put(b, Prefix::User(by), "MODE", &params);
            }
        }
        (Event::RoomTopic { room, at, by, topic }, _, _) => {
            channels.keep_topic(*room, by, *at, topic);
            line::put(b, Prefix::User(by), "TOPIC", &[&channels.name(*room), topic]);
        }
        (Event::Broadcast { from, message }, _, _) => {
            put_text(b, Prefix::User(from), "NOTICE", "$*", message)
        }
        (Event::Notice { message }, _, _) => put_text(b, Prefix::Server(server), "NOTICE", "$*", message),
        _ => {}
    }
}
