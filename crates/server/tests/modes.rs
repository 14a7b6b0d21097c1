//! Room modes end to end on 127.0.0.1: an IRC channel operator sets `+t`,
//! `+m`, `+l` and `+k` and binary users are held to them (ROOM_ENTER_KEY
//! gives the key); across cluster nodes, on one Redis and on a Redis
//! Cluster, the seat script enforces the limit and the key on a node that
//! does not follow the room.

mod irc_client;

use irc_client::{Irc, irc_server};
use plaza_proto::room_modes::{INVITE_ONLY, MODERATED, TOPIC};
use plaza_proto::{Event, Request, ResultCode};
use plaza_test_support::{Engine, TestServer};

plaza_test_support::on_each_engine!(
    a_nodes_seat_keeps_to_the_rooms_limit_and_key_set_on_another_node,
    an_invitation_from_another_node_opens_an_invite_only_room_once
);

fn enter_with(room: i32, key: &str) -> Request {
    Request::RoomEnterKey {
        room,
        key: key.into(),
    }
}

#[tokio::test]
async fn an_irc_operators_modes_hold_irc_and_binary_users() {
    let (server, irc) = irc_server(true).await;
    let mut amy = Irc::register(irc, "amy", None).await;
    amy.join("#3").await;
    let mut bob = server.user("bob").await;
    assert_eq!(bob.enter(3).await.1, ResultCode::OK);

    amy.send("MODE #3 +tml 2").await;
    assert_eq!(amy.until(" MODE ").await, ":amy!amy@plaza.users MODE #3 +mtl :2");
    let told = bob
        .until("the modes", |e| matches!(e, Event::RoomMode { .. }))
        .await;
    assert_eq!(
        told,
        Event::RoomMode {
            room: 3,
            flags: TOPIC | MODERATED,
            limit: 2,
            key: String::new(),
            by: "amy".into()
        }
    );
    amy.send("MODE #3").await;
    assert_eq!(amy.until(" 324 ").await, ":plaza 324 amy #3 +nmtl :2");
    assert_eq!(
        bob.ask(Request::RoomChat { message: "hi".into() }).await,
        Event::RoomChatResult(ResultCode::MODERATED)
    );
    assert_eq!(
        bob.ask(Request::RoomTopic { topic: "mine".into() }).await,
        Event::RoomTopicResult(ResultCode::NOT_ROOM_OPERATOR)
    );
    let mut cat = Irc::register(irc, "cat", None).await;
    cat.send("JOIN #3").await;
    assert!(cat.until(" 471 ").await.contains("#3"));

    // A key instead of the limit: an IRC JOIN gives it, a binary client
    // gives it with ROOM_ENTER_KEY.
    amy.send("MODE #3 -l+k beer").await;
    assert_eq!(
        amy.until(" MODE ").await,
        ":amy!amy@plaza.users MODE #3 +k-l :beer"
    );
    cat.send("JOIN #3 bees").await;
    assert!(cat.until(" 475 ").await.contains("#3"));
    cat.send("JOIN #3 beer").await;
    assert_eq!(cat.until(" JOIN ").await, ":cat!cat@plaza.users JOIN :#3");
    let mut dan = server.user("dan").await;
    assert_eq!(dan.enter(3).await.1, ResultCode::BAD_ROOM_KEY);
    assert_eq!(
        dan.ask(enter_with(3, "beer")).await,
        Event::RoomEnterResult(ResultCode::OK)
    );
    // A key with a space is refused as IRC servers do.
    amy.send("MODE #3 +k :two words").await;
    assert!(amy.until(" 696 ").await.contains(" #3 k * :"));
    // A member that is no operator may not.
    cat.send("MODE #3 -k beer").await;
    assert!(cat.until(" 482 ").await.contains("#3"));

    // Secret: NAMES says `@`; LIST shows it to its members only.
    amy.send("MODE #3 +s").await;
    amy.until(" MODE #3 :+s").await;
    amy.send("NAMES #3").await;
    assert!(amy.until(" 353 ").await.starts_with(":plaza 353 amy @ #3 :"));
    let mut eve = Irc::register(irc, "eve", None).await;
    eve.send("LIST").await;
    let listed = eve.lines_until(" 323 ").await;
    assert!(!listed.iter().any(|l| l.contains(" 322 ")), "{listed:?}");
    cat.send("LIST").await;
    let listed = cat.lines_until(" 323 ").await;
    assert!(listed.iter().any(|l| l.contains(" 322 cat #3 ")), "{listed:?}");
}

