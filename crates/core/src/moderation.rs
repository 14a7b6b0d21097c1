//! Admin targets, kicks and mutes, and the requests that wait for the
//! cluster bus to take their message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plaza_proto::bus::Place;
use plaza_proto::{Event, ResultCode};

use crate::{BusMsg, Conn, Effect, Hub, Sink, State, Waiting};

impl Hub {
    /// The logged-in target of an admin command, after the checks.
    pub(crate) fn admin_target(&self, conn: Conn, target: &str) -> Result<Target, ResultCode> {
        if !self.sessions.get(&conn).is_some_and(|s| s.admin) {
            return Err(ResultCode::NOT_ADMIN);
        }
        match self.conn_of(target) {
            Some(t) => Ok(Target::Local(t)),
            None if self.is_away(target) => Ok(Target::Away),
            // Another node's, if any has it: the directory decides.
            None if self.cluster() => Ok(Target::Remote),
            None => Err(ResultCode::USER_NOT_FOUND),
        }
    }

    /// Publishes `msg` for `conn`, which waits for the outcome (`waiting`:
    /// [`Waiting::Ack`] or [`Waiting::Chat`]) and is then answered with its
    /// code (OK; SERVICE_UNAVAILABLE if the bus failed; USER_NOT_FOUND for
    /// a user no node has).
    pub(crate) fn publish(&mut self, conn: Conn, msg: BusMsg, waiting: Waiting, sink: &mut impl Sink) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.waiting = Some(waiting);
        }
        let reach = self.reach(&msg);
        sink.effect(Effect::Publish {
            msg,
            ack: Some(conn),
            reach,
        });
    }

    pub(crate) fn published(
        &mut self,
        conn: Conn,
        result: ResultCode,
        place: Option<Place>,
        now: Instant,
        sink: &mut impl Sink,
    ) {
        let answer = match self.sessions.get_mut(&conn).and_then(|s| s.waiting.take()) {
            Some(Waiting::Ack(reply)) => reply(result),
            Some(Waiting::Chat(chat)) => return self.chat_published(conn, chat, result, place, now, sink),
            _ => return,
        };
        sink.send(conn, &answer);
        self.finish(conn, now, sink);
    }

    /// Tells `target` it was kicked, takes it out of its room (the others
    /// are told) and disconnects it after what was queued for it.
    pub(crate) fn kick(&mut self, target: Conn, by: &str, sink: &mut impl Sink) {
        if self.plaza(target) {
            sink.send(target, &Event::Kicked { by: by.to_owned() });
        }
        self.sign_out(target, false, sink);
        if let Some(s) = self.sessions.get_mut(&target) {
            s.state = State::Closing;
            s.queued = None;
        }
        sink.disconnect(target);
    }

    /// Mutes (or with 0 unmutes) `target`'s account and tells it.
    pub(crate) fn mute(&mut self, target: Conn, seconds: u32, now: Instant, sink: &mut impl Sink) {
        let Some(key) = self.name_of(target).cloned() else {
            return;
        };
        self.mute_name(key, seconds, now, sink);
        if self.plaza(target) {
            sink.send(target, &Event::Muted { seconds });
        }
    }

    /// Records and persists `key`'s mute (a user away learns it at its
    /// next login, from the store).
    pub(crate) fn mute_name(&mut self, key: Arc<str>, seconds: u32, now: Instant, sink: &mut impl Sink) {
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
        sink.effect(Effect::Mute {
            name: key.to_string(),
            seconds,
        });
    }
}

/// Whom an admin command is aimed at.
pub(crate) enum Target {
    Local(Conn),
    /// Away from this node (`away.rs`): its seat and whispers are kept here.
    Away,
    /// Logged in on another node.
    Remote,
}

/// MUTED_NOTIFY's seconds for a mute that ends in `left`: rounded up, so
/// a mute with under a second left is not told as lifted (0).
pub(crate) fn mute_seconds(left: Duration) -> u32 {
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    u32::try_from(secs).unwrap_or(u32::MAX - 1).clamp(1, u32::MAX - 1)
}
