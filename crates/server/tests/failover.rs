//! Cluster mode when Redis fails: a real Sentinel failover mid-chat, a
//! Redis Cluster master's failover mid-chat, and a node whose link to Redis
//! is cut and comes back. Nothing acknowledged is
//! lost, and what a node missed is reported, never passed over.

use std::time::Instant;

use plaza_proto::{Event, Page, Replay, Request, ResultCode, features};
use plaza_test_support::{
    Engine, RedisCluster, RedisServer, Relay, Sentinels, TestClient, TestServer, http_get, retry_while,
    within,
};

plaza_test_support::on_each_engine!(a_node_buried_alive_tells_its_members_they_may_have_missed_messages);

/// A logged-in user with room history on (so it sees sequence numbers).
async fn member(server: &TestServer, name: &str) -> TestClient {
    let mut c = server.client().await;
    // The client said HELLO (notifications) on connecting; a second HELLO
    // asks for history too, and its answer is read here.
    c.hello_with(features::NOTIFICATIONS | features::HISTORY).await;
    assert!(matches!(c.recv().await, Event::Hello { features: 3, .. }));
    c.register(name, "pw").await;
    c.login(name, "pw").await;
    c
}

fn chat(message: &str) -> Request {
    Request::RoomChat {
        message: message.into(),
    }
}

/// Waits until `server`'s bus link is "ok" (`up`) or down.
async fn until_bus(server: &TestServer, up: bool) {
    let ctl = server.control().await;
    within(
        if up {
            "the bus link up"
        } else {
            "the bus link down"
        },
        async {
            loop {
                let s = ctl.status().await;
                let bus = s.cluster.as_ref().unwrap().bus.clone();
                if (bus == "ok") == up {
                    if !up {
                        // What /readyz answers.
                        assert!(s.not_ready().unwrap().starts_with("cluster bus down"), "{s:?}");
                    }
                    return;
                }
                tokio::task::yield_now().await;
            }
        },
    )
    .await;
}

/// Two nodes each with one member in room 1, both knowing the other.
async fn two_members(a: &TestServer, b: &TestServer) -> (TestClient, TestClient) {
    let mut amy = member(a, "amy").await;
    let mut bob = member(b, "bob").await;
    assert_eq!(amy.enter(1).await.1, ResultCode::OK);
    assert_eq!(bob.enter(1).await.1, ResultCode::OK);
    within("amy to see bob come in", async {
        while !matches!(amy.recv().await, Event::RoomNewUser { name, .. } if name == "bob") {}
    })
    .await;
    (amy, bob)
}

/// Waits for the last of `acked` at `c`; every one of them must have come
/// once, in this order. Returns all the room messages `c` got meanwhile.
async fn each_acknowledged_once(c: &mut TestClient, acked: &[String]) -> Vec<String> {
    let got = messages_until(c, acked.last().expect("something acknowledged")).await;
    let delivered: Vec<&String> = got.iter().filter(|m| acked.contains(m)).collect();
    assert_eq!(
        delivered,
        acked.iter().collect::<Vec<_>>(),
        "every acknowledged chat, once, in order"
    );
    got
}

/// Two cluster nodes, on stores `a` and `b` (the same Redis, reached
/// alike or not).
async fn two_nodes(a: &str, b: &str) -> (TestServer, TestServer) {
    (
        TestServer::cluster_node(a, 200).await,
        TestServer::cluster_node(b, 200).await,
    )
}

/// `c` says `n` chats named after `what`, each answered OK; they join
/// `acked`.
async fn acknowledged(c: &mut TestClient, what: &str, n: usize, acked: &mut Vec<String>) {
    for i in 0..n {
        let m = format!("{what} {i}");
        assert_eq!(c.ask(chat(&m)).await, Event::RoomChatResult(ResultCode::OK));
        acked.push(m);
    }
}

