//! What each request does, once it is its turn (see `Hub::submit`).

use std::ops::Bound;
use std::time::Instant;

use plaza_proto::{Event, Request, ResultCode, USER_LIST_PAGE};

use crate::moderation::Target;
use crate::{BusMsg, Conn, Credential, Effect, Hub, Sink, Waiting, constant_time_eq};

impl Hub {
    pub(crate) fn request(&mut self, conn: Conn, request: Request, now: Instant, sink: &mut impl Sink) {
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
                // Members on other nodes hear it through the bus.
                let bus = self.remote.has_members(room).then(|| BusMsg::RoomChat {
                    room,
                    from: name.to_string(),
                    message: message.clone(),
                });
                let chat = Event::RoomChat {
                    name: name.to_string(),
                    message,
                };
                // Whoever hears this has heard the sender come in.
                let members = &mut self.rooms[room as usize];
                members.flush(sink);
                if let Some(msg) = bus {
                    // Answered once the bus has it.
                    self.send_room_message(room, &chat, sink);
                    return self.publish(conn, msg, Event::RoomChatResult, sink);
                }
                sink.send(conn, &Event::RoomChatResult(ResultCode::OK));
                self.send_room_message(room, &chat, sink);
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
                    let msg = BusMsg::Whisper {
                        to,
                        from: name.to_string(),
                        message,
                    };
                    return self.publish(conn, msg, Event::WhisperResult, sink);
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
                let bus = (!self.remote.users.is_empty()).then(|| BusMsg::Broadcast {
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
                    self.publish(conn, msg, Event::BroadcastResult, sink);
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
}
