//! How connections end: a graceful shutdown, a kick and a client's
//! half-close deliver everything the server promised, and end in an orderly
//! close, not a reset, even for a slow reader that is still sending.

use bytes::BytesMut;
use plaza_proto::{Event, Request, ResultCode};
use plaza_test_support::{TestClient, TestServer, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn encode(r: &Request) -> Vec<u8> {
    let mut b = BytesMut::new();
    r.encode(&mut b);
    b.to_vec()
}

/// Reads like a slow client that keeps talking: a PING, then at most 512
/// bytes, until the server closes. Returns every event, or the read error
/// (a reset) with how many events came before it.
async fn read_slowly_while_pinging(mut s: TcpStream) -> Result<Vec<Event>, (std::io::Error, usize)> {
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut chunk = [0u8; 512];
    for nonce in 0.. {
        // The server may have closed its side already: a failed write is
        // not the point, what arrives is.
        let _ = s.write_all(&encode(&Request::Ping { nonce })).await;
        let n = match within("bytes or a close", s.read(&mut chunk)).await {
            Ok(n) => n,
            Err(e) => return Err((e, events.len())),
        };
        if n == 0 {
            return Ok(events);
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(f) = plaza_proto::split_frame(&mut buf).expect("framing") {
            events.push(Event::decode(&f).expect("decodable"));
        }
    }
    unreachable!()
}

/// Two members in room 1: a talker and a listener with a 4 KiB receive
/// window that has read nothing; the talker has had `n` messages
/// acknowledged.
async fn room_with_a_backlog(server: &TestServer, n: usize) -> (TestClient, TcpStream) {
    let mut talker = server.user("talker").await;
    let mut listener = TestClient::connect_small_window(server.addr).await;
    listener.register("listener", "pw").await;
    listener.login("listener", "pw").await;
    listener.enter(1).await;
    talker.enter(1).await;
    for i in 0..n {
        talker
            .send(Request::RoomChat {
                message: format!("m{i:03}"),
            })
            .await;
        // Acknowledged, then the talker's own copy.
        loop {
            match talker.recv().await {
                Event::RoomChatResult(ResultCode::OK) => {}
                Event::RoomChatResult(c) => panic!("chat refused: {c:?}"),
                Event::RoomChat { message, .. } if message == format!("m{i:03}") => break,
                _ => {}
            }
        }
    }
    (talker, listener.into_stream())
}

fn chats(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::RoomChat { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_shutdown_delivers_every_acknowledged_message_to_a_slow_reader_still_sending() {
    let server = TestServer::start().await;
    const N: usize = 200;
    let (_talker, listener) = room_with_a_backlog(&server, N).await;
    let mut running = server.running;
    running.shutdown().await;
    let events = read_slowly_while_pinging(listener)
        .await
        .unwrap_or_else(|(e, n)| panic!("the connection was reset ({e}) after {n} events"));
    let heard = chats(&events);
    assert_eq!(heard.len(), N, "every acknowledged message arrives");
    assert!(heard.windows(2).all(|w| w[0] < w[1]), "in order");
    assert!(
        events.contains(&Event::Notice {
            message: "server is shutting down".into()
        }),
        "and the shutdown notice"
    );
    within("server exit", running.wait()).await;
}

#[tokio::test]
async fn a_kicked_slow_reader_still_sending_gets_its_messages_and_the_kick() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "s3cret\n").unwrap();
    let path = secret.path().to_owned();
    let server = TestServer::with(move |s| s.admin_secret_file = Some(path)).await;
    const N: usize = 100;
    let (mut talker, listener) = room_with_a_backlog(&server, N).await;
    assert_eq!(
        talker
            .call(Request::Admin {
                secret: "s3cret".into()
            })
            .await,
        Event::AdminResult(ResultCode::OK)
    );
    assert_eq!(
        talker
            .call(Request::Kick {
                name: "listener".into()
            })
            .await,
        Event::KickResult(ResultCode::OK)
    );
    let events = read_slowly_while_pinging(listener)
        .await
        .unwrap_or_else(|(e, n)| panic!("the connection was reset ({e}) after {n} events"));
    assert_eq!(chats(&events).len(), N);
    assert_eq!(
        events.iter().rev().find(|e| !matches!(e, Event::Pong { .. })),
        Some(&Event::Kicked { by: "talker".into() }),
        "the kick comes after the messages"
    );
}

/// Sends `requests` in one write, shuts the sending side, and returns what
/// the server answers before it closes.
async fn send_then_half_close(addr: std::net::SocketAddr, requests: &[Request]) -> Vec<Event> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let out: Vec<u8> = requests.iter().flat_map(encode).collect();
    s.write_all(&out).await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    within("the answers and the close", s.read_to_end(&mut got))
        .await
        .unwrap();
    let mut buf = BytesMut::from(&got[..]);
    let mut events = Vec::new();
    while let Some(f) = plaza_proto::split_frame(&mut buf).unwrap() {
        events.push(Event::decode(&f).unwrap());
    }
    events
}

#[tokio::test]
async fn requests_sent_before_a_half_close_are_all_answered() {
    let server = TestServer::start().await;
    let pings: Vec<Request> = (0..200).map(|nonce| Request::Ping { nonce }).collect();
    let pongs: Vec<Event> = (0..200).map(|nonce| Event::Pong { nonce }).collect();
    assert_eq!(send_then_half_close(server.addr, &pings).await, pongs);
}

#[tokio::test]
async fn a_half_close_behind_a_login_waits_for_its_answer() {
    let server = TestServer::start().await;
    server.user("amy").await;
    let login = Request::Login {
        name: "amy2".into(),
        password: "pw".into(),
    };
    let events = send_then_half_close(server.addr, &[login, Request::Ping { nonce: 7 }]).await;
    assert_eq!(
        events,
        vec![
            Event::LoginResult(ResultCode::INVALID_CREDENTIALS),
            Event::Pong { nonce: 7 }
        ]
    );
}

#[tokio::test]
async fn register_ping_and_login_in_one_write_are_answered_in_order() {
    let server = TestServer::start().await;
    let mut c = TestClient::connect_seed(server.addr).await;
    let mut out = encode(&Request::Register {
        name: "amy".into(),
        password: "pw".into(),
    });
    out.extend(encode(&Request::Ping { nonce: 1 }));
    out.extend(encode(&Request::Login {
        name: "amy".into(),
        password: "pw".into(),
    }));
    c.send_raw(&out).await;
    assert_eq!(c.recv().await, Event::RegisterResult(ResultCode::OK));
    assert_eq!(c.recv().await, Event::Pong { nonce: 1 });
    assert_eq!(c.recv().await, Event::LoginResult(ResultCode::OK));
    // REGISTER implies HELLO: the login comes with a resume token.
    assert!(matches!(c.recv().await, Event::ResumeToken { .. }));
}
