//! Room history over the wire: sequence numbers, a rejoin after a drop
//! that replays what was missed exactly once, the gap marker, scrollback
//! pages; over TCP and over WebSocket, and across two cluster nodes.

use std::net::SocketAddr;

use plaza_proto::{Conn, Endpoint, Event, Page, Replay, Request, ResultCode, features};
use plaza_test_support::{RedisServer, TestClient, TestServer, retry_while, within};

const ROOM: i32 = 5;

/// A client with history on, over TCP or WebSocket, as `name`: registered
/// and logged in, or (with the token of an earlier login) resumed. Returns
/// it and its next resume token.
async fn member(at: SocketAddr, websocket: bool, name: &str, resume: Option<String>) -> (Conn, String) {
    let mut c = connect(at, websocket).await;
    let login = match resume {
        Some(token) => Request::Resume {
            name: name.into(),
            token,
        },
        None => {
            let register = Request::Register {
                name: name.into(),
                password: "pw".into(),
            };
            assert_eq!(
                call(&mut c, register).await,
                Event::RegisterResult(ResultCode::OK)
            );
            Request::Login {
                name: name.into(),
                password: "pw".into(),
            }
        }
    };
    assert_eq!(call(&mut c, login).await, Event::LoginResult(ResultCode::OK));
    let Event::ResumeToken { token, .. } = next(&mut c).await else {
        panic!("a resume token after the login")
    };
    (c, token)
}

/// A connection that said HELLO with history on.
async fn connect(at: SocketAddr, websocket: bool) -> Conn {
    let endpoint = Endpoint {
        target: at.into(),
        websocket,
    };
    let mut c = within("connect", endpoint.connect(None)).await.expect("connect");
    let hello = Request::Hello {
        version: 1,
        features: features::NOTIFICATIONS | features::HISTORY,
    };
    assert!(matches!(
        call(&mut c, hello).await,
        Event::Hello { features: 3, .. }
    ));
    c
}

async fn call(c: &mut Conn, r: Request) -> Event {
    within("an answer", c.call(r)).await.expect("the connection")
}

async fn next(c: &mut Conn) -> Event {
    within("an event", c.next()).await.expect("the connection")
}

/// The next room message, past presence news.
async fn message(c: &mut Conn) -> Event {
    loop {
        match next(c).await {
            Event::RoomUserList { .. } | Event::RoomNewUser { .. } | Event::RoomLeaveUser { .. } => {}
            e => return e,
        }
    }
}

/// Sends `r` and returns what came up to and including its answer,
/// leaving out member lists and presence news.
async fn until_answer(c: &mut Conn, r: Request) -> Vec<Event> {
    c.send(r).await.expect("send");
    let mut got = Vec::new();
    loop {
        match next(c).await {
            Event::RoomUserList { .. }
            | Event::RoomNewUser { .. }
            | Event::RoomLeaveUser { .. }
            | Event::RoomRole { .. } => {}
            e if e.is_response() => {
                got.push(e);
                return got;
            }
            e => got.push(e),
        }
    }
}

fn msg(seq: u64, text: &str) -> Event {
    Event::RoomMessage {
        room: ROOM as u32,
        seq,
        name: "amy".into(),
        message: text.into(),
    }
}

/// A cluster node on `redis` with the default settings otherwise.
async fn cluster_node(redis: &RedisServer) -> TestServer {
    let url = redis.url();
    TestServer::with(move |s| {
        s.store = Some(url);
        s.cluster = Some(true);
    })
    .await
}

/// Enters the room and learns its epoch and next sequence number.
async fn enter(c: &mut Conn) -> Replay {
    assert_eq!(
        until_answer(c, Request::RoomEnter { room: ROOM }).await,
        [Event::RoomEnterResult(ResultCode::OK)]
    );
    let position = Request::History {
        page: Page::Latest,
        limit: 0,
    };
    match until_answer(c, position).await.as_slice() {
        [Event::History(r)] => *r,
        other => panic!("{other:?}"),
    }
}

