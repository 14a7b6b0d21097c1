//! The chat server end to end: real TCP on 127.0.0.1, a real embedded store
//! in a temporary directory, and a protocol client.

use plaza_proto::{Event, Request, ResultCode};
use plaza_server::Accounts;
use plaza_test_support::{TEST_HASH, TestClient, TestServer, retry_while, within};

fn chat(message: &str) -> Request {
    Request::RoomChat {
        message: message.into(),
    }
}

#[tokio::test]
async fn seed_course_login_bytes_get_the_seed_response_bytes() {
    let server = TestServer::start().await;
    let mut other = server.client().await;
    other.register("seed2", "pw").await; // accounts come from Plaza's REGISTER
    // LOGIN_REQUEST as the seed course's C# client builds it: 5-byte header
    // (length 71, id 201, flags 0), then two 33-byte NUL-padded fields.
    let mut raw = vec![71, 0, 201, 0, 0];
    let mut id = b"seed2".to_vec();
    id.resize(33, 0);
    let mut pw = b"pw".to_vec();
    pw.resize(33, 0);
    raw.extend_from_slice(&id);
    raw.extend_from_slice(&pw);
    other.send_raw(&raw).await;
    // LOGIN_RESPONSE: length 7, id 202, flags 0, result u16 LE 0.
    assert_eq!(other.recv_raw().await, vec![7, 0, 202, 0, 0, 0, 0]);
    // Then Plaza's RESUME_TOKEN_NOTIFY (337), which a seed client ignores
    // as an unknown id.
    assert_eq!(plaza_proto::packet_id(&other.recv_raw().await), 337);
    // The same bytes from another connection: already logged in, 31.
    let mut c = server.client().await;
    c.send_raw(&raw).await;
    assert_eq!(c.recv_raw().await, vec![7, 0, 202, 0, 0, 31, 0]);
    // ROOM_ENTER_REQUEST room 0 → 209 list then 207 result 0, after
    // Plaza's ROOM_ROLE_NOTIFY (363: it opened the room, so it is its
    // operator), which a seed client ignores too.
    other.send_raw(&[9, 0, 206, 0, 0, 0, 0, 0, 0]).await;
    assert_eq!(plaza_proto::packet_id(&other.recv_raw().await), 363);
    let list = other.recv_raw().await;
    assert_eq!(&list[..6], &[5 + 1 + 8 + 1 + 5, 0, 209, 0, 0, 1]);
    assert_eq!(&list[14..], &[5, b's', b'e', b'e', b'd', b'2']);
    assert_eq!(other.recv_raw().await, vec![7, 0, 207, 0, 0, 0, 0]);
    // ROOM_CHAT_REQUEST with the seed's 257-byte field: response, then the
    // 295-byte notify.
    let mut msg = b"hello".to_vec();
    msg.resize(257, 0);
    let mut raw_chat = vec![0x06, 0x01, 221, 0, 0];
    raw_chat.extend_from_slice(&msg);
    other.send_raw(&raw_chat).await;
    assert_eq!(other.recv_raw().await, vec![7, 0, 222, 0, 0, 0, 0]);
    let notify = other.recv_raw().await;
    assert_eq!(notify.len(), 295);
    assert_eq!(&notify[..5], &[0x27, 0x01, 223, 0, 0]);
    assert_eq!(&notify[5..11], b"seed2\0");
    assert_eq!(&notify[38..44], b"hello\0");
    // ROOM_LEAVE_REQUEST → 216 result 0.
    other.send_raw(&[5, 0, 215, 0, 0]).await;
    assert_eq!(other.recv_raw().await, vec![7, 0, 216, 0, 0, 0, 0]);
}

