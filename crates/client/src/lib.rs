//! plaza-client: an async client for Plaza's chat protocol.
//!
//! Every request gets exactly one response, in order (docs/PROTOCOL.md §4),
//! so [`PlazaClient::request`] matches responses to requests first-in,
//! first-out; everything else the server sends (room notifications,
//! whispers, broadcasts, notices, kicks, mutes, resume tokens) arrives on the
//! [`Notifications`] stream. The member list of a room being entered (209)
//! is gathered into the enter call's result.
//!
//! The client asks for room history (HELLO's feature bit 1), so room
//! messages arrive as [`Event::RoomMessage`] with their sequence numbers,
//! and it keeps its [`Position`]: the room it is in and the last message it
//! saw. After a drop, [`PlazaClient::rejoin`] on a new connection puts the
//! user back in that room and replays what it missed, in order, onto the
//! notification stream (docs/PROTOCOL.md, "Rejoin").
#![warn(missing_docs)]

use std::collections::VecDeque;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use plaza_net::{Client, ClientConfig, ClientHandler};
use plaza_proto::{Event, Request, ResultCode};
use tokio::sync::{mpsc, oneshot};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Could not connect.
    #[error("connect: {0}")]
    Connect(#[from] plaza_net::NetError),
    /// The connection is closed.
    #[error("disconnected")]
    Disconnected,
    /// No response in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

pub use plaza_net::Target;
/// The raw protocol connection (no HELLO, no reconnect), shared with the
/// tests and the load tools.
pub use plaza_proto::{Conn, ConnError};

/// Events that are not responses.
pub type Notifications = mpsc::UnboundedReceiver<Event>;

#[derive(Default)]
struct State {
    waiting: VecDeque<oneshot::Sender<Event>>,
    /// Members gathered for a room enter in progress.
    members: Vec<(u64, String)>,
    token: Option<String>,
    position: Option<Position>,
}

/// Where a client is in its room's history: what a rejoin needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The room.
    pub room: u32,
    /// The room history's epoch (see [`plaza_proto::Replay::epoch`]).
    pub epoch: u64,
    /// The last message seen (0: none).
    pub seq: u64,
}

/// What a rejoin gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejoined {
    /// OK, or why the room was not entered (ROOM_FULL...).
    pub result: ResultCode,
    /// The room's members, you included.
    pub members: Vec<(u64, String)>,
    /// Messages replayed onto the notification stream (before this answer).
    pub replayed: u16,
    /// Some missed messages were no longer held: there is a gap before the
    /// first replayed one.
    pub gap: bool,
}

struct Handler {
    state: Arc<Mutex<State>>,
    notify: mpsc::UnboundedSender<Event>,
}

