//! The WebSocket front end end to end: real TCP on 127.0.0.1, clients
//! speaking WebSocket through an independent implementation
//! (tokio-tungstenite), beside TCP clients in the same rooms.

use std::net::SocketAddr;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use plaza_proto::{Event, Request, ResultCode};
use plaza_test_support::{RedisServer, TestCert, TestClient, TestServer, within};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A Plaza user over WebSocket (subprotocol plaza.v1).
struct WsUser<S = MaybeTlsStream<TcpStream>> {
    ws: WebSocketStream<S>,
    token: Option<String>,
}

/// The upgrade request for `url`, asking for plaza.v1.
fn upgrade_request(url: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "plaza.v1".parse().unwrap());
    req
}

impl WsUser {
    /// Upgrades and says HELLO, as the web client does.
    async fn connect(addr: SocketAddr) -> Self {
        let req = upgrade_request(&format!("ws://{addr}/ws"));
        let (ws, answer) = within("upgrade", tokio_tungstenite::connect_async(req))
            .await
            .expect("upgrade");
        assert_eq!(answer.headers()["sec-websocket-protocol"], "plaza.v1");
        Self::hello(ws).await
    }

    /// Registers and logs in.
    async fn user(addr: SocketAddr, name: &str) -> Self {
        let mut u = Self::connect(addr).await;
        u.sign_up(name).await;
        u
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsUser<S> {
    async fn hello(ws: WebSocketStream<S>) -> Self {
        let mut user = Self { ws, token: None };
        let hello = Request::Hello {
            version: plaza_proto::VERSION,
            features: plaza_proto::features::NOTIFICATIONS,
        };
        assert!(matches!(user.call(hello).await, Event::Hello { .. }));
        user
    }

    async fn sign_up(&mut self, name: &str) {
        let u = self;
        let register = Request::Register {
            name: name.into(),
            password: "pw".into(),
        };
        assert_eq!(u.call(register).await, Event::RegisterResult(ResultCode::OK));
        assert_eq!(
            u.login(Request::Login {
                name: name.into(),
                password: "pw".into(),
            })
            .await,
            ResultCode::OK
        );
    }

    async fn login(&mut self, request: Request) -> ResultCode {
        match self.call(request).await {
            Event::LoginResult(ResultCode::OK) => {
                let Event::ResumeToken { token, .. } = self.recv().await else {
                    panic!("a resume token after login")
                };
                self.token = Some(token);
                ResultCode::OK
            }
            Event::LoginResult(code) => code,
            other => panic!("expected a login result, got {other:?}"),
        }
    }

    /// Enters a room: the member list and the result (the room's
    /// operators, told before the list, are skipped).
    async fn enter(&mut self, room: i32) -> (Vec<(u64, String)>, ResultCode) {
        self.send(Request::RoomEnter { room }).await;
        let mut users = Vec::new();
        loop {
            match self.recv().await {
                Event::RoomUserList { users: u } => users.extend(u),
                Event::RoomRole { .. } => {}
                Event::RoomEnterResult(code) => return (users, code),
                other => panic!("unexpected {other:?} while entering a room"),
            }
        }
    }

    async fn send(&mut self, request: Request) {
        let mut b = BytesMut::new();
        request.encode(&mut b);
        self.send_message(Message::Binary(b.freeze())).await;
    }

    async fn send_message(&mut self, m: Message) {
        within("send", self.ws.send(m)).await.expect("send");
    }

    /// The next packet (pings are answered by tungstenite and skipped).
    async fn recv(&mut self) -> Event {
        loop {
            match within("a message", self.ws.next()).await {
                Some(Ok(Message::Binary(b))) => {
                    return Event::decode(&b).expect("one whole packet per message");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a packet, got {other:?}"),
            }
        }
    }

    async fn call(&mut self, request: Request) -> Event {
        self.send(request).await;
        self.recv().await
    }

    /// Reads until the server's close frame: its code and reason.
    async fn closed(&mut self) -> (u16, String) {
        loop {
            match within("the close frame", self.ws.next()).await {
                Some(Ok(Message::Close(Some(f)))) => return (f.code.into(), f.reason.to_string()),
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }
}

async fn ws_server(configure: impl FnOnce(&mut plaza_server::Settings)) -> (TestServer, SocketAddr) {
    let server = TestServer::with(|s| {
        s.ws_bind = Some("127.0.0.1:0".parse().unwrap());
        configure(s);
    })
    .await;
    let ws = server.running.ws_addr().expect("the WebSocket listener");
    (server, ws)
}

fn chat(message: &str) -> Request {
    Request::RoomChat {
        message: message.into(),
    }
}

/// A browser's user and a TCP user in one room: every request type once
/// over WebSocket, and each side hears the other.
#[tokio::test]
async fn a_websocket_user_and_a_tcp_user_share_a_room_and_every_request_works() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "opensesame").unwrap();
    let path = secret.path().to_owned();
    let (server, ws) = ws_server(|s| s.admin_secret_file = Some(path)).await;
    let mut web = WsUser::user(ws, "wendy").await;
    let mut tcp = server.user("tom").await;

    // Rooms: the member lists and the arrival notice cross front ends.
    assert_eq!(tcp.enter(3).await.1, ResultCode::OK);
    let (members, entered) = web.enter(3).await;
    assert_eq!(entered, ResultCode::OK);
    let mut names: Vec<_> = members.iter().map(|(_, n)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["tom", "wendy"]);
    let Event::RoomNewUser { name, .. } = tcp.recv().await else {
        panic!("tom hears wendy enter")
    };
    assert_eq!(name, "wendy");
    let tom = members.iter().find(|(_, n)| n == "tom").unwrap().0;

    // Room chat both ways (each sender hears its own message too).
    assert_eq!(
        web.call(chat("hi from a browser")).await,
        Event::RoomChatResult(ResultCode::OK)
    );
    let from_web = Event::RoomChat {
        name: "wendy".into(),
        message: "hi from a browser".into(),
    };
    assert_eq!(web.recv().await, from_web);
    assert_eq!(tcp.recv().await, from_web);
    assert_eq!(
        tcp.call(chat("hi from tcp")).await,
        Event::RoomChatResult(ResultCode::OK)
    );
    let from_tcp = Event::RoomChat {
        name: "tom".into(),
        message: "hi from tcp".into(),
    };
    assert_eq!(tcp.recv().await, from_tcp);
    assert_eq!(web.recv().await, from_tcp);

    // Whispers both ways.
    let whisper = Request::Whisper {
        to: "tom".into(),
        message: "psst".into(),
    };
    assert_eq!(web.call(whisper).await, Event::WhisperResult(ResultCode::OK));
    assert_eq!(
        tcp.recv().await,
        Event::Whisper {
            from: "wendy".into(),
            message: "psst".into(),
        }
    );
    let whisper = Request::Whisper {
        to: "wendy".into(),
        message: "yes?".into(),
    };
    assert_eq!(tcp.call(whisper).await, Event::WhisperResult(ResultCode::OK));
    assert_eq!(
        web.recv().await,
        Event::Whisper {
            from: "tom".into(),
            message: "yes?".into(),
        }
    );

    // Echo, ping, user list.
    let echo = Request::Echo {
        payload: vec![1, 2, 3],
    };
    assert_eq!(
        web.call(echo).await,
        Event::EchoResult {
            result: ResultCode::OK,
            payload: vec![1, 2, 3],
        }
    );
    assert_eq!(
        web.call(Request::Ping { nonce: 7 }).await,
        Event::Pong { nonce: 7 }
    );
    let Event::UserList { names, .. } = web.call(Request::UserList { after: String::new() }).await else {
        panic!("a user list")
    };
    assert_eq!(names, ["tom", "wendy"]);

    // Admin: mute, broadcast, kick.
    let admin = Request::Admin {
        secret: "opensesame".into(),
    };
    assert_eq!(web.call(admin).await, Event::AdminResult(ResultCode::OK));
    let mute = Request::Mute {
        name: "tom".into(),
        seconds: 60,
    };
    assert_eq!(web.call(mute).await, Event::MuteResult(ResultCode::OK));
    assert_eq!(tcp.recv().await, Event::Muted { seconds: 60 });
    let broadcast = Request::Broadcast {
        message: "all hands".into(),
    };
    assert_eq!(web.call(broadcast).await, Event::BroadcastResult(ResultCode::OK));
    let all_hands = Event::Broadcast {
        from: "wendy".into(),
        message: "all hands".into(),
    };
    assert_eq!(web.recv().await, all_hands);
    assert_eq!(tcp.recv().await, all_hands);
    assert_eq!(
        web.call(Request::Kick { name: "tom".into() }).await,
        Event::KickResult(ResultCode::OK)
    );
    assert_eq!(web.recv().await, Event::RoomLeaveUser { uid: tom });
    assert!(
        tcp.until_closed()
            .await
            .contains(&Event::Kicked { by: "wendy".into() })
    );

    // Leave, log out, resume with the token on a new connection.
    assert_eq!(
        web.call(Request::RoomLeave).await,
        Event::RoomLeaveResult(ResultCode::OK)
    );
    assert_eq!(
        web.call(Request::Logout).await,
        Event::LogoutResult(ResultCode::OK)
    );
    let token = web.token.clone().expect("a token");
    let mut again = WsUser::connect(ws).await;
    let resume = Request::Resume {
        name: "wendy".into(),
        token,
    };
    assert_eq!(again.login(resume).await, ResultCode::OK);

    // Shutdown: the answer, the notice, then a close frame saying why.
    assert_eq!(
        again
            .call(Request::Admin {
                secret: "opensesame".into()
            })
            .await,
        Event::AdminResult(ResultCode::OK)
    );
    assert_eq!(
        again.call(Request::Shutdown).await,
        Event::ShutdownResult(ResultCode::OK)
    );
    let (code, reason) = again.closed().await;
    assert_eq!(code, 1001, "going away");
    assert!(reason.contains("reconnect"), "{reason}");
}

/// The upgrade is refused for a foreign page, a missing subprotocol and an
/// old version; the page and its script are served.
#[tokio::test]
async fn the_upgrade_checks_origin_subprotocol_and_version_and_the_page_is_served() {
    let (_server, ws) = ws_server(|_| {}).await;
    let ask = |extra: &'static str| async move {
        let mut s = TcpStream::connect(ws).await.unwrap();
        let head = format!(
            "GET /ws HTTP/1.1\r\nHost: {ws}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0; 1024];
        let n = within("the answer", s.read(&mut answer)).await.unwrap();
        String::from_utf8_lossy(&answer[..n]).into_owned()
    };
    let good = "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: plaza.v1\r\n";
    let ok = ask(good).await;
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
    assert!(ok.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{ok}");
    let foreign = ask(
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: plaza.v1\r\nOrigin: http://evil.example\r\n",
    )
    .await;
    assert!(foreign.starts_with("HTTP/1.1 403"), "{foreign}");
    let own =
        format!("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: plaza.v1\r\nOrigin: http://{ws}\r\n");
    let own = ask(Box::leak(own.into_boxed_str())).await;
    assert!(own.starts_with("HTTP/1.1 101"), "{own}");
    let no_protocol = ask("Sec-WebSocket-Version: 13\r\n").await;
    assert!(no_protocol.starts_with("HTTP/1.1 400"), "{no_protocol}");
    let old = ask("Sec-WebSocket-Version: 8\r\nSec-WebSocket-Protocol: plaza.v1\r\n").await;
    assert!(old.starts_with("HTTP/1.1 426"), "{old}");

    for (path, kind) in [
        ("/", "text/html"),
        ("/plaza.js", "text/javascript"),
        ("/app.js", "text/javascript"),
    ] {
        let mut s = TcpStream::connect(ws).await.unwrap();
        let head = format!("GET {path} HTTP/1.1\r\nHost: {ws}\r\nConnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let mut page = Vec::new();
        within("the page", s.read_to_end(&mut page)).await.unwrap();
        let page = String::from_utf8_lossy(&page);
        assert!(page.starts_with("HTTP/1.1 200"), "{path}: {page}");
        assert!(
            page.to_ascii_lowercase()
                .contains(&format!("content-type: {kind}")),
            "{path}"
        );
    }
}

/// A message that is not exactly one Plaza packet, text, or broken
/// fragments: closed with a code that says why. Fragments that make one
/// packet are one request.
#[tokio::test]
async fn bad_messages_are_closed_with_a_code() {
    let (_server, ws) = ws_server(|_| {}).await;
    let mut u = WsUser::connect(ws).await;
    u.send_message(Message::Text("hello".into())).await;
    assert_eq!(u.closed().await.0, 1007);

    // A continuation with no message begun.
    let mut u = WsUser::connect(ws).await;
    let stray = Frame::message(vec![1, 2, 3], OpCode::Data(Data::Continue), true);
    u.send_message(Message::Frame(stray)).await;
    assert_eq!(u.closed().await.0, 1002);

    // Fragments that add up past the largest request.
    let mut u = WsUser::connect(ws).await;
    for (op, fin) in [(Data::Binary, false), (Data::Continue, false)] {
        u.send_message(Message::Frame(Frame::message(
            vec![0u8; 4000],
            OpCode::Data(op),
            fin,
        )))
        .await;
    }
    assert_eq!(u.closed().await.0, 1009);

    let mut u = WsUser::connect(ws).await;
    let mut two = BytesMut::new();
    Request::Ping { nonce: 1 }.encode(&mut two);
    Request::Ping { nonce: 2 }.encode(&mut two);
    u.send_message(Message::Binary(two.freeze())).await;
    assert_eq!(u.closed().await.0, 1007);

    let mut u = WsUser::connect(ws).await;
    u.send_message(Message::Binary(vec![3, 0, 9].into())).await;
    assert_eq!(u.closed().await.0, 1007);

    // Over the largest request: refused from the frame's header, the
    // connection cut.
    let mut u = WsUser::connect(ws).await;
    let _ = u.ws.send(Message::Binary(vec![0u8; 5000].into())).await;
    assert!(!matches!(
        within("the cut", u.ws.next()).await,
        Some(Ok(Message::Binary(_)))
    ));

    // A packet in three fragments, a ping between them: one request.
    let mut u = WsUser::connect(ws).await;
    let mut ping = BytesMut::new();
    Request::Ping { nonce: 77 }.encode(&mut ping);
    let (a, rest) = ping.split_at(3);
    let (b, c) = rest.split_at(4);
    let parts = [
        (Data::Binary, a, false),
        (Data::Continue, b, false),
        (Data::Continue, c, true),
    ];
    for (i, (op, bytes, fin)) in parts.into_iter().enumerate() {
        if i == 1 {
            u.send_message(Message::Ping(vec![9].into())).await;
        }
        u.send_message(Message::Frame(Frame::message(
            bytes.to_vec(),
            OpCode::Data(op),
            fin,
        )))
        .await;
    }
    assert_eq!(u.recv().await, Event::Pong { nonce: 77 });

    // An unknown packet id is the protocol's business, not WebSocket's:
    // answered, and the connection stays.
    let mut u = WsUser::connect(ws).await;
    u.send_message(Message::Binary(vec![5, 0, 0xEE, 0xEE, 0].into()))
        .await;
    assert!(matches!(u.recv().await, Event::RequestError { .. }));
    assert_eq!(u.call(Request::Ping { nonce: 9 }).await, Event::Pong { nonce: 9 });
}

/// A quiet browser is pinged; one that answers stays past the idle
/// timeout, one that never answers is closed by it.
#[tokio::test]
async fn quiet_websockets_are_pinged_and_dead_ones_closed() {
    let (_server, ws) = ws_server(|s| s.idle_timeout_secs = Some(2)).await;

    // A peer that upgrades and then never reads nor answers.
    let mut dead = TcpStream::connect(ws).await.unwrap();
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: {ws}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: plaza.v1\r\n\r\n"
    );
    dead.write_all(head.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    within("the dead peer's close", dead.read_to_end(&mut all))
        .await
        .ok();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    // The pings it got: 0x89, length 0.
    assert!(
        all.windows(2).any(|w| w == [0x89, 0]),
        "pinged before it was closed"
    );

    // One that answers: three pings (more than the 2 s idle timeout), each
    // answered with a pong, and it is still there.
    let mut live = WsUser::connect(ws).await;
    for _ in 0..3 {
        match within("a ping", live.ws.next()).await {
            // tungstenite queues the pong; a flush sends it.
            Some(Ok(Message::Ping(_))) => within("the pong", live.ws.flush()).await.unwrap(),
            other => panic!("expected a ping, got {other:?}"),
        }
    }
    assert_eq!(
        live.call(Request::Ping { nonce: 3 }).await,
        Event::Pong { nonce: 3 }
    );
}

/// A TCP user's room message reaches WebSocket members as one frame each,
/// encoded once for all of them.
#[tokio::test]
async fn a_fan_out_reaches_many_browsers() {
    let (server, ws) = ws_server(|_| {}).await;
    let mut browsers = Vec::new();
    for i in 0..5 {
        let mut u = WsUser::user(ws, &format!("web{i}")).await;
        assert_eq!(u.enter(1).await.1, ResultCode::OK);
        browsers.push(u);
    }
    let mut tcp: TestClient = server.user("teller").await;
    assert_eq!(tcp.enter(1).await.1, ResultCode::OK);
    tcp.send(chat("to all")).await;
    for u in &mut browsers {
        loop {
            match u.recv().await {
                Event::RoomChat { name, message } => {
                    assert_eq!((name.as_str(), message.as_str()), ("teller", "to all"));
                    break;
                }
                Event::RoomNewUser { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let status = server.control().await.status().await;
    let ws_status = status.websocket.expect("websocket status");
    assert_eq!(ws_status.sessions, 5);
    // And in /metrics.
    let metrics = server.running.metrics_addr().expect("metrics listener");
    let mut m = TcpStream::connect(metrics).await.unwrap();
    m.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    within("the metrics", m.read_to_string(&mut body)).await.unwrap();
    assert!(
        body.lines().any(|l| l == "plaza_websocket_sessions 5.0"),
        "{body}"
    );
}

/// wss: the same protocol over TLS, with the chat TLS listener's
/// certificate.
#[tokio::test]
async fn wss_carries_the_same_protocol_over_tls() {
    let cert = TestCert::new();
    let server = TestServer::with_tls(&cert, |s| {
        s.ws_bind = Some("127.0.0.1:0".parse().unwrap());
        s.wss_bind = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let wss = server.running.wss_addr().expect("the wss listener");
    let target = plaza_net::Target {
        addr: wss,
        tls: Some(TestCert::connector(&cert.cert)),
    };
    let stream = within("TLS", target.connect(None)).await.expect("TLS handshake");
    let req = upgrade_request(&format!("wss://{wss}/ws"));
    let (ws, _) = within("upgrade", tokio_tungstenite::client_async(req, stream))
        .await
        .expect("upgrade over TLS");
    let mut web = WsUser::hello(ws).await;
    web.sign_up("tess").await;
    let mut tcp = server.user("tim").await;
    assert_eq!(tcp.enter(4).await.1, ResultCode::OK);
    assert_eq!(web.enter(4).await.1, ResultCode::OK);
    assert_eq!(
        tcp.ask(chat("over tls")).await,
        Event::RoomChatResult(ResultCode::OK)
    );
    loop {
        match web.recv().await {
            Event::RoomChat { name, message } => {
                break assert_eq!((name.as_str(), message.as_str()), ("tim", "over tls"));
            }
            Event::RoomNewUser { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    // A renewed certificate, reloaded: wss presents it to new connections.
    let old = cert.renew();
    server.running.reload_tls().expect("reload");
    let with = |ca: &std::path::Path| plaza_net::Target {
        addr: wss,
        tls: Some(TestCert::connector(ca)),
    };
    let renewed = within("TLS", with(&cert.cert).connect(None)).await;
    assert!(renewed.is_ok(), "the new certificate is presented");
    let stale = within("TLS", with(&old).connect(None)).await;
    assert!(stale.is_err(), "the old one is not");
}

/// Cluster mode: a browser on one node and a TCP user on another share a
/// room and whisper.
#[tokio::test]
async fn a_browser_on_one_node_and_a_tcp_user_on_another_share_a_room() {
    let redis = RedisServer::start().await;
    let node = |ws: bool| {
        let url = redis.url();
        TestServer::with(move |s| {
            s.store = Some(url);
            s.cluster = Some(true);
            s.presence_ttl_secs = Some(3);
            if ws {
                s.ws_bind = Some("127.0.0.1:0".parse().unwrap());
            }
        })
    };
    let (a, b) = (node(true).await, node(false).await);
    let mut web = WsUser::user(a.running.ws_addr().unwrap(), "wanda").await;
    let mut tcp = b.user("theo").await;
    assert_eq!(web.enter(5).await.1, ResultCode::OK);
    let (members, code) = tcp.enter(5).await;
    assert_eq!(code, ResultCode::OK);
    assert!(members.iter().any(|(_, n)| n == "wanda"), "{members:?}");
    assert_eq!(
        tcp.ask(chat("across nodes")).await,
        Event::RoomChatResult(ResultCode::OK)
    );
    loop {
        match web.recv().await {
            Event::RoomChat { name, message } => {
                break assert_eq!((name.as_str(), message.as_str()), ("theo", "across nodes"));
            }
            Event::RoomNewUser { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let whisper = Request::Whisper {
        to: "theo".into(),
        message: "hello from node a".into(),
    };
    assert_eq!(web.call(whisper).await, Event::WhisperResult(ResultCode::OK));
    loop {
        match tcp.recv().await {
            Event::Whisper { from, message } => {
                break assert_eq!((from.as_str(), message.as_str()), ("wanda", "hello from node a"));
            }
            Event::RoomChat { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// plaza-proto's `Conn` (the load tools' and tests' client) over
/// WebSocket: the same calls, and the close frame at shutdown ends it
/// after the notice before it.
#[tokio::test]
async fn the_raw_client_speaks_over_websocket_too() {
    let (server, ws) = ws_server(|_| {}).await;
    let endpoint = plaza_proto::Endpoint {
        target: ws.into(),
        websocket: true,
    };
    let mut c = within("connect", endpoint.connect(None)).await.expect("upgrade");
    assert!(matches!(
        within("hello", c.hello()).await.unwrap(),
        Event::Hello { .. }
    ));
    let login = within("login", c.register_and_login("rawley", "pw"))
        .await
        .unwrap();
    assert_eq!(login, Event::LoginResult(ResultCode::OK));
    let pong = within("ping", c.call(Request::Ping { nonce: 42 })).await.unwrap();
    // The resume token came between.
    let pong = match pong {
        Event::ResumeToken { .. } => within("pong", c.next()).await.unwrap(),
        other => other,
    };
    assert_eq!(pong, Event::Pong { nonce: 42 });
    server.running.shutdown().await;
    assert_eq!(
        within("the notice", c.next()).await.unwrap(),
        Event::Notice {
            message: "server is shutting down".into()
        }
    );
    assert!(matches!(
        within("the close", c.next()).await,
        Err(plaza_proto::ConnError::Closed)
    ));
}

/// A kicked browser gets KICKED_NOTIFY, then a close frame (1000), not a
/// bare cut.
#[tokio::test]
async fn a_kicked_browser_hears_why_then_a_clean_close() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "opensesame").unwrap();
    let path = secret.path().to_owned();
    let (server, ws) = ws_server(|s| s.admin_secret_file = Some(path)).await;
    let mut web = WsUser::user(ws, "kim").await;
    let mut admin = server.user("ada").await;
    let elevate = Request::Admin {
        secret: "opensesame".into(),
    };
    assert_eq!(admin.call(elevate).await, Event::AdminResult(ResultCode::OK));
    let kick = Request::Kick { name: "kim".into() };
    assert_eq!(admin.call(kick).await, Event::KickResult(ResultCode::OK));
    assert_eq!(web.recv().await, Event::Kicked { by: "ada".into() });
    assert_eq!(web.closed().await.0, 1000);
}

/// A browser that stops reading while its room floods is closed with 1008
/// and a reason, after whatever was already being written, and counted as
/// a slow consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_stops_reading_is_closed_with_1008() {
    let (server, ws) = ws_server(|s| s.max_send_queue_kib = Some(64)).await;
    // A small receive window, so what the server sends piles up in its queue.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = within("connect", socket.connect(ws)).await.unwrap();
    let mut stalled = plaza_proto::Conn::upgrade(stream.into(), &ws.to_string())
        .await
        .unwrap();
    let login = within("login", stalled.register_and_login("stuck", "pw"))
        .await
        .unwrap();
    assert_eq!(login, Event::LoginResult(ResultCode::OK));
    stalled.send(Request::RoomEnter { room: 1 }).await.unwrap();
    loop {
        if within("enter", stalled.next()).await.unwrap() == Event::RoomEnterResult(ResultCode::OK) {
            break;
        }
    }
    // A TCP member floods the room, a hundred messages at a time, each
    // hundred once its answers are back; after each hundred the stalled
    // browser reads at most 4 KiB: it falls further behind with every
    // hundred until its queue overflows, then reads its way to the end.
    let mut loud = server.user("loud").await;
    assert_eq!(loud.enter(1).await.1, ResultCode::OK);
    let (mut all, mut buf) = (Vec::new(), vec![0u8; 4096]);
    within("the stalled browser's end", async {
        loop {
            let mut batch = BytesMut::new();
            for i in 0..100 {
                Request::RoomChat {
                    message: format!("{i:0>200}"),
                }
                .encode(&mut batch);
            }
            loud.send_raw(&batch).await;
            let mut answered = 0;
            while answered < 100 {
                if matches!(loud.recv().await, Event::RoomChatResult(_)) {
                    answered += 1;
                }
            }
            match stalled.stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    // Its last frame is a close frame, 1008 (0x03F0), and it was counted.
    let at = all
        .windows(4)
        .rposition(|w| w[0] == 0x88 && w[2..] == [0x03, 0xF0]);
    assert!(at.is_some(), "a close frame with 1008 ends the stream");
    // Closing its side ends the session (the server waits for that, up to
    // its grace period).
    drop(stalled);
    let ctl = server.control().await;
    within("the count", async {
        while ctl.status().await.slow_consumer_disconnects == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
}