#[tokio::test]
async fn login_result_codes() {
    let server = TestServer::with(|s| s.max_users = Some(2)).await;
    let mut a = server.user("amy").await;
    let mut b = server.client().await;
    assert_eq!(b.try_login("amy", "pw").await, ResultCode::LOGIN_ALREADY);
    assert_eq!(b.try_login("nobody", "pw").await, ResultCode::INVALID_CREDENTIALS);
    b.register("bob", "pw").await;
    assert_eq!(b.try_login("bob", "wrong").await, ResultCode::INVALID_CREDENTIALS);
    b.login("bob", "pw").await;
    assert_eq!(
        b.try_login("bob", "pw").await,
        ResultCode::SESSION_ALREADY_LOGGED_IN
    );
    let mut c = server.client().await;
    c.register("cat", "pw").await;
    assert_eq!(c.try_login("cat", "pw").await, ResultCode::SERVER_FULL);
    assert_eq!(
        a.call(Request::Register {
            name: "bob".into(),
            password: "x".into()
        })
        .await,
        Event::RegisterResult(ResultCode::NAME_TAKEN)
    );
    assert_eq!(
        c.call(Request::Register {
            name: "has space".into(),
            password: "x".into()
        })
        .await,
        Event::RegisterResult(ResultCode::INVALID_NAME)
    );
}

#[tokio::test]
async fn registration_can_be_disabled() {
    let server = TestServer::with(|s| s.registration = Some(false)).await;
    let mut c = server.client().await;
    let r = c
        .call(Request::Register {
            name: "amy".into(),
            password: "pw".into(),
        })
        .await;
    assert_eq!(r, Event::RegisterResult(ResultCode::REGISTRATION_DISABLED));
}

#[tokio::test]
async fn enter_and_leave_notices_may_wait_but_never_overtake_room_chat() {
    // A delay no test outlasts: the notices go out only when room chat
    // sends them first.
    let server = TestServer::with(|s| s.enter_leave_delay_ms = Some(3_600_000)).await;
    let mut a = server.user("amy").await;
    let mut b = server.user("bob").await;
    a.enter(1).await;
    b.enter(1).await;
    assert_eq!(b.call(chat("first")).await, Event::RoomChatResult(ResultCode::OK));
    assert!(matches!(b.recv().await, Event::RoomChat { .. }));
    assert!(matches!(a.recv().await, Event::RoomNewUser { name, .. } if name == "bob"));
    assert!(matches!(a.recv().await, Event::RoomChat { message, .. } if message == "first"));
    // Cat's arrival and bob's leaving wait for the next chat. Bob left
    // before then and hears of neither; cat hears of bob leaving (her
    // member list had him), not of her own arrival.
    let mut c = server.user("cat").await;
    c.enter(1).await;
    b.send(Request::RoomLeave).await;
    assert_eq!(b.recv().await, Event::RoomLeaveResult(ResultCode::OK));
    c.send(chat("second")).await;
    assert!(matches!(c.recv().await, Event::RoomLeaveUser { .. }));
    assert_eq!(c.recv().await, Event::RoomChatResult(ResultCode::OK));
    let seen: Vec<Event> = [a.recv().await, a.recv().await, a.recv().await].into();
    assert!(matches!(&seen[0], Event::RoomNewUser { name, .. } if name == "cat"));
    assert!(matches!(&seen[1], Event::RoomLeaveUser { .. }));
    assert!(matches!(&seen[2], Event::RoomChat { message, .. } if message == "second"));
}

#[tokio::test]
async fn enter_and_leave_notices_arrive_on_their_own_with_the_default_delay() {
    let server = TestServer::start().await;
    let mut a = server.user("amy").await;
    let mut b = server.user("bob").await;
    a.enter(1).await;
    b.enter(1).await;
    assert!(matches!(a.recv().await, Event::RoomNewUser { name, .. } if name == "bob"));
    drop(b);
    assert!(matches!(a.recv().await, Event::RoomLeaveUser { .. }));
}