impl Handler {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientHandler for Handler {
    async fn on_recv(&self, frame: &[u8]) {
        let Ok(event) = Event::decode(frame) else { return };
        if let Event::ResumeToken { token, .. } = &event {
            self.state().token = Some(token.clone());
        }
        match &event {
            Event::RoomMessage { room, seq, .. } | Event::RoomNotice { room, seq, .. } => {
                if let Some(p) = self.state().position.as_mut().filter(|p| p.room == *room) {
                    p.seq = p.seq.max(*seq);
                }
            }
            Event::Rejoin(r) | Event::History(r) if r.result.is_ok() => {
                // Every message before `next` was replayed or seen.
                if let Some(p) = self.state().position.as_mut() {
                    if p.epoch != r.epoch {
                        *p = Position {
                            room: p.room,
                            epoch: r.epoch,
                            seq: r.next - 1,
                        };
                    }
                    p.seq = p.seq.max(r.next.saturating_sub(1));
                }
            }
            _ => {}
        }
        if let Event::RoomUserList { users } = event {
            // Part of the enter call's result, not a notification.
            self.state().members.extend(users);
            return;
        }
        if event.is_response() {
            let waiter = self.state().waiting.pop_front();
            if let Some(w) = waiter {
                let _ = w.send(event);
                return;
            }
        }
        let _ = self.notify.send(event);
    }
    async fn on_disconnect(&self) {
        // Pending requests fail now.
        self.state().waiting.clear();
        let _ = self.notify.send(Event::Notice {
            message: "disconnected".into(),
        });
    }
}

/// A connection to a Plaza server.
pub struct PlazaClient {
    net: Client,
    state: Arc<Mutex<State>>,
    timeout: Duration,
    /// Rooms on the server (from its HELLO answer).
    rooms: u32,
}

impl PlazaClient {
    /// Connects (a [`SocketAddr`] for plain TCP, or a [`Target`] with
    /// TLS); returns the client and its notification stream.
    ///
    /// # Errors
    /// If the connection or the TLS handshake fails.
    pub async fn connect(target: impl Into<Target>) -> Result<(Self, Notifications), ClientError> {
        let target = target.into();
        let state = Arc::new(Mutex::new(State::default()));
        let (tx, rx) = mpsc::unbounded_channel();
        let mut config = ClientConfig::new(target.addr, plaza_proto::ChatFraming);
        config.tls = target.tls;
        let net = Client::connect(
            config,
            Handler {
                state: state.clone(),
                notify: tx,
            },
        )
        .await?;
        let mut client = Self {
            net,
            state,
            timeout: Duration::from_secs(15),
            rooms: 0,
        };
        // Plaza's notifications (whispers, broadcasts, notices, resume
        // tokens...) come only to a connection that says it understands them.
        let hello = client
            .request(Request::Hello {
                version: plaza_proto::VERSION,
                features: plaza_proto::features::ALL,
            })
            .await?;
        if let Event::Hello { rooms, .. } = hello {
            client.rooms = rooms;
        }
        Ok((client, rx))
    }

    /// Rooms on the server, numbered from 0 (0 if it did not say).
    pub fn rooms(&self) -> u32 {
        self.rooms
    }

    /// Sends a request and waits for its response.
    ///
    /// # Errors
    /// If the connection is closed or no response comes in time.
    pub async fn request(&self, request: Request) -> Result<Event, ClientError> {
        let (tx, rx) = oneshot::channel();
        {
            // Queue the waiter and the bytes under one lock, so waiters stay
            // in the order the requests were sent.
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match request {
                Request::RoomEnter { .. } => st.members.clear(),
                Request::RoomRejoin { room, epoch, .. } => {
                    st.members.clear();
                    // Messages live from now on count toward it; the answer
                    // completes it.
                    st.position = Some(Position {
                        room: room as u32,
                        epoch,
                        seq: 0,
                    });
                }
                Request::RoomLeave | Request::Logout => st.position = None,
                _ => {}
            }
            self.net
                .send_with(|b| request.encode(b))
                .map_err(|_| ClientError::Disconnected)?;
            st.waiting.push_back(tx);
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(e)) => Ok(e),
            Ok(Err(_)) => Err(ClientError::Disconnected),
            Err(_) => Err(ClientError::Timeout(self.timeout)),
        }
    }

    /// The result code of a response (0 for answers without one).
    pub fn result_of(event: &Event) -> ResultCode {
        match event {
            Event::LoginResult(c)
            | Event::RoomEnterResult(c)
            | Event::RoomLeaveResult(c)
            | Event::RoomChatResult(c)
            | Event::RegisterResult(c)
            | Event::WhisperResult(c)
            | Event::BroadcastResult(c)
            | Event::LogoutResult(c)
            | Event::AdminResult(c)
            | Event::KickResult(c)
            | Event::MuteResult(c)
            | Event::RoomTopicResult(c)
            | Event::RoomRoleResult(c)
            | Event::RoomKickResult(c)
            | Event::RoomModeResult(c)
            | Event::RoomInviteResult(c)
            | Event::ShutdownResult(c) => *c,
            Event::EchoResult { result, .. } | Event::UserList { result, .. } => *result,
            Event::RequestError { result, .. } | Event::Hello { result, .. } => *result,
            Event::History(r) | Event::Rejoin(r) => r.result,
            Event::RoomSendResult { result, .. } => *result,
            _ => ResultCode::OK,
        }
    }

