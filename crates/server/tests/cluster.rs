//! Cluster mode: three nodes on one real `redis-server`, and the same tests
//! on a real three-master Redis Cluster, all on loopback, with clients
//! spread across the nodes.

use plaza_proto::{Event, Request, ResultCode};
use plaza_server::control::Command;
use plaza_test_support::{Engine, RedisCluster, ServerProcess, TestClient, TestServer, within};

plaza_test_support::on_each_engine!(
    room_chat_whisper_broadcast_user_list_and_duplicate_login_span_three_nodes,
    kick_and_mute_reach_users_on_other_nodes,
    concurrent_joins_from_three_nodes_never_overfill_a_room,
    a_refused_seat_is_not_taken_for_a_gap,
    a_killed_node_is_buried_and_its_users_leave_the_other_nodes,
    shutdown_is_per_node_and_a_cluster_drain_reaches_every_node,
    operator_notices_reach_every_node_and_a_remote_user_is_located,
    a_graceful_stop_does_not_log_that_the_node_was_buried,
    a_redis_restart_is_survived_without_false_acknowledgements,
);

async fn nodes(url: &str, room_capacity: usize) -> [TestServer; 3] {
    [
        TestServer::cluster_node(url, room_capacity).await,
        TestServer::cluster_node(url, room_capacity).await,
        TestServer::cluster_node(url, room_capacity).await,
    ]
}

fn chat(message: &str) -> Request {
    Request::RoomChat {
        message: message.into(),
    }
}

async fn room_chat_whisper_broadcast_user_list_and_duplicate_login_span_three_nodes(redis: Engine) {
    let [a, b, c] = nodes(&redis.url(), 200).await;
    let mut amy = a.user("amy").await;
    let mut bob = b.user("bob").await;
    let mut cat = c.user("cat").await;
    for u in [&mut amy, &mut bob, &mut cat] {
        u.until_users(3).await;
    }

    // Member lists for newcomers cover every node; members are told.
    let (list, code) = amy.enter(1).await;
    assert_eq!((list.len(), code), (1, ResultCode::OK));
    let (list, code) = bob.enter(1).await;
    assert_eq!(code, ResultCode::OK);
    let mut names: Vec<_> = list.iter().map(|(_, n)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["amy", "bob"]);
    let bob_uid = list.iter().find(|(_, n)| n == "bob").unwrap().0;
    assert_eq!(
        amy.recv().await,
        Event::RoomNewUser {
            uid: bob_uid,
            name: "bob".into()
        }
    );
    let (list, _) = cat.enter(1).await;
    assert_eq!(list.len(), 3);
    for u in [&mut amy, &mut bob] {
        assert!(matches!(u.recv().await, Event::RoomNewUser { name, .. } if name == "cat"));
    }
    if let Engine::Cluster(cluster) = &redis {
        // Room 1's channel is a shard channel, on the master that owns its
        // slot, with the three nodes subscribed.
        let mut counts = Vec::new();
        for m in &cluster.masters {
            counts.push(m.cmd(&["PUBSUB", "SHARDNUMSUB", "plaza:room:{1}"]).await);
        }
        assert!(counts.iter().any(|r| r.ends_with(":3\r\n")), "{counts:?}");
    }
    // Member ids from different nodes never collide.
    let mut uids: Vec<u64> = list.iter().map(|(u, _)| *u).collect();
    uids.dedup();
    assert_eq!(uids.len(), 3);

    // Five messages sent back to back reach the members on the other nodes
    // exactly once and in order; each is acknowledged in order.
    for i in 0..5 {
        amy.send(chat(&format!("m{i}"))).await;
    }
    let mut acks = 0;
    while acks < 5 {
        match amy.recv().await {
            Event::RoomChatResult(code) => {
                assert_eq!(code, ResultCode::OK);
                acks += 1;
            }
            Event::RoomChat { name, .. } => assert_eq!(name, "amy"),
            other => panic!("unexpected {other:?}"),
        }
    }
    for u in [&mut bob, &mut cat] {
        for i in 0..5 {
            assert_eq!(
                u.recv().await,
                Event::RoomChat {
                    name: "amy".into(),
                    message: format!("m{i}")
                }
            );
        }
    }
    // Nothing was delivered twice: the next thing bob gets is cat's message.
    // (`ask` skips cat's own copy, which comes before the acknowledgement.)
    assert_eq!(cat.ask(chat("end")).await, Event::RoomChatResult(ResultCode::OK));
    assert_eq!(
        bob.recv().await,
        Event::RoomChat {
            name: "cat".into(),
            message: "end".into()
        }
    );
    assert!(matches!(amy.recv().await, Event::RoomChat { name, .. } if name == "cat"));

    // Whispers find their recipient on whichever node it is.
    assert_eq!(
        bob.ask(Request::Whisper {
            to: "amy".into(),
            message: "psst".into()
        })
        .await,
        Event::WhisperResult(ResultCode::OK)
    );
    assert_eq!(
        amy.recv().await,
        Event::Whisper {
            from: "bob".into(),
            message: "psst".into()
        }
    );
    assert_eq!(
        bob.ask(Request::Whisper {
            to: "nobody".into(),
            message: "?".into()
        })
        .await,
        Event::WhisperResult(ResultCode::USER_NOT_FOUND)
    );

    // A broadcast reaches every node (cat's own copy comes before the
    // acknowledgement, skipped by `ask`).
    assert_eq!(
        cat.ask(Request::Broadcast {
            message: "all".into()
        })
        .await,
        Event::BroadcastResult(ResultCode::OK)
    );
    for u in [&mut amy, &mut bob] {
        assert_eq!(
            u.recv().await,
            Event::Broadcast {
                from: "cat".into(),
                message: "all".into()
            }
        );
    }

    // Leaving is seen on the other nodes.
    assert_eq!(
        bob.ask(Request::RoomLeave).await,
        Event::RoomLeaveResult(ResultCode::OK)
    );
    for u in [&mut amy, &mut cat] {
        assert_eq!(u.recv().await, Event::RoomLeaveUser { uid: bob_uid });
    }

    // A name logged in on one node is refused on the others.
    let mut again = c.client().await;
    assert_eq!(again.try_login("amy", "pw").await, ResultCode::LOGIN_ALREADY);
    let mut again = b.client().await;
    assert_eq!(again.try_login("cat", "pw").await, ResultCode::LOGIN_ALREADY);
}