#[tokio::test]
async fn rooms_notify_in_the_documented_order() {
    let server = TestServer::with(|s| {
        s.rooms = Some(10);
        s.room_capacity = Some(2);
    })
    .await;
    let mut a = server.user("amy").await;
    let mut b = server.user("bob").await;
    let mut c = server.user("cat").await;
    assert_eq!(a.enter(-1).await.1, ResultCode::INVALID_ROOM);
    assert_eq!(a.enter(10).await.1, ResultCode::INVALID_ROOM);
    let (list, code) = a.enter(3).await;
    assert_eq!(code, ResultCode::OK);
    assert_eq!(list.iter().map(|u| u.1.as_str()).collect::<Vec<_>>(), vec!["amy"]);
    let amy_uid = list[0].0;
    let (list, code) = b.enter(3).await;
    assert_eq!(code, ResultCode::OK);
    assert_eq!(
        list.iter().map(|u| u.1.as_str()).collect::<Vec<_>>(),
        vec!["amy", "bob"]
    );
    assert_eq!(list[0].0, amy_uid);
    let bob_uid = list[1].0;
    assert_eq!(
        a.recv().await,
        Event::RoomNewUser {
            uid: bob_uid,
            name: "bob".into()
        }
    );
    assert_eq!(c.enter(3).await.1, ResultCode::ROOM_FULL);
    assert_eq!(b.enter(4).await.1, ResultCode::NOT_IN_LOBBY);

    // Chat: the sender's response first, then the notify to every member.
    assert_eq!(
        b.call(chat("hi all")).await,
        Event::RoomChatResult(ResultCode::OK)
    );
    let notify = Event::RoomChat {
        name: "bob".into(),
        message: "hi all".into(),
    };
    assert_eq!(b.recv().await, notify);
    assert_eq!(a.recv().await, notify);
    assert_eq!(
        c.call(chat("x")).await,
        Event::RoomChatResult(ResultCode::USER_IN_LOBBY)
    );
    assert_eq!(
        c.call(Request::RoomLeave).await,
        Event::RoomLeaveResult(ResultCode::USER_NOT_IN_ROOM)
    );

    // Leave: the others are told, then the response.
    assert_eq!(
        b.call(Request::RoomLeave).await,
        Event::RoomLeaveResult(ResultCode::OK)
    );
    assert_eq!(a.recv().await, Event::RoomLeaveUser { uid: bob_uid });

    // Disconnecting from a room tells the others too.
    assert_eq!(c.enter(3).await.1, ResultCode::OK);
    assert!(matches!(a.recv().await, Event::RoomNewUser { .. }));
    drop(a);
    assert_eq!(c.recv().await, Event::RoomLeaveUser { uid: amy_uid });
}

