//! The resume window across cluster nodes: a member who drops keeps its
//! seat on every node; back on its node or on another one it takes the
//! seat back (on another node the seat moves there, with its id) and
//! nobody sees a thing, and the whispers kept for it follow; at the
//! window's end, or at its node's burial, the seat is freed in the shared
//! store.

use std::net::SocketAddr;

use plaza_proto::{Event, Page, Replay, Request, ResultCode, features};
use plaza_test_support::{RedisServer, ServerProcess, TestClient, TestServer, retry_while, within};

const ROOM: i32 = 4;
const SEATS: &str = "plaza:seats:{4}";

/// A cluster node on `redis`, with a resume window of `window` seconds
/// and a 3 s presence TTL (a burial comes within the tests' wait).
async fn node(redis: &RedisServer, window: u64) -> TestServer {
    let url = redis.url();
    TestServer::with(move |s| {
        s.store = Some(url);
        s.cluster = Some(true);
        s.presence_ttl_secs = Some(3);
        s.resume_window_secs = Some(window);
    })
    .await
}

/// A connection that takes room history (and so may come back).
async fn history_client(at: SocketAddr) -> TestClient {
    let mut c = TestClient::connect_seed(at).await;
    c.hello_with(features::NOTIFICATIONS | features::HISTORY).await;
    c
}

/// `name` registered and logged in with history, in the room: returns it,
/// its resume token and the room's epoch and last number as it entered.
async fn member(at: SocketAddr, name: &str) -> (TestClient, String, u64, u64) {
    let mut c = history_client(at).await;
    c.register(name, "pw").await;
    c.login(name, "pw").await;
    let token = c.token.clone().expect("a resume token");
    assert_eq!(c.enter(ROOM).await.1, ResultCode::OK);
    let position = Request::History {
        page: Page::Latest,
        limit: 0,
    };
    let Event::History(at) = c.ask(position).await else {
        panic!("the room's position")
    };
    (c, token, at.epoch, at.next - 1)
}

/// `name` back on `at` with `token` (retried while its old session still
/// holds the name).
async fn resume(at: SocketAddr, name: &str, token: &str) -> TestClient {
    let mut back = None;
    let code = retry_while(ResultCode::LOGIN_ALREADY, async || {
        let mut c = history_client(at).await;
        let code = c.try_resume(name, token).await;
        back = Some(c);
        code
    })
    .await;
    assert_eq!(code, ResultCode::OK);
    back.expect("a connection")
}

/// What a rejoin of the room brings: the member list, the messages
/// replayed, and the marker.
struct Rejoined {
    members: Vec<(u64, String)>,
    replayed: Vec<String>,
    marker: Replay,
}

async fn rejoin(c: &mut TestClient, epoch: u64, after: u64) -> Rejoined {
    c.send(Request::RoomRejoin {
        room: ROOM,
        epoch,
        after,
    })
    .await;
    let (mut members, mut replayed) = (Vec::new(), Vec::new());
    within("the replay", async {
        loop {
            match c.recv().await {
                Event::RoomUserList { users } => members.extend(users),
                Event::RoomMessage { message, .. } => replayed.push(message),
                Event::Rejoin(marker) => {
                    return Rejoined {
                        members,
                        replayed,
                        marker,
                    };
                }
                _ => {}
            }
        }
    })
    .await
}

/// The enters and leaves `c` hears before the room message `last`.
async fn presence_until(c: &mut TestClient, last: &str) -> Vec<Event> {
    let mut news = Vec::new();
    within(&format!("the message {last:?}"), async {
        loop {
            match c.recv().await {
                e @ (Event::RoomNewUser { .. } | Event::RoomLeaveUser { .. }) => news.push(e),
                Event::RoomChat { message, .. } if message == last => return news,
                _ => {}
            }
        }
    })
    .await
}