async fn kick_and_mute_reach_users_on_other_nodes(redis: Engine) {
    let [a, b, c] = nodes(&redis.url(), 200).await;
    let mut boss = a.client().await;
    boss.register("boss", "pw").await;
    let account = match redis {
        Engine::One(_) => "plaza:account:boss",
        // Tagged with the name, like every user key on a Redis Cluster.
        Engine::Cluster(_) => "plaza:account:{boss}",
    };
    redis.cmd(&["HSET", account, "roles", "admin"]).await;
    boss.login("boss", "pw").await;
    assert_eq!(
        boss.call(Request::Admin {
            secret: String::new()
        })
        .await,
        Event::AdminResult(ResultCode::OK)
    );
    let mut bob = b.user("bob").await;
    let mut cat = c.user("cat").await;
    boss.until_users(3).await;
    assert_eq!(cat.enter(2).await.1, ResultCode::OK);

    assert_eq!(
        boss.ask(Request::Mute {
            name: "cat".into(),
            seconds: 60
        })
        .await,
        Event::MuteResult(ResultCode::OK)
    );
    assert_eq!(cat.recv().await, Event::Muted { seconds: 60 });
    assert_eq!(
        cat.ask(chat("let me talk")).await,
        Event::RoomChatResult(ResultCode::MUTED)
    );

    assert_eq!(
        boss.ask(Request::Kick { name: "bob".into() }).await,
        Event::KickResult(ResultCode::OK)
    );
    let events = bob.until_closed().await;
    assert_eq!(events, vec![Event::Kicked { by: "boss".into() }]);
    boss.until_users(2).await;

    // An operator's kick on node c reaches a user on node a.
    let mut amy = a.user("amy").await;
    cat.until_users(3).await;
    let r = c.control().await.cmd(Command::Kick { name: "amy".into() }).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(
        amy.until_closed().await,
        vec![Event::Kicked {
            by: "operator".into()
        }]
    );
}