#[tokio::test]
async fn whisper_broadcast_echo_ping_and_user_list_pages() {
    let server = TestServer::start().await;
    let mut a = server.user("amy").await;
    let mut b = server.user("bob").await;
    assert_eq!(
        a.call(Request::Whisper {
            to: "bob".into(),
            message: "psst".into()
        })
        .await,
        Event::WhisperResult(ResultCode::OK)
    );
    assert_eq!(
        b.recv().await,
        Event::Whisper {
            from: "amy".into(),
            message: "psst".into()
        }
    );
    assert_eq!(
        a.call(Request::Whisper {
            to: "ghost".into(),
            message: "?".into()
        })
        .await,
        Event::WhisperResult(ResultCode::USER_NOT_FOUND)
    );
    assert_eq!(
        b.call(Request::Broadcast {
            message: "all hands".into()
        })
        .await,
        Event::BroadcastResult(ResultCode::OK)
    );
    let bc = Event::Broadcast {
        from: "bob".into(),
        message: "all hands".into(),
    };
    assert_eq!(a.recv().await, bc);
    assert_eq!(b.recv().await, bc);
    assert_eq!(
        a.call(Request::Echo {
            payload: vec![1, 2, 3]
        })
        .await,
        Event::EchoResult {
            result: ResultCode::OK,
            payload: vec![1, 2, 3]
        }
    );
    assert_eq!(
        a.call(Request::Ping { nonce: 42 }).await,
        Event::Pong { nonce: 42 }
    );

    // 150 more users: the list comes in pages of 100, sorted.
    let mut others = Vec::new();
    for i in 0..150 {
        others.push(server.user(&format!("u{i:03}")).await);
    }
    let mut after = String::new();
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let Event::UserList {
            result,
            total,
            names: page,
            more,
        } = a.call(Request::UserList { after: after.clone() }).await
        else {
            panic!("expected a user list")
        };
        assert_eq!((result, total), (ResultCode::OK, 152));
        pages += 1;
        names.extend(page);
        if !more {
            break;
        }
        after = names.last().unwrap().clone();
    }
    assert_eq!(pages, 2);
    assert_eq!(names.len(), 152);
    assert!(names.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn logout_leaves_the_room_and_keeps_the_connection() {
    let server = TestServer::start().await;
    let mut a = server.user("amy").await;
    let mut b = server.user("bob").await;
    a.enter(0).await;
    let (list, _) = b.enter(0).await;
    let bob_uid = list[1].0;
    a.recv().await; // bob joined
    assert_eq!(b.call(Request::Logout).await, Event::LogoutResult(ResultCode::OK));
    assert_eq!(a.recv().await, Event::RoomLeaveUser { uid: bob_uid });
    // A guest is in no room: the seed's answer to its chat is 82.
    assert_eq!(
        b.call(chat("x")).await,
        Event::RoomChatResult(ResultCode::USER_IN_LOBBY)
    );
    b.login("bob", "pw").await; // same connection
}

#[tokio::test]
async fn moderation_needs_admin_and_kick_and_mute_are_enforced() {
    let server = TestServer::with(|s| {
        s.admin_secret_file = None;
    })
    .await;
    let mut op = server.user("op").await;
    let mut amy = server.user("amy").await;
    let mut bob = server.user("bob").await;
    for (req, expect) in [
        (
            Request::Kick { name: "amy".into() },
            Event::KickResult(ResultCode::NOT_ADMIN),
        ),
        (
            Request::Mute {
                name: "amy".into(),
                seconds: 60,
            },
            Event::MuteResult(ResultCode::NOT_ADMIN),
        ),
        (Request::Shutdown, Event::ShutdownResult(ResultCode::NOT_ADMIN)),
        (
            Request::Admin {
                secret: "guess".into(),
            },
            Event::AdminResult(ResultCode::NOT_ADMIN),
        ),
    ] {
        assert_eq!(op.call(req).await, expect);
    }
    drop(op);
    drop((amy, bob));
    let dir = server.dir.clone();
    let mut running = server.running;
    running.shutdown().await;
    within("stop", running.wait()).await;

    // An operator grants the role offline; the account survives a restart.
    Accounts::open(dir.path(), TEST_HASH)
        .unwrap()
        .set_admin("op", true)
        .unwrap();
    let server = TestServer::in_dir(dir, |_| {}).await;
    let mut op = server.client().await;
    op.login("op", "pw").await;
    amy = server.client().await;
    amy.login("amy", "pw").await;
    bob = server.client().await;
    bob.login("bob", "pw").await;
    assert_eq!(
        op.call(Request::Admin {
            secret: String::new()
        })
        .await,
        Event::AdminResult(ResultCode::OK)
    );

    // Mute: the target is told; chat, whisper and broadcast are refused.
    assert_eq!(amy.enter(1).await.1, ResultCode::OK);
    let (list, _) = bob.enter(1).await;
    let amy_uid = list[0].0;
    amy.recv().await; // bob joined
    assert_eq!(
        op.call(Request::Mute {
            name: "amy".into(),
            seconds: 3600
        })
        .await,
        Event::MuteResult(ResultCode::OK)
    );
    assert_eq!(amy.recv().await, Event::Muted { seconds: 3600 });
    assert_eq!(
        amy.call(chat("x")).await,
        Event::RoomChatResult(ResultCode::MUTED)
    );
    assert_eq!(
        amy.call(Request::Whisper {
            to: "bob".into(),
            message: "x".into()
        })
        .await,
        Event::WhisperResult(ResultCode::MUTED)
    );
    assert_eq!(
        amy.call(Request::Broadcast { message: "x".into() }).await,
        Event::BroadcastResult(ResultCode::MUTED)
    );
    assert_eq!(
        op.call(Request::Mute {
            name: "amy".into(),
            seconds: 0
        })
        .await,
        Event::MuteResult(ResultCode::OK)
    );
    assert_eq!(amy.recv().await, Event::Muted { seconds: 0 });
    assert_eq!(
        amy.call(chat("free")).await,
        Event::RoomChatResult(ResultCode::OK)
    );
    amy.recv().await;
    bob.recv().await;

    // Kick: the target is told, then disconnected; its room sees it leave.
    assert_eq!(
        op.call(Request::Kick { name: "amy".into() }).await,
        Event::KickResult(ResultCode::OK)
    );
    assert_eq!(amy.until_closed().await, vec![Event::Kicked { by: "op".into() }]);
    assert_eq!(bob.recv().await, Event::RoomLeaveUser { uid: amy_uid });
    assert_eq!(
        op.call(Request::Kick { name: "amy".into() }).await,
        Event::KickResult(ResultCode::USER_NOT_FOUND)
    );
}

#[tokio::test]
async fn admin_secret_elevates_and_shutdown_flushes_every_acknowledged_message() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "let-me-in\n").unwrap();
    let path = secret.path().to_owned();
    let server = TestServer::with(move |s| s.admin_secret_file = Some(path)).await;
    let mut op = server.user("op").await;
    let mut talker = server.user("talker").await;
    let mut listener = server.user("listener").await;
    talker.enter(7).await;
    listener.enter(7).await;
    talker.recv().await; // listener joined
    assert_eq!(
        op.call(Request::Admin {
            secret: "let-me-in".into()
        })
        .await,
        Event::AdminResult(ResultCode::OK)
    );
    // Pipeline many chats without waiting, then shut down: every message
    // the server acknowledged must reach both members before the close.
    const N: usize = 300;
    for i in 0..N {
        talker.send(chat(&format!("m{i}"))).await;
    }
    let mut running = server.running;
    op.send(Request::Shutdown).await;
    let acked = talker
        .until_closed()
        .await
        .into_iter()
        .filter(|e| *e == Event::RoomChatResult(ResultCode::OK))
        .count();
    let heard: Vec<Event> = listener
        .until_closed()
        .await
        .into_iter()
        .filter(|e| matches!(e, Event::RoomChat { .. }))
        .collect();
    assert!(acked > 0);
    assert!(
        heard.len() >= acked,
        "acknowledged {acked}, delivered {}",
        heard.len()
    );
    for (i, e) in heard.iter().enumerate() {
        assert_eq!(
            *e,
            Event::RoomChat {
                name: "talker".into(),
                message: format!("m{i}")
            }
        );
    }
    let op_saw = op.until_closed().await;
    assert_eq!(op_saw[0], Event::ShutdownResult(ResultCode::OK));
    assert!(matches!(op_saw[1], Event::Notice { .. }));
    within("server exit", running.wait()).await;
    // The port is closed.
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn a_login_abandoned_mid_check_never_locks_the_name() {
    let server = TestServer::start().await;
    server.user("amy").await.send(Request::Logout).await;
    for _ in 0..20 {
        let mut c = server.client().await;
        c.send(Request::Login {
            name: "amy".into(),
            password: "pw".into(),
        })
        .await;
        drop(c); // gone while the check is pending (or just after)
    }
    // The name is freed when the server processes those disconnects, which
    // may come after this client's first attempt: retry (each try is a full
    // round trip, bounded) on LOGIN_ALREADY only. Never freeing it fails.
    let mut c = server.client().await;
    let code = retry_while(ResultCode::LOGIN_ALREADY, async || c.try_login("amy", "pw").await).await;
    assert_eq!(code, ResultCode::OK);
}

