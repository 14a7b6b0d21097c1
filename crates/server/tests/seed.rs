//! A client written from the seeds' byte layouts (login 201, rooms 206-217,
//! chat 221-223) sees nothing but the seed's packets, and the seed's answers.

use plaza_proto::{Event, Request, ResultCode, id};
use plaza_test_support::{TestClient, TestServer, within};

/// Every packet id a seed client knows.
const SEED_IDS: [u16; 9] = [
    id::LOGIN_RESPONSE,
    id::ROOM_ENTER_RESPONSE,
    id::ROOM_NEW_USER_NOTIFY,
    id::ROOM_USER_LIST_NOTIFY,
    id::ROOM_LEAVE_RESPONSE,
    id::ROOM_LEAVE_USER_NOTIFY,
    id::ROOM_CHAT_RESPONSE,
    id::ROOM_CHAT_NOTIFY,
    // The seed client's PING is Plaza's; it only sends it if it knows it.
    id::PONG_RESPONSE,
];

/// Reads raw frames until the server closes, failing on any id a seed
/// client would not know.
async fn seed_frames_until_closed(c: &mut TestClient) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(f) = c.try_recv_raw().await {
        let pid = plaza_proto::packet_id(&f);
        assert!(SEED_IDS.contains(&pid), "a seed client got packet {pid}");
        events.push(Event::decode(&f).unwrap());
    }
    events
}

#[tokio::test]
async fn a_seed_client_gets_only_seed_packets_and_seed_codes() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "s3cret\n").unwrap();
    let path = secret.path().to_owned();
    let server = TestServer::with(move |s| s.admin_secret_file = Some(path)).await;
    server.user("seed").await;
    let mut op = server.user("op").await;
    let mut seed = TestClient::connect_seed(server.addr).await;

    // Before login, the seed server's codes: 53, 13, 82.
    assert_eq!(
        seed.call(Request::RoomEnter { room: 1 }).await,
        Event::RoomEnterResult(ResultCode::NOT_IN_LOBBY)
    );
    assert_eq!(
        seed.call(Request::RoomLeave).await,
        Event::RoomLeaveResult(ResultCode::USER_NOT_IN_ROOM)
    );
    assert_eq!(
        seed.call(Request::RoomChat { message: "x".into() }).await,
        Event::RoomChatResult(ResultCode::USER_IN_LOBBY)
    );
    // Login: 202 and nothing after it (no resume token, 337).
    seed.send(Request::Login {
        name: "seed".into(),
        password: "pw".into(),
    })
    .await;
    assert_eq!(seed.recv().await, Event::LoginResult(ResultCode::OK));
    assert_eq!(seed.enter(1).await.1, ResultCode::OK);
    op.enter(1).await;
    assert!(matches!(seed.recv().await, Event::RoomNewUser { .. }));

    // What Plaza users do around it reaches it only in the seed's packets.
    assert_eq!(
        op.call(Request::Broadcast {
            message: "all".into()
        })
        .await,
        Event::BroadcastResult(ResultCode::OK)
    );
    assert!(matches!(op.recv().await, Event::Broadcast { .. }));
    assert_eq!(
        op.call(Request::Whisper {
            to: "seed".into(),
            message: "psst".into()
        })
        .await,
        Event::WhisperResult(ResultCode::UNREACHABLE)
    );
    assert_eq!(
        op.call(Request::RoomChat { message: "hi".into() }).await,
        Event::RoomChatResult(ResultCode::OK)
    );
    assert!(matches!(op.recv().await, Event::RoomChat { .. }));
    let ctl = server.control().await;
    let r = ctl
        .cmd(plaza_server::control::Command::Notice {
            room: None,
            message: "maintenance soon".into(),
            local: false,
        })
        .await;
    assert_eq!(r.data["delivered_to"], 1, "the notice went to op only");
    assert!(matches!(op.recv().await, Event::Notice { .. }));
    assert_eq!(
        op.call(Request::Admin {
            secret: "s3cret".into()
        })
        .await,
        Event::AdminResult(ResultCode::OK)
    );
    op.send(Request::Shutdown).await;
    let events = within("the seed client's close", seed_frames_until_closed(&mut seed)).await;
    assert!(
        events.contains(&Event::RoomChat {
            name: "op".into(),
            message: "hi".into()
        }),
        "{events:?}"
    );
}