async fn concurrent_joins_from_three_nodes_never_overfill_a_room(redis: Engine) {
    let servers = nodes(&redis.url(), 4).await;
    let mut users = Vec::new();
    for i in 0..12 {
        users.push(servers[i % 3].user(&format!("u{i}")).await);
    }
    // Everyone asks at once, then everyone reads its answer.
    for u in &mut users {
        u.send(Request::RoomEnter { room: 7 }).await;
    }
    let mut seated = 0;
    for u in &mut users {
        match u
            .until("an enter result", |e| matches!(e, Event::RoomEnterResult(_)))
            .await
        {
            Event::RoomEnterResult(ResultCode::OK) => seated += 1,
            Event::RoomEnterResult(ResultCode::ROOM_FULL) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seated, 4, "room capacity is 4");
    assert_eq!(redis.cmd(&["HLEN", "plaza:seats:{7}"]).await.trim(), ":4");
}

/// A refused seat takes a number in its node's stream on the room's
/// channel like an enter: the script publishes the bare stamp instead, so
/// the other nodes see no hole and tell their members of no gap.
async fn a_refused_seat_is_not_taken_for_a_gap(redis: Engine) {
    let [a, b, c] = nodes(&redis.url(), 2).await;
    let mut amy = b.user("amy").await;
    assert_eq!(amy.enter(3).await.1, ResultCode::OK);
    // Node c's numbers on the room's channel, as node b sees them: 1, 2.
    let mut zed = c.user("zed").await;
    assert_eq!(zed.enter(3).await.1, ResultCode::OK);
    assert_eq!(
        zed.ask(Request::RoomLeave).await,
        Event::RoomLeaveResult(ResultCode::OK)
    );
    let mut xia = a.user("xia").await;
    assert_eq!(xia.enter(3).await.1, ResultCode::OK);
    // Node c follows the room no more, so the shared store refuses: 3.
    let mut yan = c.user("yan").await;
    assert_eq!(yan.enter(3).await.1, ResultCode::ROOM_FULL);
    assert_eq!(
        xia.ask(Request::RoomLeave).await,
        Event::RoomLeaveResult(ResultCode::OK)
    );
    // 4: right after 3.
    assert_eq!(zed.enter(3).await.1, ResultCode::OK);
    zed.say("after").await;
    let mut heard = Vec::new();
    within("zed's message", async {
        loop {
            match amy.recv().await {
                Event::RoomChat { message, .. } if message == "after" => return,
                e @ Event::Missed { .. } => heard.push(e),
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(heard, [], "a refused seat was taken for a gap");
}

/// A node that dies without cleanup is buried by the others within the
/// node TTL (3 s here, plus up to one heartbeat): its users leave their
/// rooms and lists, and their names are free at once.
async fn a_killed_node_is_buried_and_its_users_leave_the_other_nodes(redis: Engine) {
    let live = TestServer::cluster_node(&redis.url(), 200).await;
    let mut amy = live.user("amy").await;
    assert_eq!(amy.enter(1).await.1, ResultCode::OK);

    let dir = tempfile::tempdir().unwrap();
    let node = ServerProcess::cluster_node(env!("CARGO_BIN_EXE_plaza-server"), dir.path(), &redis.url());
    let mut dan = TestClient::connect(node.addr).await;
    dan.register("dan", "pw").await;
    dan.login("dan", "pw").await;
    let (_, code) = dan.enter(1).await;
    assert_eq!(code, ResultCode::OK);
    let Event::RoomNewUser { uid, name } = amy.recv().await else {
        panic!("expected dan to join")
    };
    assert_eq!(name, "dan");

    node.signal("KILL");
    node.wait().await;

    // The live node buries it: amy is told dan left, without asking.
    assert_eq!(amy.recv().await, Event::RoomLeaveUser { uid });
    assert_eq!(amy.total_users().await, 1);
    // dan's name was freed with the burial, not at its mark's TTL.
    let mut again = live.client().await;
    assert_eq!(again.try_login("dan", "pw").await, ResultCode::OK);
}

/// Redis goes away and comes back empty (on a Redis Cluster: every master,
/// back with its cluster configuration and no data). Meanwhile: the nodes say the bus is
/// down, local delivery goes on, and nothing that needed another node is
/// acknowledged. Afterwards the nodes rewrite their state and chat across
/// nodes works again.
async fn a_redis_restart_is_survived_without_false_acknowledgements(mut redis: Engine) {
    let [a, b, _c] = nodes(&redis.url(), 200).await;
    let mut amy = a.user("amy").await;
    let mut ann = a.user("ann").await;
    let mut bob = b.user("bob").await;
    amy.until_users(3).await;
    bob.until_users(3).await;
    for u in [&mut amy, &mut ann, &mut bob] {
        assert_eq!(u.enter(1).await.1, ResultCode::OK);
    }
    // Wait until amy's node knows bob is in the room.
    amy.until(
        "bob in the room",
        |e| matches!(e, Event::RoomNewUser { name, .. } if name == "bob"),
    )
    .await;

    redis.stop();
    let ctl = a.control().await;
    within("node a to report the bus down", async {
        loop {
            let s = ctl.status().await;
            if s.cluster.unwrap().bus.starts_with("down") {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    // Local delivery goes on; the room has a member elsewhere, so amy is
    // told her message did not reach everyone.
    assert_eq!(
        amy.ask(chat("during")).await,
        Event::RoomChatResult(ResultCode::SERVICE_UNAVAILABLE)
    );
    ann.until(
        "amy's message",
        |e| matches!(e, Event::RoomChat { message, .. } if message == "during"),
    )
    .await;
    assert_eq!(
        amy.ask(Request::Whisper {
            to: "bob".into(),
            message: "hello?".into()
        })
        .await,
        Event::WhisperResult(ResultCode::SERVICE_UNAVAILABLE)
    );

    redis.restart().await;
    for s in [&a, &b] {
        let ctl = s.control().await;
        within("the bus link to come back", async {
            loop {
                let c = ctl.status().await.cluster.unwrap();
                if c.bus == "ok" && c.remote_users > 0 {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
    }
    amy.until_users(3).await;
    bob.until_users(3).await;
    // Both nodes rewrote their state: cross-node chat works again, and the
    // seats are back in Redis.
    within("amy's message to reach bob", async {
        loop {
            let _ = amy.ask(chat("after")).await;
            let e = bob.until("a chat", |e| matches!(e, Event::RoomChat { .. })).await;
            if matches!(&e, Event::RoomChat { message, .. } if message == "after") {
                return;
            }
        }
    })
    .await;
    assert_eq!(redis.cmd(&["HLEN", "plaza:seats:{1}"]).await.trim(), ":3");
}

async fn shutdown_is_per_node_and_a_cluster_drain_reaches_every_node(redis: Engine) {
    let [a, b, c] = nodes(&redis.url(), 200).await;
    let mut amy = a.user("amy").await;
    let mut bob = b.user("bob").await;
    let mut cat = c.user("cat").await;
    amy.until_users(3).await;

    // One node shuts down: only its users go, and the others see them go
    // at once (the node removes itself from Redis on the way out).
    assert!(c.control().await.cmd(Command::Shutdown).await.ok);
    assert!(
        cat.until_closed()
            .await
            .iter()
            .any(|e| matches!(e, Event::Notice { .. }))
    );
    amy.until_users(2).await;
    assert_eq!(
        bob.ask(Request::Ping { nonce: 1 }).await,
        Event::Pong { nonce: 1 }
    );

    // A drain for the whole cluster, asked of one node, empties every node.
    let r = a
        .control()
        .await
        .cmd(Command::Drain {
            seconds: 1,
            cluster: true,
        })
        .await;
    assert!(r.ok, "{r:?}");
    for u in [&mut amy, &mut bob] {
        let events = u.until_closed().await;
        let countdown = events
            .iter()
            .filter(|e| matches!(e, Event::Notice { message } if message.contains("shutting down in")))
            .count();
        assert_eq!(
            countdown, 1,
            "one countdown notice per mark, on the node asked too: {events:?}"
        );
    }
}

async fn operator_notices_reach_every_node_and_a_remote_user_is_located(redis: Engine) {
    let [a, b, _c] = nodes(&redis.url(), 200).await;
    let mut amy = a.user("amy").await;
    let mut bob = b.user("bob").await;
    amy.until_users(2).await;
    let ctl = a.control().await;

    // Where is bob? On node b.
    let r = ctl.cmd(Command::User { name: "bob".into() }).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.data["remote"], true);
    assert!(r.data["node"].as_u64().is_some(), "{r:?}");

    // A notice to everyone reaches both nodes' users; --local only amy.
    let r = ctl
        .cmd(Command::Notice {
            room: None,
            message: "to all".into(),
            local: false,
        })
        .await;
    assert!(r.ok, "{r:?}");
    for u in [&mut amy, &mut bob] {
        u.until(
            "the notice",
            |e| matches!(e, Event::Notice { message } if message == "to all"),
        )
        .await;
    }
    let r = ctl
        .cmd(Command::Notice {
            room: None,
            message: "here only".into(),
            local: true,
        })
        .await;
    assert!(r.ok, "{r:?}");
    amy.until(
        "the local notice",
        |e| matches!(e, Event::Notice { message } if message == "here only"),
    )
    .await;
    // bob's next answer comes with no notice before it.
    bob.send(Request::Ping { nonce: 5 }).await;
    assert_eq!(bob.recv().await, Event::Pong { nonce: 5 });
}

async fn a_graceful_stop_does_not_log_that_the_node_was_buried(redis: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let node = ServerProcess::spawn(
        env!("CARGO_BIN_EXE_plaza-server"),
        dir.path(),
        &["--store", &url, "--cluster", "--presence-ttl-secs", "3"],
    );
    let mut amy = TestClient::connect(node.addr).await;
    amy.register("amy", "pw").await;
    amy.login("amy", "pw").await;
    node.signal("TERM");
    amy.until_closed().await;
    drop(amy);
    let (status, log) = node.wait_with_log().await;
    assert!(status.success());
    assert!(log.contains("plaza-server stopped"), "{log}");
    assert!(!log.contains("buried"), "{log}");
    assert!(!log.contains("WARN"), "a clean stop warns of nothing: {log}");
}

/// A Redis Cluster whose servers ask for a password: nodes given it in the
/// URL work (commands and their own subscriptions alike); a node without it
/// does not start, and says why.
#[tokio::test]
async fn a_redis_cluster_with_a_password_is_reached_with_it() {
    let redis = RedisCluster::start().await;
    redis.require_password("s3cret").await;
    let url = redis
        .url()
        .replace("redis+cluster://", "redis+cluster://:s3cret@");
    let (a, b) = (
        TestServer::cluster_node(&url, 200).await,
        TestServer::cluster_node(&url, 200).await,
    );
    let mut amy = a.user("amy").await;
    let mut bob = b.user("bob").await;
    assert_eq!(amy.enter(1).await.1, ResultCode::OK);
    assert_eq!(bob.enter(1).await.1, ResultCode::OK);
    amy.until(
        "bob in the room",
        |e| matches!(e, Event::RoomNewUser { name, .. } if name == "bob"),
    )
    .await;
    assert_eq!(amy.ask(chat("hi")).await, Event::RoomChatResult(ResultCode::OK));
    assert_eq!(
        bob.until("amy's chat", |e| matches!(e, Event::RoomChat { .. }))
            .await,
        Event::RoomChat {
            name: "amy".into(),
            message: "hi".into()
        }
    );

    let dir = tempfile::tempdir().unwrap();
    let settings = plaza_server::Settings {
        bind: Some("127.0.0.1:0".parse().unwrap()),
        control_bind: Some("127.0.0.1:0".parse().unwrap()),
        metrics_bind: Some("off".into()),
        data_dir: Some(dir.path().to_owned()),
        store: Some(redis.url()),
        cluster: Some(true),
        ..Default::default()
    };
    let Err(e) = plaza_server::start(settings.resolve().unwrap()).await else {
        panic!("a node started without the password")
    };
    let why = format!("{e:#}");
    assert!(why.contains("NOAUTH") || why.contains("uthentication"), "{why}");
}