/// `c`, on `server`, chats until one is answered OK (it joins `acked`);
/// every other answer must be 112. Returns how many were.
async fn until_acknowledged(c: &mut TestClient, server: &TestServer, acked: &mut Vec<String>) -> usize {
    let mut refused = 0;
    within("the cluster to acknowledge chat again", async {
        for i in 0.. {
            let m = format!("switch {i}");
            match c.ask(chat(&m)).await {
                Event::RoomChatResult(ResultCode::OK) => return acked.push(m),
                Event::RoomChatResult(ResultCode::SERVICE_UNAVAILABLE) => refused += 1,
                other => panic!("{other:?}"),
            }
            // Ask again when the link is up (the event that changes the
            // answer), not in a tight loop.
            until_bus(server, true).await;
        }
    })
    .await;
    refused
}

/// The room messages `c` receives, skipping everything else, until one
/// says `last`.
async fn messages_until(c: &mut TestClient, last: &str) -> Vec<String> {
    within(&format!("{last:?} to arrive"), async {
        let mut got = Vec::new();
        loop {
            if let Event::RoomMessage { message, .. } = c.recv().await {
                got.push(message.clone());
                if message == last {
                    return got;
                }
            }
        }
    })
    .await
}

/// The primary is killed while amy talks to bob across two nodes. Every
/// chat amy was told OK reaches bob exactly once and in order; during the
/// switch amy is told 112 (never OK for what bob did not get); the nodes
/// find the new primary on their own.
#[tokio::test]
async fn a_sentinel_failover_mid_chat_loses_nothing_acknowledged() {
    let mut redis = Sentinels::start().await;
    let (a, b) = two_nodes(&redis.url(), &redis.url()).await;
    let (mut amy, mut bob) = two_members(&a, &b).await;

    let mut acked = Vec::new();
    acknowledged(&mut amy, "before", 5, &mut acked).await;
    let old = redis.primary.port;
    redis.primary.stop();
    let killed = Instant::now();
    until_bus(&a, false).await;

    // The sentinels take a second to see the primary down: meanwhile amy
    // is told 112, never OK.
    assert_eq!(
        amy.ask(chat("during")).await,
        Event::RoomChatResult(ResultCode::SERVICE_UNAVAILABLE)
    );
    within("the sentinels to promote the replica", async {
        while redis.primary_port().await == Some(old) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let promoted = killed.elapsed();
    // Until both nodes are on the new primary, 112; then OK.
    let refused = 1 + until_acknowledged(&mut amy, &a, &mut acked).await;
    let recovered = killed.elapsed();
    acknowledged(&mut amy, "after", 5, &mut acked).await;
    eprintln!(
        "failover: replica promoted {promoted:?} and the first chat acknowledged {recovered:?} \
         after the primary was killed ({refused} answered 112 meanwhile)"
    );

    let got = each_acknowledged_once(&mut bob, &acked).await;
    let mut seen = std::collections::HashSet::new();
    assert!(got.iter().all(|m| seen.insert(m)), "nothing twice: {got:?}");

    // The account store followed the primary too: a new account registers
    // and logs in on the new primary, and amy's mark keeps her name hers.
    let mut cid = b.client().await;
    cid.register("cid", "pw").await;
    assert_eq!(cid.try_login("cid", "pw").await, ResultCode::OK);
    let mut again = b.client().await;
    assert_eq!(again.try_login("amy", "pw").await, ResultCode::LOGIN_ALREADY);
}

/// On a Redis Cluster with a replica a master, the master that holds room
/// 1's channel is killed while amy talks to bob across two nodes. Its
/// replica is promoted by the cluster itself; meanwhile amy is told 112,
/// never OK for what bob did not get, and every chat she was told OK
/// reaches bob exactly once and in order.
#[tokio::test]
async fn a_redis_cluster_master_failover_mid_chat_loses_nothing_acknowledged() {
    let mut redis = RedisCluster::start_with_replicas(1).await;
    let (a, b) = two_nodes(&redis.url(), &redis.url()).await;
    let (mut amy, mut bob) = two_members(&a, &b).await;
    let mut acked = Vec::new();
    acknowledged(&mut amy, "before", 3, &mut acked).await;
    let owner = redis.owner("plaza:room:{1}").await.expect("a master owns room 1");
    redis.masters[owner].stop();
    let killed = Instant::now();
    // The room's master is dead: amy is told 112, never OK, until its
    // replica took over and both nodes are subscribed there.
    assert_eq!(
        amy.ask(chat("during")).await,
        Event::RoomChatResult(ResultCode::SERVICE_UNAVAILABLE)
    );
    let refused = 1 + until_acknowledged(&mut amy, &a, &mut acked).await;
    let recovered = killed.elapsed();
    acknowledged(&mut amy, "after", 3, &mut acked).await;
    eprintln!(
        "redis cluster failover: the first chat acknowledged {recovered:?} after the master \
         was killed ({refused} answered 112 meanwhile)"
    );
    let got = each_acknowledged_once(&mut bob, &acked).await;
    let mut seen = std::collections::HashSet::new();
    assert!(got.iter().all(|m| seen.insert(m)), "nothing twice: {got:?}");
    // What amy's node numbered but could not publish (told 112) shows at
    // bob's node as a gap in her stream: counted, not passed over.
    let stats = b.control().await.status().await.cluster.unwrap().bus_stats;
    assert!(stats.gaps > 0, "{stats:?}");
}

/// The sentinels fail over while the primary runs: it is demoted, and what
/// a node writes to it is answered READONLY. The nodes ask the sentinels
/// again and carry on; every chat amy was told OK reaches bob once, in
/// order.
#[tokio::test]
async fn a_demoted_primary_is_left_for_the_new_one() {
    let redis = Sentinels::start().await;
    let (a, b) = two_nodes(&redis.url(), &redis.url()).await;
    let (mut amy, mut bob) = two_members(&a, &b).await;
    let mut acked = Vec::new();
    assert_eq!(
        amy.ask(chat("before")).await,
        Event::RoomChatResult(ResultCode::OK)
    );
    acked.push("before".to_owned());

    let old = redis.primary.port;
    redis.failover().await;
    within("the old primary to be a replica", async {
        // The demotion closes the old primary's connections: asking may
        // fail meanwhile, and is asked again.
        while redis.primary_port().await == Some(old)
            || !redis
                .primary
                .try_cmd(&["ROLE"])
                .await
                .is_ok_and(|r| r.contains("slave"))
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // Each answer is OK or 112, until OK comes back for good.
    within("five acknowledged chats in a row", async {
        let mut in_a_row = 0;
        for i in 0.. {
            let m = format!("after {i}");
            match amy.ask(chat(&m)).await {
                Event::RoomChatResult(ResultCode::OK) => {
                    acked.push(m);
                    in_a_row += 1;
                    if in_a_row == 5 {
                        return;
                    }
                }
                Event::RoomChatResult(ResultCode::SERVICE_UNAVAILABLE) => {
                    in_a_row = 0;
                    until_bus(&a, true).await;
                }
                other => panic!("{other:?}"),
            }
        }
    })
    .await;
    each_acknowledged_once(&mut bob, &acked).await;
    // The store's connection still points at the old primary: its first
    // write is refused (READONLY, answered 112), then it follows.
    let mut cid = b.client().await;
    let register = retry_while(ResultCode::SERVICE_UNAVAILABLE, async || {
        let r = Request::Register {
            name: "cid".into(),
            password: "pw".into(),
        };
        match cid.call(r).await {
            Event::RegisterResult(code) => code,
            other => panic!("{other:?}"),
        }
    })
    .await;
    assert_eq!(register, ResultCode::OK);
    assert_eq!(cid.try_login("cid", "pw").await, ResultCode::OK);
}

/// Node b's connections to Redis are cut (a relay between them drops them)
/// while amy, on node a, talks. amy is told 112: b did not get it. When b
/// is back it finds the gap from a's stamps, tells bob (341), and the
/// room's history says there is a gap instead of passing over it.
#[tokio::test]
async fn a_node_cut_off_from_redis_reports_the_gap_and_resynchronises() {
    let redis = RedisServer::start().await;
    let relay = Relay::start(([127, 0, 0, 1], redis.port).into()).await;
    let (a, b) = two_nodes(&redis.url(), &format!("redis://{}/0", relay.addr)).await;
    let (mut amy, mut bob) = two_members(&a, &b).await;

    assert_eq!(
        amy.ask(chat("before")).await,
        Event::RoomChatResult(ResultCode::OK)
    );
    let before = within("amy's message", async {
        loop {
            if let Event::RoomMessage { seq, .. } = bob.recv().await {
                return seq;
            }
        }
    })
    .await;

    relay.down();
    relay.cut();
    until_bus(&b, false).await;
    for m in ["lost 1", "lost 2"] {
        assert_eq!(
            amy.ask(chat(m)).await,
            Event::RoomChatResult(ResultCode::SERVICE_UNAVAILABLE),
            "b's subscription is gone: not acknowledged"
        );
    }
    relay.restore();
    until_bus(&b, true).await;

    // a's next stamp (a tick after a quiet second, or this chat) shows b
    // the jump.
    assert_eq!(
        amy.ask(chat("after")).await,
        Event::RoomChatResult(ResultCode::OK)
    );
    let mut missed = None;
    let after = within("the gap notice, then amy's next message", async {
        loop {
            match bob.recv().await {
                Event::Missed { count, seqs: None } => missed = Some(count),
                Event::RoomMessage { message, seq, .. } if message == "after" => return seq,
                Event::RoomMessage { message, .. } => panic!("{message:?} was not published to b"),
                _ => {}
            }
        }
    })
    .await;
    assert!(
        missed.is_some_and(|n| n >= 2),
        "bob is told he may have missed some: {missed:?}"
    );
    assert!(after > before + 1, "a number is skipped where messages were lost");

    // A client that saw `before` and asks what came after is told of a gap.
    bob.send(Request::History {
        page: Page::After(before),
        limit: 10,
    })
    .await;
    let replay = within("the history answer", async {
        loop {
            if let Event::History(r) = bob.recv().await {
                return r;
            }
        }
    })
    .await;
    assert!(matches!(replay, Replay { gap: true, .. }), "{replay:?}");

    let ctl = b.control().await;
    let stats = ctl.status().await.cluster.unwrap().bus_stats;
    assert_eq!(stats.gaps, 1);
    assert!(stats.missed >= 2 && stats.received_messages > 0, "{stats:?}");
    let (_, _, metrics) = http_get(b.running.metrics_addr().unwrap(), "/metrics", "").await;
    for series in [
        "plaza_bus_gaps_total 1",
        "plaza_bus_channels 3",
        "plaza_bus_peers 1",
        "plaza_bus_delivery_seconds_count",
        "plaza_bus_received_bytes_total",
        "plaza_bus_published_bytes_total",
        "plaza_directory_lookups_total",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
}

/// The other nodes bury a node that is alive (its heartbeat looked lapsed):
/// they stop sending it their rooms' chat until it has rewritten its state.
/// Its members are told they may have missed messages (341, count unknown),
/// never left to think nothing was said, and then everything is as before.
/// The lapse is made real through Redis: the node's time in the live set is
/// set to 0 until another node's heartbeat finds it there and buries it.
async fn a_node_buried_alive_tells_its_members_they_may_have_missed_messages(redis: Engine) {
    let (a, b) = two_nodes(&redis.url(), &redis.url()).await;
    let (mut amy, mut bob) = two_members(&a, &b).await;
    let node_b = b.control().await.status().await.cluster.unwrap().node.to_string();
    let ctl_a = a.control().await;
    within("node a to bury node b", async {
        loop {
            redis.cmd(&["ZADD", "plaza:{nodes}:live", "0", &node_b]).await;
            if ctl_a.status().await.cluster.unwrap().remote_users == 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    amy.until("bob to leave", |e| matches!(e, Event::RoomLeaveUser { .. }))
        .await;
    assert_eq!(
        bob.until("the missed notice", |e| matches!(e, Event::Missed { .. }))
            .await,
        Event::Missed { count: 0, seqs: None }
    );
    // Node b rewrote its state: bob is back for amy, and hears her again.
    amy.until(
        "bob back",
        |e| matches!(e, Event::RoomNewUser { name, .. } if name == "bob"),
    )
    .await;
    let mut acked = Vec::new();
    acknowledged(&mut amy, "back", 2, &mut acked).await;
    each_acknowledged_once(&mut bob, &acked).await;
}