#[tokio::test]
async fn racing_logins_of_one_name_exactly_one_wins() {
    let server = TestServer::start().await;
    server.user("amy").await.send(Request::Logout).await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(server.client().await);
    }
    // Everyone sends before anyone reads.
    for c in &mut clients {
        c.send(Request::Login {
            name: "amy".into(),
            password: "pw".into(),
        })
        .await;
    }
    let mut ok = 0;
    for c in &mut clients {
        match c.login_result().await {
            ResultCode::OK => ok += 1,
            ResultCode::LOGIN_ALREADY => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test]
async fn kick_racing_a_room_enter_leaves_the_room_consistent() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "s").unwrap();
    let path = secret.path().to_owned();
    let server = TestServer::with(move |s| s.admin_secret_file = Some(path)).await;
    let mut op = server.user("op").await;
    op.call(Request::Admin { secret: "s".into() }).await;
    let mut watcher = server.user("watcher").await;
    watcher.enter(2).await;
    let mut target = server.user("target").await;
    // Both in flight at once: the enter and the kick.
    target.send(Request::RoomEnter { room: 2 }).await;
    op.send(Request::Kick {
        name: "target".into(),
    })
    .await;
    assert_eq!(op.recv().await, Event::KickResult(ResultCode::OK));
    let seen = target.until_closed().await;
    assert!(seen.contains(&Event::Kicked { by: "op".into() }));
    // Whatever the order, the watcher ends up alone: if it saw the target
    // join, it also saw it leave.
    let mut joined = 0i32;
    watcher.send(Request::Ping { nonce: 1 }).await;
    loop {
        match watcher.recv().await {
            Event::RoomNewUser { .. } => joined += 1,
            Event::RoomLeaveUser { .. } => joined -= 1,
            Event::Pong { nonce: 1 } if joined == 0 => break,
            Event::Pong { .. } => watcher.send(Request::Ping { nonce: 1 }).await,
            other => panic!("unexpected {other:?}"),
        }
    }
    let (list, _) = server.user("late").await.enter(2).await;
    let names: Vec<&str> = list.iter().map(|u| u.1.as_str()).collect();
    assert_eq!(names, vec!["watcher", "late"]);
}