/// The member id `c` hears `name` enter with.
async fn entered(c: &mut TestClient, name: &str) -> u64 {
    match c
        .until(
            "an enter",
            |e| matches!(e, Event::RoomNewUser { name: n, .. } if n == name),
        )
        .await
    {
        Event::RoomNewUser { uid, .. } => uid,
        _ => unreachable!(),
    }
}

/// Whether any node records a seat held for `name`.
async fn held_anywhere(redis: &RedisServer, name: &str) -> bool {
    let script = "for _, k in ipairs(redis.call('KEYS', 'plaza:{nodes}:node:*')) do \
                  if redis.call('HEXISTS', k, 'held ' .. ARGV[1]) == 1 then return 1 end end return 0";
    redis.cmd(&["EVAL", script, "0", name]).await.trim() == ":1"
}

/// Waits until `done` says the shared store is as `what` says.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    within(what, async {
        while !done().await {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// The room's seats, as redis-server answers HLEN.
async fn seats(redis: &RedisServer) -> String {
    redis.cmd(&["HLEN", SEATS]).await.trim().to_owned()
}

/// Waits until the room has `n` seats and no node holds one for `name`.
async fn until_freed(redis: &RedisServer, n: usize, name: &str) {
    until("the held seat to be freed", async || {
        seats(redis).await == format!(":{n}") && !held_anywhere(redis, name).await
    })
    .await;
}

#[tokio::test]
async fn a_member_who_drops_keeps_its_seat_on_every_node_and_takes_it_back_unseen() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis, 60).await, node(&redis, 60).await);
    let mut amy = b.user("amy").await;
    assert_eq!(amy.enter(ROOM).await.1, ResultCode::OK);
    let mut cat = a.user("cat").await;
    assert_eq!(cat.enter(ROOM).await.1, ResultCode::OK);
    let (bob, token, epoch, last) = member(a.addr, "bob").await;
    entered(&mut amy, "bob").await;
    entered(&mut cat, "bob").await;

    drop(bob);
    a.until_status("users_away", 1).await;
    // Written by the node's Redis writer after the hub held it.
    until("bob's seat held in Redis", async || {
        held_anywhere(&redis, "bob").await
    })
    .await;
    for text in ["one", "two"] {
        amy.send(Request::RoomChat { message: text.into() }).await;
    }
    // On bob's node before bob asks for them.
    let mut cat_heard = presence_until(&mut cat, "two").await;

    let mut bob = resume(a.addr, "bob", &token).await;
    let back = rejoin(&mut bob, epoch, last).await;
    let (got, marker) = (back.replayed, back.marker);
    assert_eq!(got, ["one", "two"]);
    assert_eq!(
        (marker.result, marker.count, marker.gap),
        (ResultCode::OK, 2, false)
    );
    bob.send(Request::RoomChat {
        message: "back".into(),
    })
    .await;
    cat_heard.extend(presence_until(&mut cat, "back").await);
    assert_eq!(cat_heard, [], "bob's node: no leave, no enter");
    assert_eq!(
        presence_until(&mut amy, "back").await,
        [],
        "the other node: none either"
    );
    assert_eq!(seats(&redis).await, ":3");
}

