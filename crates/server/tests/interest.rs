//! Interest routing across three nodes on one real `redis-server`, and on
//! a real three-master Redis Cluster (sharded channels): what a
//! node receives and keeps follows the rooms it has members in; the rest is
//! found in the directory in Redis.

use plaza_proto::{Event, Request, ResultCode};
use plaza_test_support::{Engine, TestServer, within};

plaza_test_support::on_each_engine!(a_node_receives_a_rooms_traffic_only_while_it_has_a_member_there);

fn chat(message: &str) -> Request {
    Request::RoomChat {
        message: message.into(),
    }
}

/// Waits until `server` subscribes to `n` channels (the bus, its own and the
/// rooms it follows); returns its bus counts then.
async fn until_channels(server: &TestServer, n: usize) -> plaza_server::control::BusCounts {
    let ctl = server.control().await;
    within(&format!("{n} channels subscribed"), async {
        loop {
            let c = ctl.status().await.cluster.unwrap();
            if c.channels == n {
                return c.bus_stats;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

/// Interest routing: a node follows a room's channel only while it has a
/// member there, so a room's chat costs the nodes without members nothing;
/// a node that starts following a room gets its members from the seat; a
/// node keeps no other node's users but its rooms' members, and finds the
/// rest in the directory.
async fn a_node_receives_a_rooms_traffic_only_while_it_has_a_member_there(redis: Engine) {
    let url = redis.url();
    let (a, b, c) = (
        TestServer::cluster_node(&url, 200).await,
        TestServer::cluster_node(&url, 200).await,
        TestServer::cluster_node(&url, 200).await,
    );
    let mut amy = a.user("amy").await;
    let mut bob = b.user("bob").await;
    let mut cat = c.user("cat").await;
    assert_eq!(cat.enter(2).await.1, ResultCode::OK);
    assert_eq!(amy.enter(1).await.1, ResultCode::OK);
    assert_eq!(bob.enter(1).await.1, ResultCode::OK);
    amy.until(
        "bob in the room",
        |e| matches!(e, Event::RoomNewUser { name, .. } if name == "bob"),
    )
    .await;
    for i in 0..20 {
        assert_eq!(
            amy.ask(chat(&format!("m{i}"))).await,
            Event::RoomChatResult(ResultCode::OK)
        );
    }
    bob.until(
        "the last message",
        |e| matches!(e, Event::RoomChat { message, .. } if message == "m19"),
    )
    .await;
    let on_b = until_channels(&b, 3).await;
    assert!(on_b.received_room_messages >= 20, "{on_b:?}");
    // c follows the bus and room 2 only: nothing of room 1 reached it.
    let on_c = until_channels(&c, 3).await;
    assert_eq!(on_c.received_room_messages, 0, "{on_c:?}");
    assert_eq!(on_c.received_room_bytes, 0, "{on_c:?}");
    // c keeps nothing of amy and bob (they are in no room it follows), yet
    // lists them and whispers to them through the directory in Redis.
    let ctl_c = c.control().await;
    assert_eq!(ctl_c.status().await.cluster.unwrap().remote_users, 0);
    assert_eq!(cat.total_users().await, 3);
    let whisper = Request::Whisper {
        to: "amy".into(),
        message: "hi amy".into(),
    };
    assert_eq!(cat.ask(whisper).await, Event::WhisperResult(ResultCode::OK));
    amy.until(
        "cat's whisper",
        |e| matches!(e, Event::Whisper { from, .. } if from == "cat"),
    )
    .await;
    let nobody = Request::Whisper {
        to: "nobody".into(),
        message: "?".into(),
    };
    assert_eq!(
        cat.ask(nobody).await,
        Event::WhisperResult(ResultCode::USER_NOT_FOUND)
    );
    // The list and the two whispers each read the directory once.
    let c_now = ctl_c.status().await.cluster.unwrap().bus_stats;
    assert!(c_now.directory_lookups >= 3, "{c_now:?}");

    // cat moves to room 1: c drops room 2, follows room 1, and cat's list
    // (from the seat) and c's replica have amy and bob.
    assert_eq!(
        cat.ask(Request::RoomLeave).await,
        Event::RoomLeaveResult(ResultCode::OK)
    );
    let (members, code) = cat.enter(1).await;
    assert_eq!(code, ResultCode::OK);
    let mut names: Vec<&str> = members.iter().map(|(_, n)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["amy", "bob", "cat"]);
    until_channels(&c, 3).await;
    assert_eq!(ctl_c.status().await.cluster.unwrap().remote_users, 2);
    assert_eq!(
        amy.ask(chat("hello cat")).await,
        Event::RoomChatResult(ResultCode::OK)
    );
    cat.until(
        "amy's message",
        |e| matches!(e, Event::RoomChat { message, .. } if message == "hello cat"),
    )
    .await;
    // bob leaves: cat is told, through c's replica of room 1.
    assert_eq!(
        bob.ask(Request::RoomLeave).await,
        Event::RoomLeaveResult(ResultCode::OK)
    );
    cat.until("bob to leave", |e| matches!(e, Event::RoomLeaveUser { .. }))
        .await;
    until_channels(&b, 2).await;
}
