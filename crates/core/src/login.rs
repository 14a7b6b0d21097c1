//! Logins and resumes, their results, logging out, the login timeout and
//! shutdown.

use std::sync::Arc;
use std::time::Instant;

use plaza_proto::{Event, ResultCode};

use crate::moderation::mute_seconds;
use crate::{AuthOutcome, BusMsg, Conn, Credential, Effect, Hub, Reach, Recipient, Sink, State, Waiting};

impl Hub {
    /// What ages: connections that have not logged in within the login
    /// timeout are closed, old message ids forgotten. Call it now and then
    /// (the server does every second).
    pub fn upkeep(&mut self, now: Instant, sink: &mut impl Sink) {
        self.sent_ids.expire(now);
        self.expire_away(now, sink);
        self.expire_guests(now, sink);
    }

    /// Closes connections that have not logged in within the login timeout.
    pub fn expire_guests(&mut self, now: Instant, sink: &mut impl Sink) {
        let Some(timeout) = self.config.login_timeout else {
            return;
        };
        while let Some(&(since, conn)) = self.guests.front() {
            if since + timeout > now {
                return;
            }
            self.guests.pop_front();
            let Some(s) = self.sessions.get_mut(&conn) else {
                continue;
            };
            // Still the guest it was then (not logged in since, not closing).
            // One with a login in flight is checked when the login fails.
            if matches!(s.state, State::Guest) && s.guest_since == since {
                self.time_out(conn, sink);
            }
        }
    }