#[tokio::test]
async fn back_on_another_node_the_seat_moves_there_unseen_and_kept_whispers_follow() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis, 60).await, node(&redis, 60).await);
    let mut amy = b.user("amy").await;
    assert_eq!(amy.enter(ROOM).await.1, ResultCode::OK);
    let mut cat = a.user("cat").await;
    assert_eq!(cat.enter(ROOM).await.1, ResultCode::OK);
    let (bob, token, epoch, last) = member(a.addr, "bob").await;
    let uid = entered(&mut amy, "bob").await;
    assert_eq!(entered(&mut cat, "bob").await, uid);

    drop(bob);
    a.until_status("users_away", 1).await;
    // Kept on bob's node, from there and from another node (bob's mark
    // sends it there while bob is away).
    for (from, c) in [("cat", &mut cat), ("amy", &mut amy)] {
        let whisper = Request::Whisper {
            to: "bob".into(),
            message: format!("psst from {from}"),
        };
        assert_eq!(c.ask(whisper).await, Event::WhisperResult(ResultCode::OK));
    }
    amy.send(Request::RoomChat {
        message: "one".into(),
    })
    .await;
    let mut cat_heard = presence_until(&mut cat, "one").await;

    let mut bob = resume(b.addr, "bob", &token).await;
    let back = rejoin(&mut bob, epoch, last).await;
    assert!(
        back.members.contains(&(uid, "bob".into())),
        "its seat, with its id: {:?}",
        back.members
    );
    let (got, marker) = (back.replayed, back.marker);
    assert_eq!(got, ["one"], "the room spans both nodes: an exact replay");
    assert_eq!((marker.result, marker.gap), (ResultCode::OK, false));
    for from in ["cat", "amy"] {
        let kept = bob
            .until("a kept whisper", |e| matches!(e, Event::Whisper { .. }))
            .await;
        assert_eq!(
            kept,
            Event::Whisper {
                from: from.into(),
                message: format!("psst from {from}")
            }
        );
    }
    bob.send(Request::RoomChat {
        message: "back".into(),
    })
    .await;
    cat_heard.extend(presence_until(&mut cat, "back").await);
    assert_eq!(cat_heard, [], "the node bob left: no leave, no enter");
    assert_eq!(
        presence_until(&mut amy, "back").await,
        [],
        "bob's new node: none either"
    );
    // The seat is node b's now, under the same id; node a holds nothing.
    let seat = redis.cmd(&["HGET", SEATS, &uid.to_string()]).await;
    assert!(seat.ends_with("|bob\r\n") || seat.contains("|bob"), "{seat:?}");
    until_freed(&redis, 3, "bob").await;
    // Leaving from node b is heard on node a under that id.
    bob.send(Request::RoomLeave).await;
    cat.until("bob's leave", |e| *e == Event::RoomLeaveUser { uid })
        .await;
}

#[tokio::test]
async fn at_the_window_s_end_the_seat_is_freed_on_every_node() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis, 1).await, node(&redis, 1).await);
    let mut amy = b.user("amy").await;
    assert_eq!(amy.enter(ROOM).await.1, ResultCode::OK);
    let (bob, ..) = member(a.addr, "bob").await;
    let uid = entered(&mut amy, "bob").await;
    drop(bob);
    amy.until("bob's seat freed", |e| *e == Event::RoomLeaveUser { uid })
        .await;
    until_freed(&redis, 1, "bob").await;
}

/// A node that dies holding a seat for a user who dropped: its burial
/// frees the seat like any other.
#[tokio::test]
async fn a_burial_frees_the_seats_a_dead_node_held() {
    let redis = RedisServer::start().await;
    let live = node(&redis, 60).await;
    let mut amy = live.user("amy").await;
    assert_eq!(amy.enter(ROOM).await.1, ResultCode::OK);
    let dir = tempfile::tempdir().unwrap();
    let dying = ServerProcess::cluster_node(env!("CARGO_BIN_EXE_plaza-server"), dir.path(), &redis.url());
    let (dan, ..) = member(dying.addr, "dan").await;
    let uid = entered(&mut amy, "dan").await;
    drop(dan);
    until("dan's seat held", async || held_anywhere(&redis, "dan").await).await;

    dying.signal("KILL");
    dying.wait().await;
    amy.until("dan's seat freed", |e| *e == Event::RoomLeaveUser { uid })
        .await;
    until_freed(&redis, 1, "dan").await;
}