async fn a_nodes_seat_keeps_to_the_rooms_limit_and_key_set_on_another_node(redis: Engine) {
    let url = redis.url();
    let (a, b) = (
        TestServer::cluster_node(&url, 200).await,
        TestServer::cluster_node(&url, 200).await,
    );
    let mut amy = a.user("amy").await;
    assert_eq!(amy.enter(7).await.1, ResultCode::OK);
    let set = Request::RoomMode {
        flags: 0,
        limit: 2,
        key: "beer".into(),
    };
    assert_eq!(amy.ask(set).await, Event::RoomModeResult(ResultCode::OK));
    // Node b has no member in the room: the shared store decides.
    let mut bob = b.user("bob").await;
    assert_eq!(bob.enter(7).await.1, ResultCode::BAD_ROOM_KEY);
    bob.send(enter_with(7, "beer")).await;
    let told = bob
        .until("the modes", |e| matches!(e, Event::RoomMode { .. }))
        .await;
    assert!(matches!(told, Event::RoomMode { limit: 2, by, .. } if by.is_empty()));
    bob.until("the answer", |e| *e == Event::RoomEnterResult(ResultCode::OK))
        .await;
    let mut cat = b.user("cat").await;
    assert_eq!(
        cat.ask(enter_with(7, "beer")).await,
        Event::RoomEnterResult(ResultCode::ROOM_FULL)
    );
}

#[tokio::test]
async fn an_irc_invite_opens_an_invite_only_channel_to_irc_and_binary_users() {
    let (server, irc) = irc_server(true).await;
    let mut amy = Irc::register(irc, "amy", None).await;
    amy.join("#5").await;
    amy.send("MODE #5 +i").await;
    amy.until(" MODE #5 :+i").await;
    let mut bob = Irc::register(irc, "bob", None).await;
    bob.send("JOIN #5").await;
    assert!(bob.until(" 473 ").await.contains("#5"));
    amy.send("INVITE bob #5").await;
    assert_eq!(amy.until(" 341 ").await, ":plaza 341 amy bob :#5");
    assert_eq!(bob.until(" INVITE ").await, ":amy!amy@plaza.users INVITE bob :#5");
    bob.join("#5").await;
    // A binary user, invited over IRC, hears it and gets in.
    let mut cat = server.user("cat").await;
    assert_eq!(cat.enter(5).await.1, ResultCode::INVITE_ONLY_ROOM);
    amy.send("INVITE cat #5").await;
    amy.until(" 341 ").await;
    let told = cat
        .until("the invitation", |e| matches!(e, Event::RoomInvite { .. }))
        .await;
    assert_eq!(
        told,
        Event::RoomInvite {
            room: 5,
            by: "amy".into()
        }
    );
    assert_eq!(cat.enter(5).await.1, ResultCode::OK);
    // Only an operator invites into an invite-only channel.
    bob.send("INVITE dan #5").await;
    assert!(bob.until(" 482 ").await.contains("#5"));
    amy.send("INVITE cat #5").await;
    assert!(amy.until(" 443 ").await.contains("cat #5"));
}

async fn an_invitation_from_another_node_opens_an_invite_only_room_once(redis: Engine) {
    let url = redis.url();
    let (a, b) = (
        TestServer::cluster_node(&url, 200).await,
        TestServer::cluster_node(&url, 200).await,
    );
    let mut amy = a.user("amy").await;
    assert_eq!(amy.enter(8).await.1, ResultCode::OK);
    let set = Request::RoomMode {
        flags: INVITE_ONLY,
        limit: 0,
        key: String::new(),
    };
    assert_eq!(amy.ask(set).await, Event::RoomModeResult(ResultCode::OK));
    let mut bob = b.user("bob").await;
    assert_eq!(bob.enter(8).await.1, ResultCode::INVITE_ONLY_ROOM);
    let invite = Request::RoomInvite { name: "bob".into() };
    assert_eq!(amy.ask(invite).await, Event::RoomInviteResult(ResultCode::OK));
    let told = bob
        .until("the invitation", |e| matches!(e, Event::RoomInvite { .. }))
        .await;
    assert_eq!(
        told,
        Event::RoomInvite {
            room: 8,
            by: "amy".into()
        }
    );
    assert_eq!(bob.enter(8).await.1, ResultCode::OK);
    // Used: out and back needs another.
    assert_eq!(
        bob.ask(Request::RoomLeave).await,
        Event::RoomLeaveResult(ResultCode::OK)
    );
    assert_eq!(bob.enter(8).await.1, ResultCode::INVITE_ONLY_ROOM);
    let ghost = Request::RoomInvite { name: "ghost".into() };
    assert_eq!(
        amy.ask(ghost).await,
        Event::RoomInviteResult(ResultCode::USER_NOT_FOUND)
    );
}

#[tokio::test]
async fn lines_sent_right_after_a_join_act_once_it_is_done() {
    let (_server, irc) = irc_server(true).await;
    let mut amy = Irc::register(irc, "amy", None).await;
    amy.join("#6").await;
    // A bot's habit: JOIN then talk, without waiting for the JOIN's answer.
    let mut bot = Irc::register(irc, "bot", None).await;
    bot.send("JOIN #6\r\nPRIVMSG #6 :right away").await;
    assert_eq!(
        amy.until(" PRIVMSG ").await,
        ":bot!bot@plaza.users PRIVMSG #6 :right away"
    );
    // And an opener that sets a mode at once: NAMES then shows it.
    let mut eve = Irc::register(irc, "eve", None).await;
    eve.send("JOIN #7\r\nMODE #7 +s").await;
    eve.until(" MODE #7 :+s").await;
    eve.send("NAMES #7").await;
    assert_eq!(eve.until(" 353 ").await, ":plaza 353 eve @ #7 :@eve");
}
