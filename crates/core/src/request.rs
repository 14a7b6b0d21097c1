//! What each request does, once it is its turn (see `Hub::submit`).

use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

use plaza_proto::{Event, Replay, Request, ResultCode, USER_LIST_PAGE, features};

use crate::moderation::Target;
use crate::rooms::Said;
use crate::{BusMsg, Conn, Credential, Effect, Hub, Sink, Waiting, constant_time_eq};

impl Hub {
    pub(crate) fn request(&mut self, conn: Conn, request: Request, now: Instant, sink: &mut impl Sink) {
        // Requests that need no login.
        match request {
            Request::Login { name, password } => {
                return self.login(conn, name, Credential::Password(password), sink);
            }
            Request::Resume { name, token } => {
                self.set_features(conn, self.features(conn) | features::NOTIFICATIONS);
                return self.login(conn, name, Credential::Token(token), sink);
            }
            Request::Register { name, password } => {
                self.set_features(conn, self.features(conn) | features::NOTIFICATIONS);
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
                let features = features & features::ALL;
                self.set_features(conn, features);
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
            // Entering and leaving (and operators' changes) tell every
            // member: limited like chat.
            Request::RoomEnter { .. }
            | Request::RoomEnterKey { .. }
            | Request::RoomLeave
            | Request::RoomRole { .. }
            | Request::RoomKick { .. }
            | Request::RoomInvite { .. }
            | Request::RoomRejoin { .. }
            | Request::History { .. }
                if !self.may_chat(conn, None, now) =>
            {
                sink.send(conn, &Request::failure(request.id(), ResultCode::RATE_LIMITED));
            }
            Request::RoomEnter { room } => {
                self.give_up_seat(&name, sink);
                if let Some(code) = self.enter(conn, &name, room, "", None, sink) {
                    sink.send(conn, &Event::RoomEnterResult(code));
                }
            }
            Request::RoomEnterKey { room, key } => {
                self.give_up_seat(&name, sink);
                if let Some(code) = self.enter(conn, &name, room, &key, None, sink) {
                    sink.send(conn, &Event::RoomEnterResult(code));
                }
            }
            Request::RoomRejoin { room, epoch, after } => {
                self.set_features(conn, self.features(conn) | features::HISTORY);
                let in_lobby = self.sessions.get(&conn).is_some_and(|s| s.room.is_none());
                if in_lobby && u32::try_from(room).is_ok_and(|r| self.take_seat(conn, &name, r)) {
                    // Back in the seat it held: the members see nothing.
                    let r = room as u32;
                    self.tell_room_state(conn, r, sink);
                    sink.send_members(conn, self.rooms[r as usize].roster());
                    return self.replay(conn, r, epoch, after, now, sink);
                }
                self.give_up_seat(&name, sink);
                match self.enter(conn, &name, room, "", Some((epoch, after)), sink) {
                    Some(ResultCode::OK) => self.replay(conn, room as u32, epoch, after, now, sink),
                    Some(code) => sink.send(conn, &Event::Rejoin(Replay::failed(code))),
                    None => {}
                }
            }
            Request::History { page, limit } => {
                self.set_features(conn, self.features(conn) | features::HISTORY);
                self.history(conn, page, limit, now, sink);
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
                self.room_chat(conn, &name, Said::new(message, false), None, now, sink)
            }
            Request::RoomSend { id, message } => {
                self.room_chat(conn, &name, Said::new(message, false), Some(id), now, sink);
            }
            Request::RoomNotice { id, message } => {
                self.room_chat(conn, &name, Said::new(message, true), Some(id), now, sink);
            }
            Request::Whisper { to, message } => {
                self.whisper_to(conn, &name, to, Said::new(message, false), now, sink)
            }
            Request::RoomTopic { topic } => self.set_topic(conn, &name, topic, now, sink),
            Request::RoomRole {
                name: target,
                role,
                on,
            } => self.room_role(conn, &name, &target, role, on, sink),
            Request::RoomKick { name: target, reason } => self.room_kick(conn, &name, &target, reason, sink),
            Request::RoomMode { flags, limit, key } => {
                self.set_modes(conn, &name, flags, limit, key, now, sink)
            }
            Request::RoomInvite { name: target } => self.room_invite(conn, &name, &target, sink),
            Request::WhisperNotice { to, message } => {
                self.whisper_to(conn, &name, to, Said::new(message, true), now, sink)
            }
            Request::Broadcast { message } => {
                if self.is_muted(&name, now) {
                    return sink.send(conn, &Event::BroadcastResult(ResultCode::MUTED));
                }
                if !self.may_chat(conn, None, now) {
                    return sink.send(conn, &Event::BroadcastResult(ResultCode::RATE_LIMITED));
                }
                let bus = self.cluster().then(|| BusMsg::Broadcast {
                    from: name.to_string(),
                    message: message.clone(),
                });
                if bus.is_none() {
                    sink.send(conn, &Event::BroadcastResult(ResultCode::OK));
                }
                let broadcast = Event::Broadcast {
                    from: name.to_string(),
                    message,
                };
                self.send_broadcast(&broadcast, sink);
                if let Some(msg) = bus {
                    self.publish(conn, msg, Waiting::Ack(Event::BroadcastResult), sink);
                }
            }
            Request::UserList { after } if self.cluster() => {
                // Every node's users: the directory in the shared store.
                if let Some(s) = self.sessions.get_mut(&conn) {
                    s.waiting = Some(Waiting::Users);
                }
                sink.effect(Effect::ListUsers { conn, after });
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
                self.give_up_seat(&name, sink);
                self.sign_out(conn, false, sink);
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
                Ok(Target::Away) => {
                    self.end_away(&target, sink);
                    sink.send(conn, &Event::KickResult(ResultCode::OK));
                }
                Ok(Target::Remote) => {
                    let msg = BusMsg::Kick {
                        name: target,
                        by: name.to_string(),
                    };
                    self.publish(conn, msg, Waiting::Ack(Event::KickResult), sink);
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
                Ok(Target::Away) => {
                    let key = self.away_key(&target);
                    self.mute_name(key, seconds, now, sink);
                    sink.send(conn, &Event::MuteResult(ResultCode::OK));
                }
                Ok(Target::Remote) => {
                    let msg = BusMsg::Mute {
                        name: target,
                        seconds,
                    };
                    self.publish(conn, msg, Waiting::Ack(Event::MuteResult), sink);
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

    /// WHISPER or WHISPER_NOTICE (`said.notice`) from `conn`, logged in as
    /// `name`, to `to`: answered with 306.
    fn whisper_to(
        &mut self,
        conn: Conn,
        name: &Arc<str>,
        to: String,
        said: Said,
        now: Instant,
        sink: &mut impl Sink,
    ) {
        let Said {
            text: message,
            notice,
        } = said;
        let code = if self.is_muted(name, now) {
            ResultCode::MUTED
        } else if !self.may_chat(conn, None, now) {
            ResultCode::RATE_LIMITED
        } else if let Some(target) = self.conn_of(&to) {
            if !self.plaza(target) {
                return sink.send(conn, &Event::WhisperResult(ResultCode::UNREACHABLE));
            }
            sink.send(target, &self.whisper(target, name.to_string(), message, notice));
            ResultCode::OK
        } else if self.keep_whisper(&to, name, &message, notice) {
            // Away: delivered when it comes back.
            ResultCode::OK
        } else if self.cluster() {
            // Another node's, if any has it: the directory decides.
            let msg = BusMsg::Whisper {
                to,
                from: name.to_string(),
                message,
                notice,
            };
            return self.publish(conn, msg, Waiting::Ack(Event::WhisperResult), sink);
        } else {
            ResultCode::USER_NOT_FOUND
        };
        sink.send(conn, &Event::WhisperResult(code));
    }

    /// A whisper for `to` as it takes it: a notice as WHISPER_NOTICE (357)
    /// if it knows notices, else as WHISPER (307).
    pub(crate) fn whisper(&self, to: Conn, from: String, message: String, notice: bool) -> Event {
        if notice && self.sessions.get(&to).is_some_and(|s| s.notices) {
            Event::WhisperNotice { from, message }
        } else {
            Event::Whisper { from, message }
        }
    }
}
