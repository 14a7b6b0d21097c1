//! Room operators end to end on 127.0.0.1: the first member of an empty
//! room is its operator, shown as `@` over IRC (NAMES, WHO, WHOIS) and
//! told over the binary protocol before the member list; an operator
//! makes others operators (MODE +o / ROOM_ROLE) and puts members out of the
//! room (KICK / ROOM_KICK), and IRC and binary users hear it alike; across
//! cluster nodes, on one Redis and on a Redis Cluster.

mod irc_client;

use irc_client::{Irc, irc_server};
use plaza_proto::roles::{OPERATOR, VOICE};
use plaza_proto::{Event, Request, ResultCode};
use plaza_test_support::{Engine, TestClient, TestServer, within};

plaza_test_support::on_each_engine!(operators_and_kicks_cross_cluster_nodes_and_go_with_the_room);

/// Enters `room`; returns the operators' ids told before the member list,
/// and the list.
async fn enter_with_ops(c: &mut TestClient, room: i32) -> (Vec<u64>, Vec<(u64, String)>) {
    c.send(Request::RoomEnter { room }).await;
    let (mut ops, mut users) = (Vec::new(), Vec::new());
    loop {
        match c.recv().await {
            Event::RoomRole { uid, roles, by, .. } => {
                assert!(
                    users.is_empty() && roles == OPERATOR && by.is_empty(),
                    "roles come before the list"
                );
                ops.push(uid);
            }
            Event::RoomUserList { users: u } => users.extend(u),
            Event::RoomEnterResult(code) => {
                assert_eq!(code, ResultCode::OK);
                return (ops, users);
            }
            _ => {}
        }
    }
}

fn op(name: &str, on: bool) -> Request {
    Request::RoomRole {
        name: name.into(),
        role: OPERATOR,
        on,
    }
}

fn uid_of(users: &[(u64, String)], name: &str) -> u64 {
    users.iter().find(|(_, n)| n == name).expect("a member").0
}

#[tokio::test]
async fn an_irc_channel_operator_is_the_room_operator_for_irc_and_binary_users() {
    let (server, irc) = irc_server(true).await;
    let mut amy = Irc::register(irc, "amy", None).await;
    amy.send("JOIN #2").await;
    assert_eq!(amy.until(" 353 ").await, ":plaza 353 amy = #2 :@amy");
    let mut bob = Irc::register(irc, "bob", None).await;
    bob.send("JOIN #2").await;
    assert_eq!(bob.until(" 353 ").await, ":plaza 353 bob = #2 :@amy bob");
    let mut cat = server.user("cat").await;
    let (ops, users) = enter_with_ops(&mut cat, 2).await;
    assert_eq!(ops, [uid_of(&users, "amy")]);

    // bob may not; amy may, and everyone hears it.
    bob.send("MODE #2 +o bob").await;
    assert_eq!(
        bob.until(" 482 ").await,
        ":plaza 482 bob #2 :You're not channel operator"
    );
    amy.send("MODE #2 +o bob").await;
    let mode = ":amy!amy@plaza.users MODE #2 +o :bob";
    assert_eq!(amy.until(" MODE ").await, mode);
    assert_eq!(bob.until(" MODE ").await, mode);
    let told = cat
        .until("bob's op", |e| matches!(e, Event::RoomRole { .. }))
        .await;
    let bob_uid = uid_of(&users, "bob");
    assert_eq!(
        told,
        Event::RoomRole {
            room: 2,
            uid: bob_uid,
            roles: OPERATOR,
            by: "amy".into()
        }
    );
    bob.send("WHO #2").await;
    assert!(bob.until(" 352 ").await.contains(" amy H@ :0 "));
    bob.send("WHOIS amy").await;
    assert_eq!(bob.until(" 319 ").await, ":plaza 319 bob amy :@#2");

    // The binary user is no operator; an operator puts it out.
    assert_eq!(
        cat.ask(Request::RoomKick {
            name: "amy".into(),
            reason: String::new()
        })
        .await,
        Event::RoomKickResult(ResultCode::NOT_ROOM_OPERATOR)
    );
    bob.send("KICK #2 cat :too loud").await;
    assert_eq!(
        bob.until(" KICK ").await,
        ":bob!bob@plaza.users KICK #2 cat :too loud"
    );
    assert_eq!(
        amy.until(" KICK ").await,
        ":bob!bob@plaza.users KICK #2 cat :too loud"
    );
    let kicked = cat
        .until("the kick", |e| matches!(e, Event::RoomKicked { .. }))
        .await;
    assert!(
        matches!(&kicked, Event::RoomKicked { name, by, reason, .. } if name == "cat" && by == "bob" && reason == "too loud"),
        "{kicked:?}"
    );
    assert_eq!(
        cat.ask(Request::RoomChat { message: "hi".into() }).await,
        Event::RoomChatResult(ResultCode::USER_IN_LOBBY)
    );

    // A binary operator kicks an IRC user: it is in no channel after.
    cat.enter(2).await;
    assert_eq!(
        cat.ask(op("cat", true)).await,
        Event::RoomRoleResult(ResultCode::NOT_ROOM_OPERATOR)
    );
    amy.send("MODE #2 +o cat").await;
    amy.until(" MODE #2 +o :cat").await;
    cat.until("its op", |e| matches!(e, Event::RoomRole { roles: OPERATOR, .. }))
        .await;
    assert_eq!(
        cat.ask(Request::RoomKick {
            name: "bob".into(),
            reason: String::new(),
        })
        .await,
        Event::RoomKickResult(ResultCode::OK)
    );
    // No reason: the operator's name is the comment, as IRC servers do.
    assert_eq!(bob.until(" KICK ").await, ":cat!cat@plaza.users KICK #2 bob :cat");
    bob.send("PRIVMSG #2 :still here?").await;
    assert!(bob.until(" 404 ").await.contains("you are not in it"));
    bob.send("NAMES #2").await;
    assert_eq!(bob.until(" 366 ").await, ":plaza 366 bob #2 :End of /NAMES list");
    // And amy's NAMES no longer lists bob, without a PART for him.
    amy.send("NAMES #2").await;
    let names = amy.lines_until(" 366 ").await;
    assert!(names.iter().all(|l| !l.contains(" PART ")), "{names:?}");
    assert!(
        names.iter().any(|l| l == ":plaza 353 amy = #2 :@amy @cat"),
        "{names:?}"
    );
}