    /// Logs in with a password.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub async fn login(&self, name: &str, password: &str) -> Result<ResultCode, ClientError> {
        let r = self
            .request(Request::Login {
                name: name.into(),
                password: password.into(),
            })
            .await?;
        Ok(Self::result_of(&r))
    }

    /// Logs in with the resume token from the last successful login.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub async fn resume(&self, name: &str, token: &str) -> Result<ResultCode, ClientError> {
        let r = self
            .request(Request::Resume {
                name: name.into(),
                token: token.into(),
            })
            .await?;
        Ok(Self::result_of(&r))
    }

    /// The resume token from the last successful login, if any.
    pub fn token(&self) -> Option<String> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).token.clone()
    }

    /// Enters a room; returns the result and the member list (with you).
    /// Then learns the room's position (a HISTORY request for no
    /// messages), so that a later [`rejoin`](Self::rejoin) knows where to
    /// start.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub async fn enter(&self, room: i32) -> Result<(ResultCode, Vec<(u64, String)>), ClientError> {
        self.enter_with_key(room, None).await
    }

    /// As [`enter`](Self::enter), giving the room's key (ROOM_ENTER_KEY)
    /// if `key` is some.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub async fn enter_with_key(
        &self,
        room: i32,
        key: Option<&str>,
    ) -> Result<(ResultCode, Vec<(u64, String)>), ClientError> {
        let request = match key {
            Some(key) => Request::RoomEnterKey {
                room,
                key: key.to_owned(),
            },
            None => Request::RoomEnter { room },
        };
        let r = self.request(request).await?;
        let members = std::mem::take(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()).members);
        let code = Self::result_of(&r);
        if code.is_ok() {
            self.state.lock().unwrap_or_else(|e| e.into_inner()).position = Some(Position {
                room: room as u32,
                epoch: 0,
                seq: 0,
            });
            let page = plaza_proto::Page::Latest;
            self.request(Request::History { page, limit: 0 }).await?;
        }
        Ok((code, members))
    }

    /// Enters `at`'s room again after a drop (on a new connection, logged
    /// in) and replays the messages after `at.seq` onto the notification
    /// stream, in order, before this returns.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub async fn rejoin(&self, at: Position) -> Result<Rejoined, ClientError> {
        let request = Request::RoomRejoin {
            room: at.room as i32,
            epoch: at.epoch,
            after: at.seq,
        };
        let r = self.request(request).await?;
        let members = std::mem::take(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()).members);
        let (result, replayed, gap) = match r {
            Event::Rejoin(r) => (r.result, r.count, r.gap),
            other => (Self::result_of(&other), 0, false),
        };
        if !result.is_ok() {
            self.state.lock().unwrap_or_else(|e| e.into_inner()).position = None;
        }
        Ok(Rejoined {
            result,
            members,
            replayed,
            gap,
        })
    }

    /// The room this client is in and the last message it saw there.
    pub fn position(&self) -> Option<Position> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).position
    }

    /// Every logged-in user, following the pages.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub async fn users(&self) -> Result<(ResultCode, Vec<String>), ClientError> {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            match self.request(Request::UserList { after: after.clone() }).await? {
                Event::UserList {
                    result, names, more, ..
                } => {
                    if !result.is_ok() {
                        return Ok((result, all));
                    }
                    all.extend(names);
                    match (more, all.last()) {
                        (true, Some(last)) => after = last.clone(),
                        _ => return Ok((ResultCode::OK, all)),
                    }
                }
                other => return Ok((Self::result_of(&other), all)),
            }
        }
    }

    /// Closes the connection after what was sent is written.
    pub async fn close(&self) {
        self.net.disconnect().await;
    }
}
