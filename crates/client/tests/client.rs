//! plaza-client and the `plaza` binary against a real server.

use std::process::Command;

use plaza_client::PlazaClient;
use plaza_proto::{Event, Request, ResultCode};
use plaza_test_support::{TestServer, run_command, within};

#[tokio::test]
async fn every_request_type_resolves_to_its_response() {
    let secret = tempfile_path("s3cret");
    let path = secret.clone();
    let server = TestServer::with(move |s| s.admin_secret_file = Some(path)).await;
    let (amy, mut amy_notes) = PlazaClient::connect(server.addr).await.unwrap();
    let ok = |e: Event| PlazaClient::result_of(&e);
    for name in ["amy", "bob"] {
        let r = amy
            .request(Request::Register {
                name: name.into(),
                password: "pw".into(),
            })
            .await
            .unwrap();
        assert_eq!(ok(r), ResultCode::OK);
    }
    assert_eq!(amy.login("amy", "pw").await.unwrap(), ResultCode::OK);
    let (bob, mut bob_notes) = PlazaClient::connect(server.addr).await.unwrap();
    assert_eq!(bob.login("bob", "pw").await.unwrap(), ResultCode::OK);

    let (code, members) = amy.enter(4).await.unwrap();
    assert_eq!(code, ResultCode::OK);
    assert_eq!(
        members.iter().map(|m| m.1.as_str()).collect::<Vec<_>>(),
        vec!["amy"]
    );
    let (_, members) = bob.enter(4).await.unwrap();
    assert_eq!(members.len(), 2);
    let next = async |n: &mut plaza_client::Notifications| within("a notification", n.recv()).await.unwrap();
    assert!(matches!(next(&mut amy_notes).await, Event::ResumeToken { .. }));
    // She opened the room: she is its operator.
    assert!(matches!(
        next(&mut amy_notes).await,
        Event::RoomRole { roles: 1, .. }
    ));
    assert!(matches!(next(&mut amy_notes).await, Event::RoomNewUser { .. }));

    assert_eq!(
        ok(bob
            .request(Request::RoomChat { message: "hi".into() })
            .await
            .unwrap()),
        ResultCode::OK
    );
    assert_eq!(
        next(&mut amy_notes).await,
        Event::RoomMessage {
            room: 4,
            seq: 1,
            name: "bob".into(),
            message: "hi".into()
        }
    );
    assert_eq!(
        ok(amy
            .request(Request::Whisper {
                to: "bob".into(),
                message: "psst".into()
            })
            .await
            .unwrap()),
        ResultCode::OK
    );
    assert!(matches!(next(&mut bob_notes).await, Event::ResumeToken { .. }));
    // The room's operator, told as he entered: amy.
    assert!(matches!(next(&mut bob_notes).await, Event::RoomRole { by, .. } if by.is_empty()));
    assert_eq!(
        next(&mut bob_notes).await,
        Event::RoomMessage {
            room: 4,
            seq: 1,
            name: "bob".into(),
            message: "hi".into()
        }
    );
    assert_eq!(
        next(&mut bob_notes).await,
        Event::Whisper {
            from: "amy".into(),
            message: "psst".into()
        }
    );
    assert_eq!(
        ok(amy
            .request(Request::Broadcast {
                message: "all".into()
            })
            .await
            .unwrap()),
        ResultCode::OK
    );
    let (code, users) = amy.users().await.unwrap();
    assert_eq!(
        (code, users),
        (ResultCode::OK, vec!["amy".to_string(), "bob".to_string()])
    );
    assert_eq!(
        amy.request(Request::Echo {
            payload: b"x".to_vec()
        })
        .await
        .unwrap(),
        Event::EchoResult {
            result: ResultCode::OK,
            payload: b"x".to_vec()
        }
    );
    assert_eq!(
        amy.request(Request::Ping { nonce: 5 }).await.unwrap(),
        Event::Pong { nonce: 5 }
    );
    assert_eq!(
        ok(amy.request(Request::Kick { name: "bob".into() }).await.unwrap()),
        ResultCode::NOT_ADMIN
    );
    assert_eq!(
        ok(amy
            .request(Request::Admin {
                secret: "s3cret".into()
            })
            .await
            .unwrap()),
        ResultCode::OK
    );
    assert_eq!(
        ok(amy
            .request(Request::Mute {
                name: "bob".into(),
                seconds: 60
            })
            .await
            .unwrap()),
        ResultCode::OK
    );
    assert_eq!(
        ok(amy.request(Request::Kick { name: "bob".into() }).await.unwrap()),
        ResultCode::OK
    );
    assert_eq!(ok(amy.request(Request::RoomLeave).await.unwrap()), ResultCode::OK);
    assert_eq!(ok(amy.request(Request::Logout).await.unwrap()), ResultCode::OK);
    // Resume with the token from the login.
    let token = amy.token().expect("token");
    assert_eq!(amy.resume("amy", &token).await.unwrap(), ResultCode::OK);
    assert_ne!(amy.token().unwrap(), token);
    assert_eq!(
        ok(amy.request(Request::Shutdown).await.unwrap()),
        ResultCode::NOT_ADMIN,
        "admin ends with logout"
    );
    amy.close().await;
}