#[tokio::test]
async fn bad_requests_get_result_codes_and_internal_ids_reach_nothing() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    // The seeds' internal ids: 11/12 (connect/disconnect) and 1002 (a forged
    // "store says OK" reply, seed 000's login bypass).
    for pid in [11u16, 12, 1001, 1002] {
        let mut f = vec![7, 0];
        f.extend_from_slice(&pid.to_le_bytes());
        f.extend_from_slice(&[0, 0, 0]);
        c.send_raw(&f).await;
        assert_eq!(
            c.recv().await,
            Event::RequestError {
                request_id: pid,
                result: ResultCode::UNKNOWN_PACKET
            }
        );
    }
    assert_eq!(
        c.call(chat("x")).await,
        Event::RoomChatResult(ResultCode::USER_IN_LOBBY)
    );
    // A login with a short body is malformed, not a crash.
    c.send_raw(&[9, 0, 201, 0, 0, b'a', b'b', 0, 0]).await;
    assert_eq!(c.recv().await, Event::LoginResult(ResultCode::BAD_REQUEST));
    // Still connected and usable.
    assert_eq!(c.call(Request::Ping { nonce: 7 }).await, Event::Pong { nonce: 7 });
    // A declared length over the cap disconnects.
    c.send_raw(&[0xFF, 0xFF, 201, 0, 0]).await;
    assert!(c.until_closed().await.is_empty());
    // A length below the header disconnects.
    let mut d = server.client().await;
    d.send_raw(&[2, 0, 201, 0, 0]).await;
    assert!(d.until_closed().await.is_empty());
    let mut e = TestClient::connect(server.addr).await;
    assert_eq!(e.call(Request::Ping { nonce: 1 }).await, Event::Pong { nonce: 1 });
}

#[tokio::test]
async fn sigterm_style_shutdown_notifies_clients_and_restart_keeps_accounts() {
    let server = TestServer::start().await;
    let mut a = server.user("amy").await;
    // Bob's session is resumed once, so his token is a swapped one, written
    // the way token writes are (batched by the store's token writer, on disk
    // within a second or at a clean stop): it must still work after the
    // restart.
    let bob = server.user("bob").await;
    let token = bob.token.clone().expect("a token after login");
    drop(bob);
    let mut bob = server.client().await;
    // 31 while the old connection's close is still on its way.
    let code = retry_while(ResultCode::LOGIN_ALREADY, async || {
        bob.try_resume("bob", &token).await
    })
    .await;
    assert_eq!(code, ResultCode::OK);
    let token = bob.token.clone().expect("a new token after a resume");
    let dir = server.dir.clone();
    let mut running = server.running;
    running.shutdown().await;
    let seen = a.until_closed().await;
    assert_eq!(
        seen,
        vec![Event::Notice {
            message: "server is shutting down".into()
        }]
    );
    within("exit", running.wait()).await;
    let server = TestServer::in_dir(dir, |_| {}).await;
    let mut b = server.client().await;
    b.login("amy", "pw").await;
    assert_eq!(
        b.try_login("amy", "pw").await,
        ResultCode::SESSION_ALREADY_LOGGED_IN
    );
    drop(bob);
    let mut bob = server.client().await;
    assert_eq!(
        bob.try_resume("bob", &token).await,
        ResultCode::OK,
        "the token survives the restart"
    );
}