async fn drop_and_rejoin(websocket: bool) {
    let server = TestServer::with(|s| s.ws_bind = Some("127.0.0.1:0".parse().unwrap())).await;
    let bob_at = if websocket {
        server.running.ws_addr().unwrap()
    } else {
        server.addr
    };
    let mut amy = server.user("amy").await;
    amy.enter(ROOM).await;
    let (mut bob, token) = member(bob_at, websocket, "bob", None).await;
    let at = enter(&mut bob).await;
    amy.say("before").await;
    let seen = next(&mut bob).await;
    assert_eq!(seen, msg(at.next, "before"));

    // Bob's connection drops; the room talks on.
    drop(bob);
    for text in ["one", "two", "three"] {
        amy.say(text).await;
    }

    let (mut bob, _) = member(bob_at, websocket, "bob", Some(token)).await;
    let back = Request::RoomRejoin {
        room: ROOM,
        epoch: at.epoch,
        after: at.next,
    };
    let s = at.next;
    let marker = Replay {
        result: ResultCode::OK,
        epoch: at.epoch,
        first: 1,
        next: s + 4,
        count: 3,
        gap: false,
    };
    assert_eq!(
        until_answer(&mut bob, back).await,
        [
            msg(s + 1, "one"),
            msg(s + 2, "two"),
            msg(s + 3, "three"),
            Event::Rejoin(marker)
        ]
    );
    // Live again, from the next number on, once.
    amy.say("four").await;
    assert_eq!(
        until_answer(&mut bob, Request::Ping { nonce: 9 }).await,
        [msg(s + 4, "four"), Event::Pong { nonce: 9 }]
    );
}

#[tokio::test]
async fn a_member_who_drops_rejoins_its_room_and_gets_what_it_missed_once_over_tcp() {
    drop_and_rejoin(false).await;
}

#[tokio::test]
async fn a_member_who_drops_rejoins_its_room_and_gets_what_it_missed_once_over_websocket() {
    drop_and_rejoin(true).await;
}

#[tokio::test]
async fn past_the_history_bound_the_rejoin_says_there_is_a_gap() {
    let server = TestServer::with(|s| s.history_messages = Some(2)).await;
    let mut amy = server.user("amy").await;
    amy.enter(ROOM).await;
    let (mut bob, token) = member(server.addr, false, "bob", None).await;
    let at = enter(&mut bob).await;
    drop(bob);
    for text in ["one", "two", "three", "four"] {
        amy.say(text).await;
    }
    let (mut bob, _) = member(server.addr, false, "bob", Some(token)).await;
    let back = Request::RoomRejoin {
        room: ROOM,
        epoch: at.epoch,
        after: at.next - 1,
    };
    let got = until_answer(&mut bob, back).await;
    assert_eq!(got[..2], [msg(3, "three"), msg(4, "four")]);
    assert_eq!(
        got[2],
        Event::Rejoin(Replay {
            result: ResultCode::OK,
            epoch: at.epoch,
            first: 3,
            next: 5,
            count: 2,
            gap: true,
        })
    );
}

#[tokio::test]
async fn scrollback_pages_through_the_room_history() {
    let server = TestServer::start().await;
    let mut amy = server.user("amy").await;
    amy.enter(ROOM).await;
    for i in 1..=30 {
        amy.say(&format!("m{i}")).await;
    }
    let (mut bob, _) = member(server.addr, false, "bob", None).await;
    enter(&mut bob).await;
    let mut page = async |page, limit| {
        let got = until_answer(&mut bob, Request::History { page, limit }).await;
        let (answer, msgs) = got.split_last().unwrap();
        let seqs: Vec<u64> = msgs
            .iter()
            .map(|e| match e {
                Event::RoomMessage { seq, message, .. } => {
                    assert_eq!(*message, format!("m{seq}"));
                    *seq
                }
                other => panic!("{other:?}"),
            })
            .collect();
        (seqs, answer.clone())
    };
    assert_eq!(page(Page::Latest, 10).await.0, (21..=30).collect::<Vec<_>>());
    assert_eq!(page(Page::Before(21), 10).await.0, (11..=20).collect::<Vec<_>>());
    assert_eq!(page(Page::After(5), 3).await.0, [6, 7, 8]);
    let (seqs, answer) = page(Page::Before(3), 10).await;
    assert_eq!(seqs, [1, 2]);
    assert!(matches!(
        answer,
        Event::History(Replay {
            first: 1,
            next: 31,
            count: 2,
            gap: false,
            ..
        })
    ));
}