async fn operators_and_kicks_cross_cluster_nodes_and_go_with_the_room(redis: Engine) {
    let url = redis.url();
    let (a, b) = (
        TestServer::cluster_node(&url, 200).await,
        TestServer::cluster_node(&url, 200).await,
    );
    let mut amy = a.user("amy").await;
    let (ops, users) = enter_with_ops(&mut amy, 6).await;
    let amy_uid = uid_of(&users, "amy");
    assert_eq!(ops, [amy_uid], "the first member anywhere");
    // Node b reads the room's operators with bob's seat.
    let mut bob = b.user("bob").await;
    let (ops, users) = enter_with_ops(&mut bob, 6).await;
    assert_eq!(ops, [amy_uid]);
    let bob_uid = uid_of(&users, "bob");
    assert_eq!(
        bob.ask(op("amy", false)).await,
        Event::RoomRoleResult(ResultCode::NOT_ROOM_OPERATOR)
    );

    // amy, on node a, makes bob an operator; he, on node b, kicks her.
    assert_eq!(
        amy.ask(op("bob", true)).await,
        Event::RoomRoleResult(ResultCode::OK)
    );
    let told = bob.until("his op", |e| matches!(e, Event::RoomRole { .. })).await;
    assert!(matches!(told, Event::RoomRole { uid, roles: OPERATOR, .. } if uid == bob_uid));
    assert_eq!(
        bob.ask(Request::RoomKick {
            name: "amy".into(),
            reason: "bye".into()
        })
        .await,
        Event::RoomKickResult(ResultCode::OK)
    );
    amy.until(
        "her kick",
        |e| matches!(e, Event::RoomKicked { uid, .. } if *uid == amy_uid),
    )
    .await;
    bob.until("her departure", |e| *e == Event::RoomLeaveUser { uid: amy_uid })
        .await;
    assert_eq!(
        amy.ask(Request::RoomChat { message: "hi".into() }).await,
        Event::RoomChatResult(ResultCode::USER_IN_LOBBY)
    );

    // amy comes back on node a (bob is the operator); a node that follows
    // the room again reads it.
    let (ops, _) = enter_with_ops(&mut amy, 6).await;
    assert_eq!(ops, [bob_uid], "her operator status went with her seat");

    // Everyone leaves; the room's next member is its operator.
    for u in [&mut amy, &mut bob] {
        assert_eq!(
            u.ask(Request::RoomLeave).await,
            Event::RoomLeaveResult(ResultCode::OK)
        );
    }
    within("the room to be empty in the shared store", async {
        while redis.cmd(&["HLEN", "plaza:seats:{6}"]).await.trim() != ":0" {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let mut cat = b.user("cat").await;
    let (ops, users) = enter_with_ops(&mut cat, 6).await;
    assert_eq!(ops, [uid_of(&users, "cat")]);
}

#[tokio::test]
async fn a_voiced_member_speaks_in_a_moderated_channel_and_names_show_both_roles() {
    let (server, irc) = irc_server(true).await;
    let mut amy = Irc::register(irc, "amy", None).await;
    amy.join("#4").await;
    let mut bob = server.user("bob").await;
    assert_eq!(bob.enter(4).await.1, ResultCode::OK);
    amy.send("MODE #4 +m").await;
    amy.until(" MODE #4 :+m").await;
    let hi = Request::RoomChat { message: "hi".into() };
    assert_eq!(
        bob.ask(hi.clone()).await,
        Event::RoomChatResult(ResultCode::MODERATED)
    );

    amy.send("MODE #4 +v bob").await;
    assert_eq!(amy.until(" MODE ").await, ":amy!amy@plaza.users MODE #4 +v :bob");
    let told = bob
        .until("his voice", |e| matches!(e, Event::RoomRole { .. }))
        .await;
    assert!(matches!(told, Event::RoomRole { roles: VOICE, .. }), "{told:?}");
    assert_eq!(bob.ask(hi).await, Event::RoomChatResult(ResultCode::OK));
    assert_eq!(
        amy.until(" PRIVMSG ").await,
        ":bob!bob@plaza.users PRIVMSG #4 :hi"
    );
    amy.send("NAMES #4").await;
    assert_eq!(amy.until(" 353 ").await, ":plaza 353 amy = #4 :@amy +bob");

    // Both roles: `@` alone, or `@+` with multi-prefix.
    amy.send("MODE #4 +o bob").await;
    assert_eq!(amy.until(" MODE ").await, ":amy!amy@plaza.users MODE #4 +o :bob");
    let mut cat = Irc::connect(irc).await;
    cat.send("CAP REQ :multi-prefix").await;
    cat.send("NICK cat").await;
    cat.send("USER cat 0 * :cat").await;
    cat.send("CAP END").await;
    cat.until(" 376 ").await;
    cat.send("JOIN #4").await;
    assert_eq!(cat.until(" 353 ").await, ":plaza 353 cat = #4 :@amy @+bob cat");
    amy.send("NAMES #4").await;
    assert_eq!(amy.until(" 353 ").await, ":plaza 353 amy = #4 :@amy @bob cat");
}
