//! The operators' API (the control link): no admin session needed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plaza_proto::Event;

use crate::{Conn, Hub, Recipient, Sink, UserInfo};

impl Hub {
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

    /// Kicks `name` on an operator's behalf. Returns whether it was online
    /// here (the server asks the node of a user on another).
    pub fn operator_kick(&mut self, name: &str, sink: &mut impl Sink) -> bool {
        match self.conn_of(name) {
            Some(t) => self.kick(t, "operator", sink),
            None => return false,
        }
        true
    }

    /// Mutes (0: unmutes) `name` on an operator's behalf. Returns whether it
    /// was online here (the server asks the node of a user on another).
    pub fn operator_mute(&mut self, name: &str, seconds: u32, now: Instant, sink: &mut impl Sink) -> bool {
        match self.conn_of(name) {
            Some(t) => self.mute(t, seconds, now, sink),
            None => return false,
        }
        true
    }

    /// Sends a SERVER_NOTICE to every session, or to the members of `room`.
    /// Returns how many got it, or `None` for a room number out of range.
    pub fn notice(&mut self, room: Option<u32>, message: &str, sink: &mut impl Sink) -> Option<usize> {
        let notice = Event::Notice {
            message: message.to_owned(),
        };
        let targets: Vec<Conn> = match room {
            Some(r) => {
                let room = self.rooms.get_mut(r as usize)?;
                room.flush(sink);
                room.members().to_vec()
            }
            None => self.sessions.keys().copied().collect(),
        };
        let to: Vec<Recipient> = targets
            .into_iter()
            .filter(|t| self.plaza(*t))
            .map(Recipient::all)
            .collect();
        sink.fanout(std::slice::from_ref(&notice), to.iter().copied());
        Some(to.len())
    }

    /// Refuses new logins (110) from now on, without closing anything:
    /// the first step of a drain.
    pub fn refuse_logins(&mut self) {
        self.draining = true;
    }
}
