//! A protocol client over a real socket.

use std::net::SocketAddr;

use bytes::BytesMut;
use plaza_net::Target;
use plaza_proto::{Conn, ConnError, Event, Request, ResultCode};
use tokio::net::TcpStream;

use crate::*;

/// A protocol client over a real socket. It says HELLO first (Plaza's
/// notifications on) and skips the answer, as Plaza's own clients do;
/// [`TestClient::connect_seed`] is a client written for the seeds, which
/// never does.
pub struct TestClient {
    /// The raw protocol connection the load tools and `plaza_client` use.
    conn: Conn,
    /// HELLO's answer is still to come (and to be skipped).
    hello: bool,
    /// The resume token from the last successful login.
    pub token: Option<String>,
}

impl TestClient {
    /// Connects and says HELLO.
    pub async fn connect(addr: SocketAddr) -> Self {
        let mut c = Self::connect_seed(addr).await;
        c.hello().await;
        c
    }

    /// Connects as a client written for the seeds: no HELLO.
    pub async fn connect_seed(addr: SocketAddr) -> Self {
        let stream = within("connect", Target::from(addr).connect(None))
            .await
            .expect("connect");
        Self::over(stream)
    }

    /// Sends HELLO asking for Plaza's notifications; its answer is skipped.
    /// (A write error is left for the test's next step to meet: a server
    /// that refuses the connection may have reset it already.)
    pub async fn hello(&mut self) {
        self.hello_with(plaza_proto::features::NOTIFICATIONS).await;
    }

    /// Sends HELLO asking for `features`; its answer is skipped.
    pub async fn hello_with(&mut self, features: u32) {
        let mut b = BytesMut::new();
        Request::Hello {
            version: plaza_proto::VERSION,
            features,
        }
        .encode(&mut b);
        let sent = within("send", self.conn.send_raw(&b)).await;
        self.hello = sent.is_ok();
    }

    /// Connects from a chosen loopback address (127.0.0.x), as another
    /// client machine would.
    pub async fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> Self {
        let stream = within("connect", Target::from(addr).connect(Some(from)))
            .await
            .expect("connect");
        let mut c = Self::over(stream);
        c.hello().await;
        c
    }