/// The library keeps its place in the room; after a real drop (a relay
/// cut), a new connection resumes and rejoins there, and the messages it
/// missed come onto the notification stream, in order, once.
#[tokio::test]
async fn a_client_rejoins_its_room_where_it_left_off_after_a_drop() {
    let server = TestServer::start().await;
    let relay = plaza_test_support::Relay::start(server.addr).await;
    let (amy, mut notes) = PlazaClient::connect(relay.addr).await.unwrap();
    let register = Request::Register {
        name: "amy".into(),
        password: "pw".into(),
    };
    assert_eq!(
        PlazaClient::result_of(&amy.request(register).await.unwrap()),
        ResultCode::OK
    );
    assert_eq!(amy.login("amy", "pw").await.unwrap(), ResultCode::OK);
    assert_eq!(amy.enter(2).await.unwrap().0, ResultCode::OK);
    let mut bob = server.user("bob").await;
    bob.enter(2).await;
    bob.say("a").await;
    let heard = |seq: u64, text: &str| Event::RoomMessage {
        room: 2,
        seq,
        name: "bob".into(),
        message: text.into(),
    };
    let next = async |n: &mut plaza_client::Notifications| loop {
        match within("a notification", n.recv()).await.unwrap() {
            Event::ResumeToken { .. } | Event::RoomNewUser { .. } | Event::RoomRole { .. } => {}
            e => return e,
        }
    };
    assert_eq!(next(&mut notes).await, heard(1, "a"));
    let at = amy.position().expect("in a room");
    assert_eq!((at.room, at.seq), (2, 1));

    relay.cut();
    assert!(matches!(next(&mut notes).await, Event::Notice { .. }), "the drop");
    // The server has seen amy go; her seat is held (bob hears no leave).
    server.until_status("users_away", 1).await;
    bob.say("b").await;
    bob.say("c").await;

    let token = amy.token().unwrap();
    let (amy, mut notes) = PlazaClient::connect(relay.addr).await.unwrap();
    assert_eq!(amy.resume("amy", &token).await.unwrap(), ResultCode::OK);
    let back = amy.rejoin(at).await.unwrap();
    assert_eq!((back.result, back.replayed, back.gap), (ResultCode::OK, 2, false));
    assert!(back.members.iter().any(|(_, n)| n == "bob"));
    assert_eq!(next(&mut notes).await, heard(2, "b"));
    assert_eq!(next(&mut notes).await, heard(3, "c"));
    assert_eq!(amy.position().map(|p| p.seq), Some(3));
    bob.say("d").await;
    assert_eq!(next(&mut notes).await, heard(4, "d"));
    // Bob never heard amy leave or come back.
    assert_eq!(
        bob.ask(Request::Ping { nonce: 1 }).await,
        Event::Pong { nonce: 1 },
        "no presence news before the pong"
    );
}

fn tempfile_path(content: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("plaza-client-test-{}", std::process::id()));
    std::fs::write(&path, content).unwrap();
    path
}

#[tokio::test]
async fn the_terminal_client_runs_scripted_from_stdin() {
    let server = TestServer::start().await;
    let mut bob = server.user("bob").await;
    bob.enter(2).await;
    let addr = server.addr.to_string();
    let script = "pw\n/join 2\nhello from the script\n/users\n/w bob psst\n/w ghost hi\n/echo ping\n/nonsense\n\
                  /mode t\n/join 5\n/mode tm 3 beer\n/quit\n";
    let mut chat = Command::new(env!("CARGO_BIN_EXE_plaza"));
    chat.args(["chat", "--server", &addr, "--user", "carol", "--register"]);
    let out = run_command(chat, script.as_bytes()).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "ok: registered carol",
        "logged in as carol",
        "ok: in room 2 with bob, carol",
        "ok: sent",
        "2 users: bob, carol",
        "ok: whispered to bob",
        "error: whisper to ghost failed: no such user is logged in (107)",
        "echo: ping",
        "unknown command /nonsense",
        // bob opened room 2, carol room 5: its operator.
        "error: mode failed: you are not an operator of your room (117)",
        "ok: in room 5 with carol",
        "* carol set the room's modes: only operators set the topic, only operators and voiced members speak, at most 3 members, key beer",
        "ok: modes set",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // Bob saw carol arrive, chat and whisper.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(bob.recv().await);
    }
    assert!(matches!(&seen[0], Event::RoomNewUser { name, .. } if name == "carol"));
    assert_eq!(
        seen[1],
        Event::RoomChat {
            name: "carol".into(),
            message: "hello from the script".into()
        }
    );
    assert_eq!(
        seen[2],
        Event::Whisper {
            from: "carol".into(),
            message: "psst".into()
        }
    );
}
