//! Room topics end to end on 127.0.0.1: set over IRC and over the binary
//! protocol and heard by both; told to an entrant before its member list
//! (over IRC: 332 and 333 after the JOIN); across cluster nodes, on one
//! Redis and on a Redis Cluster; gone with the room's last member.

mod irc_client;

use irc_client::{Irc, irc_server};
use plaza_proto::{Event, Request, ResultCode};
use plaza_test_support::{Engine, TestClient, TestServer, within};

plaza_test_support::on_each_engine!(
    a_topic_reaches_every_node_and_a_later_entrant_and_goes_with_the_last_member
);

fn set(topic: &str) -> Request {
    Request::RoomTopic { topic: topic.into() }
}

/// Enters `room`: the topic told before the member list, if any, and the
/// answer.
async fn enter_with_topic(c: &mut TestClient, room: i32) -> Option<Event> {
    c.send(Request::RoomEnter { room }).await;
    let (mut topic, mut listed) = (None, false);
    loop {
        match c.recv().await {
            e @ Event::RoomTopic { .. } => {
                assert!(topic.is_none() && !listed, "one topic, before the member list");
                topic = Some(e);
            }
            Event::RoomUserList { .. } => listed = true,
            Event::RoomEnterResult(code) => {
                assert_eq!(code, ResultCode::OK);
                return topic;
            }
            _ => {}
        }
    }
}

fn is_topic(e: &Event, who: &str, text: &str) -> bool {
    matches!(e, Event::RoomTopic { by, topic, at, .. } if by == who && topic == text && *at > 1_700_000_000)
}

#[tokio::test]
async fn irc_and_binary_users_set_and_hear_a_rooms_topic() {
    let (server, irc) = irc_server(true).await;
    let mut amy = server.user("amy").await;
    assert_eq!(amy.enter(1).await.1, ResultCode::OK);
    let mut bob = Irc::register(irc, "bob", None).await;
    bob.join("#1").await;
    bob.send("TOPIC #1").await;
    assert_eq!(bob.until(" 331 ").await, ":plaza 331 bob #1 :No topic is set");

    // Set over IRC: every member hears it, the setter too.
    bob.send("TOPIC #1 :release at noon").await;
    assert_eq!(
        bob.until(" TOPIC ").await,
        ":bob!bob@plaza.users TOPIC #1 :release at noon"
    );
    let heard = amy
        .until("bob's topic", |e| matches!(e, Event::RoomTopic { .. }))
        .await;
    assert!(is_topic(&heard, "bob", "release at noon"), "{heard:?}");

    // Set over the binary protocol; TOPIC then answers 332 and 333.
    amy.send(set("moved to 1pm")).await;
    amy.until("the answer", |e| *e == Event::RoomTopicResult(ResultCode::OK))
        .await;
    assert_eq!(
        bob.until(" TOPIC ").await,
        ":amy!amy@plaza.users TOPIC #1 :moved to 1pm"
    );
    bob.send("TOPIC #1").await;
    assert_eq!(bob.until(" 332 ").await, ":plaza 332 bob #1 :moved to 1pm");
    assert!(bob.until(" 333 ").await.starts_with(":plaza 333 bob #1 amy :1"));

    // Newcomers: over IRC JOIN, 332, 333, then the names; over the binary
    // protocol the topic before the member list.
    let mut cat = Irc::register(irc, "cat", None).await;
    cat.send("JOIN #1").await;
    let lines = cat.lines_until(" 366 ").await;
    let kinds: Vec<&str> = lines.iter().map(|l| l.split(' ').nth(1).unwrap_or("")).collect();
    assert_eq!(kinds, ["JOIN", "332", "333", "353", "366"], "{lines:?}");
    let mut dan = server.user("dan").await;
    let told = enter_with_topic(&mut dan, 1).await.expect("the topic");
    assert!(is_topic(&told, "amy", "moved to 1pm"), "{told:?}");

    // Cleared: told as an empty topic; TOPIC then says there is none.
    bob.send("TOPIC #1 :").await;
    assert_eq!(bob.until(" TOPIC ").await, ":bob!bob@plaza.users TOPIC #1 :");
    bob.send("TOPIC #1").await;
    assert_eq!(bob.until(" 331 ").await, ":plaza 331 bob #1 :No topic is set");
}

async fn a_topic_reaches_every_node_and_a_later_entrant_and_goes_with_the_last_member(redis: Engine) {
    let url = redis.url();
    let (a, b, c) = (
        TestServer::cluster_node(&url, 200).await,
        TestServer::cluster_node(&url, 200).await,
        TestServer::cluster_node(&url, 200).await,
    );
    let mut amy = a.user("amy").await;
    assert_eq!(amy.enter(5).await.1, ResultCode::OK);
    let mut bob = b.user("bob").await;
    assert_eq!(bob.enter(5).await.1, ResultCode::OK);
    assert_eq!(
        amy.ask(set("from node a")).await,
        Event::RoomTopicResult(ResultCode::OK)
    );
    let heard = bob
        .until("amy's topic", |e| matches!(e, Event::RoomTopic { .. }))
        .await;
    assert!(is_topic(&heard, "amy", "from node a"), "{heard:?}");

    // Node c follows the room from its first member on: it reads the topic
    // with the seat.
    let mut cat = c.user("cat").await;
    let told = enter_with_topic(&mut cat, 5).await.expect("the topic");
    assert!(is_topic(&told, "amy", "from node a"), "{told:?}");

    // Everyone leaves; the room's next member finds no topic.
    for u in [&mut amy, &mut bob, &mut cat] {
        assert_eq!(
            u.ask(Request::RoomLeave).await,
            Event::RoomLeaveResult(ResultCode::OK)
        );
    }
    // (A leave is answered before the shared store has it.)
    within("the room to be empty in the shared store", async {
        while redis.cmd(&["HLEN", "plaza:seats:{5}"]).await.trim() != ":0" {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let mut dan = b.user("dan").await;
    assert_eq!(enter_with_topic(&mut dan, 5).await, None);
}