/// In a room with members on two nodes the cluster numbers the messages:
/// both nodes deliver the same numbers, and a member who drops on one node
/// and comes back on the other gets exactly what it missed, once.
#[tokio::test]
async fn a_shared_room_has_one_numbering_and_a_rejoin_on_another_node_replays_it() {
    let redis = RedisServer::start().await;
    let (a, b) = (cluster_node(&redis).await, cluster_node(&redis).await);
    let mut amy = a.user("amy").await;
    amy.enter(ROOM).await;
    let (mut cat, _) = member(b.addr, false, "cat", None).await;
    enter(&mut cat).await;
    let (mut bob, token) = member(a.addr, false, "bob", None).await;
    enter(&mut bob).await;
    amy.say("one").await;
    let Event::RoomMessage { seq, .. } = message(&mut bob).await else {
        panic!("amy's message")
    };
    assert_eq!(
        message(&mut cat).await,
        msg(seq, "one"),
        "the same number on both nodes"
    );
    let position = Request::History {
        page: Page::Latest,
        limit: 0,
    };
    let [Event::History(at)] = until_answer(&mut bob, position.clone()).await[..] else {
        panic!("bob's position")
    };
    let [Event::History(at_b)] = until_answer(&mut cat, position).await[..] else {
        panic!("cat's position")
    };
    assert_eq!((at.epoch, at.next), (at_b.epoch, seq + 1), "one epoch");

    // bob drops on node a; the room talks on; he comes back on node b.
    drop(bob);
    amy.say("two").await;
    amy.say("three").await;
    assert_eq!(message(&mut cat).await, msg(seq + 1, "two"));
    assert_eq!(message(&mut cat).await, msg(seq + 2, "three"));
    let mut bob = within("bob back on node b", async {
        loop {
            let mut c = connect(b.addr, false).await;
            let resume = Request::Resume {
                name: "bob".into(),
                token: token.clone(),
            };
            match call(&mut c, resume).await {
                Event::LoginResult(ResultCode::OK) => {
                    assert!(matches!(next(&mut c).await, Event::ResumeToken { .. }));
                    return c;
                }
                // Node a has not let the name go yet.
                Event::LoginResult(ResultCode::LOGIN_ALREADY) => tokio::task::yield_now().await,
                other => panic!("{other:?}"),
            }
        }
    })
    .await;
    let back = Request::RoomRejoin {
        room: ROOM,
        epoch: at.epoch,
        after: seq,
    };
    let got = until_answer(&mut bob, back).await;
    let [two, three, Event::Rejoin(marker)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!((two, three), (&msg(seq + 1, "two"), &msg(seq + 2, "three")));
    assert_eq!(
        (marker.epoch, marker.next, marker.count, marker.gap),
        (at.epoch, seq + 3, 2, false)
    );
    amy.say("four").await;
    assert_eq!(
        until_answer(&mut bob, Request::Ping { nonce: 4 }).await,
        [msg(seq + 3, "four"), Event::Pong { nonce: 4 }]
    );
}

/// After a failover whose new primary lost the old one's last writes, the
/// room's counter is behind what the nodes delivered: the next message
/// starts a new epoch instead of reusing a number. (The lost write is made
/// by hand: a failover that loses exactly that write cannot be caused on
/// demand.)
#[tokio::test]
async fn a_room_counter_that_went_back_starts_a_new_epoch() {
    let redis = RedisServer::start().await;
    let (a, b) = (cluster_node(&redis).await, cluster_node(&redis).await);
    let mut amy = a.user("amy").await;
    amy.enter(ROOM).await;
    let (mut cat, _) = member(b.addr, false, "cat", None).await;
    enter(&mut cat).await;
    amy.say("one").await;
    amy.say("two").await;
    let Event::RoomMessage { seq, .. } = message(&mut cat).await else {
        panic!("amy's first")
    };
    assert_eq!(message(&mut cat).await, msg(seq + 1, "two"));
    let position = Request::History {
        page: Page::Latest,
        limit: 0,
    };
    let [Event::History(before)] = until_answer(&mut cat, position.clone()).await[..] else {
        panic!("cat's position")
    };

    let key = format!("plaza:numbering:{{{ROOM}}}");
    assert_eq!(
        redis.cmd(&["HSET", &key, "s", &seq.to_string()]).await.trim(),
        ":0"
    );
    amy.say("three").await;
    assert_eq!(message(&mut cat).await, msg(1, "three"), "numbered afresh");
    let [Event::History(after)] = until_answer(&mut cat, position).await[..] else {
        panic!("cat's position")
    };
    assert_ne!(after.epoch, before.epoch);
    assert_eq!(after.next, 2);
}

/// A room whose members were all on one node was numbered by that node:
/// a member who comes back on another node is told there may be a gap,
/// never given a replay that does not fit what it saw.
#[tokio::test]
async fn a_rejoin_on_another_node_is_a_gap_never_a_wrong_replay() {
    let redis = RedisServer::start().await;
    let (a, b) = (cluster_node(&redis).await, cluster_node(&redis).await);
    let mut amy = a.user("amy").await;
    amy.enter(ROOM).await;
    let (mut bob, token) = member(a.addr, false, "bob", None).await;
    let at = enter(&mut bob).await;
    amy.say("one").await;
    assert_eq!(next(&mut bob).await, msg(at.next, "one"));
    drop(bob);
    amy.say("two").await;
    // Back on node b (retrying while node a still holds the name).
    let mut back = None;
    let code = retry_while(ResultCode::LOGIN_ALREADY, async || {
        let mut c = TestClient::connect(b.addr).await;
        let code = c.try_resume("bob", &token).await;
        back = Some(c);
        code
    })
    .await;
    assert_eq!(code, ResultCode::OK);
    let mut bob = back.unwrap();
    bob.send(Request::RoomRejoin {
        room: ROOM,
        epoch: at.epoch,
        after: at.next,
    })
    .await;
    let marker = within("the rejoin's answer", async {
        loop {
            if let Event::Rejoin(r) = bob.recv().await {
                return r;
            }
        }
    })
    .await;
    assert_eq!(marker.result, ResultCode::OK);
    assert_ne!(marker.epoch, at.epoch, "the cluster's numbers start a new epoch");
    assert!(marker.gap, "{marker:?}");
}

/// Malformed history requests are answered with their own response and a
/// code; the connection stays.
#[tokio::test]
async fn bad_history_rejoin_and_send_requests_get_their_answers_with_a_code() {
    use plaza_proto::id;
    let server = TestServer::start().await;
    let mut amy = server.user("amy").await;
    let frame = |pid: u16, body: &[u8]| {
        let mut f = bytes::BytesMut::new();
        plaza_proto::put_frame(&mut f, pid, body);
        f.to_vec()
    };
    let bad = |code| Replay::failed(code);
    // HISTORY with mode 9; a truncated one.
    amy.send_raw(&frame(id::HISTORY_REQUEST, &[9, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0]))
        .await;
    assert_eq!(amy.recv().await, Event::History(bad(ResultCode::BAD_REQUEST)));
    amy.send_raw(&frame(id::HISTORY_REQUEST, &[0, 1])).await;
    assert_eq!(amy.recv().await, Event::History(bad(ResultCode::BAD_REQUEST)));
    // ROOM_REJOIN cut short; a room that does not exist.
    amy.send_raw(&frame(id::ROOM_REJOIN_REQUEST, &[1, 0, 0, 0])).await;
    assert_eq!(amy.recv().await, Event::Rejoin(bad(ResultCode::BAD_REQUEST)));
    let rejoin = Request::RoomRejoin {
        room: -1,
        epoch: 0,
        after: 0,
    };
    assert_eq!(
        amy.call(rejoin).await,
        Event::Rejoin(bad(ResultCode::INVALID_ROOM))
    );
    // ROOM_SEND over 256 bytes; with text that is not UTF-8; from the lobby.
    let mut long = 7u64.to_le_bytes().to_vec();
    long.extend_from_slice(&300u16.to_le_bytes());
    long.extend_from_slice(&[b'x'; 300]);
    amy.send_raw(&frame(id::ROOM_SEND_REQUEST, &long)).await;
    let refused = |result| Event::RoomSendResult { result, seq: 0 };
    assert_eq!(amy.recv().await, refused(ResultCode::INVALID_MESSAGE));
    let mut bad_utf8 = 8u64.to_le_bytes().to_vec();
    bad_utf8.extend_from_slice(&[2, 0, 0xff, 0xfe]);
    amy.send_raw(&frame(id::ROOM_SEND_REQUEST, &bad_utf8)).await;
    assert_eq!(amy.recv().await, refused(ResultCode::INVALID_MESSAGE));
    let send = Request::RoomSend {
        id: 9,
        message: "hi".into(),
    };
    assert_eq!(amy.call(send).await, refused(ResultCode::USER_IN_LOBBY));
    // Still connected and served.
    assert_eq!(
        amy.call(Request::Ping { nonce: 3 }).await,
        Event::Pong { nonce: 3 }
    );
}

#[tokio::test]
async fn a_notice_stays_a_notice_across_cluster_nodes_and_in_their_history() {
    let redis = RedisServer::start().await;
    let (a, b) = (cluster_node(&redis).await, cluster_node(&redis).await);
    // amy (node a) and bob (node b) know notices; cat (node b) does not.
    let mut members = Vec::new();
    for (at, name, notices) in [
        (a.addr, "amy", true),
        (b.addr, "bob", true),
        (b.addr, "cat", false),
    ] {
        let (mut c, _) = member(at, false, name, None).await;
        if notices {
            let hello = Request::Hello {
                version: 1,
                features: features::ALL,
            };
            assert!(matches!(
                call(&mut c, hello).await,
                Event::Hello { features: 7, .. }
            ));
        }
        enter(&mut c).await;
        members.push(c);
    }
    let [amy, bob, cat] = &mut members[..] else {
        unreachable!()
    };
    let said = Request::RoomNotice {
        id: 1,
        message: "maintenance at noon".into(),
    };
    let answer = until_answer(amy, said).await;
    let Some(Event::RoomSendResult {
        result: ResultCode::OK,
        seq,
    }) = answer.last().cloned()
    else {
        panic!("{answer:?}")
    };
    let notice = Event::RoomNotice {
        room: ROOM as u32,
        seq,
        name: "amy".into(),
        message: "maintenance at noon".into(),
    };
    assert_eq!(message(bob).await, notice);
    assert_eq!(message(cat).await, msg(seq, "maintenance at noon"));
    // Node b keeps it as a notice.
    let page = Request::History {
        page: Page::Latest,
        limit: 10,
    };
    assert_eq!(until_answer(bob, page.clone()).await[0], notice);
    assert_eq!(until_answer(cat, page).await[0], msg(seq, "maintenance at noon"));

    // A whispered notice from node a to node b.
    for (to, c) in [("bob", &mut *bob), ("cat", &mut *cat)] {
        let said = Request::WhisperNotice {
            to: to.into(),
            message: "psst".into(),
        };
        assert_eq!(call(amy, said).await, Event::WhisperResult(ResultCode::OK));
        let (from, message) = ("amy".to_owned(), "psst".to_owned());
        let want = match to {
            "bob" => Event::WhisperNotice { from, message },
            _ => Event::Whisper { from, message },
        };
        assert_eq!(self::message(c).await, want);
    }
}