    /// Connects with a 4 KiB receive buffer, so that when it stops reading
    /// the server's queue for it fills after a few KiB, not megabytes.
    pub async fn connect_small_window(addr: SocketAddr) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = within("connect", socket.connect(addr)).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut c = Self::over(stream.into());
        c.hello().await;
        c
    }

    /// Connects to a TLS listener, trusting `ca`.
    pub async fn connect_tls(addr: SocketAddr, ca: &std::path::Path) -> Self {
        let target = Target {
            addr,
            tls: Some(TestCert::connector(ca)),
        };
        let tls = within("connect and the TLS handshake", target.connect(None))
            .await
            .expect("connect and TLS handshake");
        let mut c = Self::over(tls);
        c.hello().await;
        c
    }

    fn over(stream: plaza_net::Stream) -> Self {
        Self {
            conn: Conn::over(stream),
            hello: false,
            token: None,
        }
    }

    /// The socket, for a test that drives it by hand.
    ///
    /// # Panics
    /// If this client speaks TLS.
    pub fn into_stream(self) -> TcpStream {
        match self.conn.stream {
            plaza_net::Stream::Tcp(s) => s,
            _ => panic!("a TLS client has no bare socket"),
        }
    }

    /// Sends one request.
    pub async fn send(&mut self, r: Request) {
        let mut b = BytesMut::new();
        r.encode(&mut b);
        self.send_raw(&b).await;
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        within("send", self.conn.send_raw(bytes)).await.expect("write");
    }

    /// The next raw frame from the server.
    pub async fn recv_raw(&mut self) -> Vec<u8> {
        self.try_recv_raw().await.expect("server closed the connection")
    }

    /// The next raw frame, or `None` when the server closes the connection.
    pub async fn try_recv_raw(&mut self) -> Option<Vec<u8>> {
        loop {
            let frame = match within("a packet from the server", self.conn.next_frame()).await {
                Ok(frame) => frame,
                // Closed, or reset: the connection is over either way.
                Err(ConnError::Closed | ConnError::Io(_)) => return None,
                Err(e) => panic!("the server sent a bad frame: {e}"),
            };
            if std::mem::take(&mut self.hello)
                && plaza_proto::packet_id(&frame) == plaza_proto::id::HELLO_RESPONSE
            {
                continue;
            }
            return Some(frame.to_vec());
        }
    }

    /// The next event.
    pub async fn recv(&mut self) -> Event {
        let f = self.recv_raw().await;
        Event::decode(&f).unwrap_or_else(|e| panic!("undecodable frame {f:?}: {e}"))
    }

    /// The next event, or `None` when the server closes the connection.
    pub async fn try_recv(&mut self) -> Option<Event> {
        let f = self.try_recv_raw().await?;
        Some(Event::decode(&f).expect("decodable frame"))
    }

    /// Waits for the server to close the connection, returning the events
    /// that came before.
    pub async fn until_closed(&mut self) -> Vec<Event> {
        let mut v = Vec::new();
        while let Some(e) = self.try_recv().await {
            v.push(e);
        }
        v
    }

    /// Sends a request and returns the next event.
    pub async fn call(&mut self, r: Request) -> Event {
        self.send(r).await;
        self.recv().await
    }

    /// Sends a request and returns its response, skipping the
    /// notifications that arrive first (in cluster mode, other nodes'
    /// news reaches a node at its own pace).
    pub async fn ask(&mut self, r: Request) -> Event {
        self.send(r).await;
        loop {
            let e = self.recv().await;
            if e.is_response() {
                return e;
            }
        }
    }

    /// Waits for the next event `want` accepts, skipping the others.
    pub async fn until(&mut self, what: &str, want: impl Fn(&Event) -> bool) -> Event {
        within(what, async {
            loop {
                let e = self.recv().await;
                if want(&e) {
                    return e;
                }
            }
        })
        .await
    }

    /// The number of users the server lists (every node's, in cluster
    /// mode).
    pub async fn total_users(&mut self) -> u32 {
        match self.ask(Request::UserList { after: String::new() }).await {
            Event::UserList { total, .. } => total,
            other => panic!("expected a user list, got {other:?}"),
        }
    }

    /// Waits until the server lists `n` users (other nodes' logins reach a
    /// cluster's directory at their own pace, and tell this client
    /// nothing, so this asks again).
    pub async fn until_users(&mut self, n: u32) {
        within(&format!("{n} users listed"), async {
            while self.total_users().await != n {
                tokio::task::yield_now().await;
            }
        })
        .await;
    }

    /// Registers `name`, expecting success.
    pub async fn register(&mut self, name: &str, password: &str) {
        let r = self
            .call(Request::Register {
                name: name.into(),
                password: password.into(),
            })
            .await;
        assert_eq!(r, Event::RegisterResult(ResultCode::OK), "register {name}");
    }

    /// Logs in, returning the result code. On success the server follows
    /// the response with a resume token, kept in `self.token`.
    pub async fn try_login(&mut self, name: &str, password: &str) -> ResultCode {
        self.send(Request::Login {
            name: name.into(),
            password: password.into(),
        })
        .await;
        self.login_result().await
    }

    /// Logs in with the resume token from the last login.
    pub async fn try_resume(&mut self, name: &str, token: &str) -> ResultCode {
        self.send(Request::Resume {
            name: name.into(),
            token: token.into(),
        })
        .await;
        self.login_result().await
    }

    /// Reads a login's answer: the result, and the token after success.
    pub async fn login_result(&mut self) -> ResultCode {
        match self.recv().await {
            Event::LoginResult(ResultCode::OK) => match self.recv().await {
                Event::ResumeToken { token, .. } => {
                    self.token = Some(token);
                    ResultCode::OK
                }
                other => panic!("expected a resume token after login, got {other:?}"),
            },
            Event::LoginResult(c) => c,
            other => panic!("expected a login result, got {other:?}"),
        }
    }

    /// Logs in, expecting success.
    pub async fn login(&mut self, name: &str, password: &str) {
        assert_eq!(
            self.try_login(name, password).await,
            ResultCode::OK,
            "login {name}"
        );
    }

    /// Says `text` in its room (ROOM_CHAT), expecting 222 with 0 (any
    /// notifications before it are skipped).
    pub async fn say(&mut self, text: &str) {
        let r = self.ask(Request::RoomChat { message: text.into() }).await;
        assert_eq!(r, Event::RoomChatResult(ResultCode::OK), "say {text:?}");
    }

    /// Enters a room, returning the member list and the result (the
    /// room's topic and operators, told before the list, are skipped).
    pub async fn enter(&mut self, room: i32) -> (Vec<(u64, String)>, ResultCode) {
        self.send(Request::RoomEnter { room }).await;
        let mut users = Vec::new();
        loop {
            match self.recv().await {
                Event::RoomUserList { users: u } => users.extend(u),
                Event::RoomTopic { .. } | Event::RoomRole { .. } | Event::RoomMode { .. } => {}
                Event::RoomEnterResult(c) => return (users, c),
                other => panic!("unexpected {other:?} while entering a room"),
            }
        }
    }
}