    pub(crate) fn time_out(&mut self, conn: Conn, sink: &mut impl Sink) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.state = State::Closing;
            s.queued = None;
        }
        self.drops.login_timeouts += 1;
        tracing::info!(conn, "closing a connection that did not log in in time");
        if self.plaza(conn) {
            sink.send(
                conn,
                &Event::Notice {
                    message: "login timed out".into(),
                },
            );
        }
        sink.disconnect(conn);
    }

    pub(crate) fn shutdown(&mut self, sink: &mut impl Sink) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.draining = true;
        let notice = Event::Notice {
            message: "server is shutting down".into(),
        };
        let to = self
            .sessions
            .iter()
            .filter_map(|(conn, s)| s.plaza.then_some(Recipient::all(*conn)));
        sink.fanout(std::slice::from_ref(&notice), to);
        sink.effect(Effect::Shutdown);
    }

    pub(crate) fn release(&mut self, name: &Arc<str>, conn: Conn) {
        if self.claimed.get(name) == Some(&conn) {
            self.claimed.remove(name);
        }
    }

    /// Leaves the room (telling the others) and gives up the name: for
    /// good, or (`away`, cluster mode) to this node's [`AWAY`](crate::AWAY)
    /// while the user may come back (`away.rs`).
    pub(crate) fn sign_out(&mut self, conn: Conn, away: bool, sink: &mut impl Sink) {
        self.leave_room(conn, sink);
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        s.admin = false;
        s.admin_role = false;
        match std::mem::replace(&mut s.state, State::Guest) {
            State::User { name } => {
                if !self.remote.users.contains_key(&name) {
                    self.online.remove(&name);
                }
                self.release(&name, conn);
                if self.cluster() {
                    let msg = BusMsg::Offline {
                        name: name.to_string(),
                    };
                    sink.effect(Effect::Publish {
                        msg,
                        ack: None,
                        reach: Reach::Every,
                    });
                }
                let name = name.to_string();
                sink.effect(match away {
                    true => Effect::Away { conn, name },
                    false => Effect::Release { conn, name },
                });
            }
            // A pending login is cancelled: its result will find no ticket.
            State::Pending { name, .. } => self.release(&name, conn),
            State::Guest => {}
            State::Closing => s.state = State::Closing,
        }
    }

    pub(crate) fn auth_done(
        &mut self,
        conn: Conn,
        ticket: u64,
        outcome: AuthOutcome,
        now: Instant,
        sink: &mut impl Sink,
    ) {
        self.pending = self.pending.saturating_sub(1);
        // Re-validate: the session may have left, or been superseded.
        let current = self.sessions.get(&conn).and_then(|s| match &s.state {
            State::Pending { ticket: t, name } if *t == ticket => Some(name.clone()),
            _ => None,
        });
        let stale = self.stale_names.remove(&(conn, ticket));
        let Some(name) = current else {
            if let (AuthOutcome::Valid { .. }, Some(name)) = (outcome, stale) {
                // The store marked a login nobody will use: unmark it.
                sink.effect(Effect::Release { conn, name });
            }
            return;
        };
        let s = self.sessions.get_mut(&conn).expect("checked above");
        let code = match outcome {
            AuthOutcome::Valid { admin, mute, token } if !self.draining => {
                s.state = State::User { name: name.clone() };
                s.admin_role = admin;
                let plaza = s.plaza;
                match mute {
                    Some(m) => {
                        self.mutes.insert(name.clone(), m.map(|d| now + d));
                    }
                    None => {
                        self.mutes.remove(&name);
                    }
                }
                self.online.insert(name.clone());
                self.count_login(ResultCode::OK);
                sink.send(conn, &Event::LoginResult(ResultCode::OK));
                if plaza {
                    if let Some((token, ttl_secs)) = token {
                        sink.send(conn, &Event::ResumeToken { token, ttl_secs });
                    }
                    // A user who comes back muted learns it now, not at
                    // their first refused message.
                    if let Some(seconds) = mute.map(|m| m.map_or(u32::MAX, mute_seconds)) {
                        sink.send(conn, &Event::Muted { seconds });
                    }
                    self.deliver_inbox(conn, &name, sink);
                }
                if self.cluster() {
                    let msg = BusMsg::Online {
                        name: name.to_string(),
                        uid: self.uid(conn),
                    };
                    sink.effect(Effect::Publish {
                        msg,
                        ack: None,
                        reach: Reach::Every,
                    });
                }
                return self.finish(conn, now, sink);
            }
            AuthOutcome::Valid { .. } => {
                sink.effect(Effect::Release {
                    conn,
                    name: name.to_string(),
                });
                ResultCode::SHUTTING_DOWN
            }
            AuthOutcome::Invalid => ResultCode::INVALID_CREDENTIALS,
            AuthOutcome::AlreadyLoggedIn => ResultCode::LOGIN_ALREADY,
            AuthOutcome::Unavailable => ResultCode::SERVICE_UNAVAILABLE,
        };
        s.state = State::Guest;
        // A login that failed after the login timeout passed ends the
        // connection (the timeout skipped it while the check ran).
        let late = self
            .config
            .login_timeout
            .is_some_and(|t| now.saturating_duration_since(s.guest_since) >= t);
        self.release(&name, conn);
        self.count_login(code);
        sink.send(conn, &Event::LoginResult(code));
        if late {
            return self.time_out(conn, sink);
        }
        self.finish(conn, now, sink);
    }

    pub(crate) fn login(&mut self, conn: Conn, name: String, credential: Credential, sink: &mut impl Sink) {
        let s = self.sessions.get_mut(&conn).expect("checked by caller");
        let code = match s.state {
            State::User { .. } | State::Pending { .. } => ResultCode::SESSION_ALREADY_LOGGED_IN,
            State::Closing => ResultCode::NOT_LOGGED_IN,
            State::Guest if self.draining => ResultCode::SHUTTING_DOWN,
            State::Guest if self.claimed.len() >= self.config.max_users => ResultCode::SERVER_FULL,
            State::Guest if self.claimed.contains_key(name.as_str()) => ResultCode::LOGIN_ALREADY,
            State::Guest if self.pending >= self.config.max_pending => ResultCode::BUSY,
            State::Guest => {
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                let name: Arc<str> = name.into();
                s.state = State::Pending {
                    ticket,
                    name: name.clone(),
                };
                s.waiting = Some(Waiting::Login);
                self.claimed.insert(name.clone(), conn);
                self.pending += 1;
                self.stale_names.insert((conn, ticket), name.to_string());
                return sink.effect(Effect::Authenticate {
                    conn,
                    ticket,
                    name: name.to_string(),
                    credential,
                });
            }
        };
        self.count_login(code);
        sink.send(conn, &Event::LoginResult(code));
    }
}