/// The other nodes bury node a while it lives (its time in the live set
/// made to lapse) and it holds bob's seat: its rewrite puts the held seat
/// back, and bob, back on node a, still takes it.
#[tokio::test]
async fn a_node_buried_alive_rewrites_the_seats_it_holds() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis, 60).await, node(&redis, 60).await);
    let mut amy = b.user("amy").await;
    assert_eq!(amy.enter(ROOM).await.1, ResultCode::OK);
    let (bob, token, epoch, last) = member(a.addr, "bob").await;
    let uid = entered(&mut amy, "bob").await;
    drop(bob);
    a.until_status("users_away", 1).await;

    let node_a = a.control().await.status().await.cluster.unwrap().node.to_string();
    let ctl_b = b.control().await;
    within("node b to bury node a", async {
        loop {
            redis.cmd(&["ZADD", "plaza:{nodes}:live", "0", &node_a]).await;
            if ctl_b.status().await.cluster.unwrap().remote_users == 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    amy.until("bob's seat to go with its node", |e| {
        *e == Event::RoomLeaveUser { uid }
    })
    .await;
    let back = amy
        .until(
            "bob's seat back with node a's rewrite",
            |e| matches!(e, Event::RoomNewUser { name, .. } if name == "bob"),
        )
        .await;
    assert_eq!(
        back,
        Event::RoomNewUser {
            uid,
            name: "bob".into()
        }
    );
    until("the held seat rewritten", async || {
        held_anywhere(&redis, "bob").await && seats(&redis).await == ":2"
    })
    .await;

    let mut bob = resume(a.addr, "bob", &token).await;
    assert_eq!(rejoin(&mut bob, epoch, last).await.marker.result, ResultCode::OK);
    bob.send(Request::RoomChat {
        message: "back".into(),
    })
    .await;
    assert_eq!(
        presence_until(&mut amy, "back").await,
        [],
        "bob took its seat back"
    );
    assert_eq!(seats(&redis).await, ":2");
}

/// While bob is away his mark names his node's away owner: a login on any
/// node takes it over, and then holds it against another (31).
#[tokio::test]
async fn a_login_takes_over_the_mark_of_a_user_who_is_away() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis, 60).await, node(&redis, 60).await);
    let (bob, ..) = member(a.addr, "bob").await;
    drop(bob);
    until("bob's mark to pass to his node while he is away", async || {
        redis.cmd(&["GET", "plaza:online:bob"]).await.contains(":away")
    })
    .await;
    let mut back = b.client().await;
    assert_eq!(back.try_login("bob", "pw").await, ResultCode::OK);
    let mut again = a.client().await;
    assert_eq!(again.try_login("bob", "pw").await, ResultCode::LOGIN_ALREADY);
}

/// A node frozen while it holds dan's seat cannot see dan take the seat
/// over on another node; its burial, when it dies, leaves the seat where
/// dan took it.
#[tokio::test]
async fn a_burial_leaves_a_held_seat_that_moved_to_another_node() {
    let redis = RedisServer::start().await;
    let live = node(&redis, 60).await;
    let mut amy = live.user("amy").await;
    assert_eq!(amy.enter(ROOM).await.1, ResultCode::OK);
    let dir = tempfile::tempdir().unwrap();
    let dying = ServerProcess::cluster_node(env!("CARGO_BIN_EXE_plaza-server"), dir.path(), &redis.url());
    let (dan, token, epoch, last) = member(dying.addr, "dan").await;
    let uid = entered(&mut amy, "dan").await;
    drop(dan);
    until("dan's seat held and his mark away", async || {
        held_anywhere(&redis, "dan").await && redis.cmd(&["GET", "plaza:online:dan"]).await.contains(":away")
    })
    .await;

    dying.signal("STOP");
    let mut dan = resume(live.addr, "dan", &token).await;
    assert_eq!(rejoin(&mut dan, epoch, last).await.marker.result, ResultCode::OK);
    dying.signal("KILL");
    dying.wait().await;
    until("the frozen node's burial", async || {
        !held_anywhere(&redis, "dan").await
    })
    .await;
    let here = live.control().await.status().await.cluster.unwrap().node;
    let seat = redis.cmd(&["HGET", SEATS, &uid.to_string()]).await;
    assert!(seat.contains(&format!("{here}|dan")), "{seat:?}");
    dan.send(Request::RoomChat {
        message: "still here".into(),
    })
    .await;
    assert_eq!(presence_until(&mut amy, "still here").await, []);
}
