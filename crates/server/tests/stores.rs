//! The same account behaviour from both stores: the embedded one, a real
//! `redis-server` started for the test on a free loopback port, and a real
//! three-master Redis Cluster.

use std::sync::Arc;

use plaza_proto::{Event, Request, ResultCode};
use plaza_server::Settings;
use plaza_server::control::Command;
use plaza_test_support::{RedisCluster, RedisServer, ServerProcess, TestServer, retry_while, within};

/// A server on the Redis at `url` (or the embedded store when `None`).
async fn server(url: Option<String>, dir: Option<Arc<tempfile::TempDir>>) -> TestServer {
    let configure = move |s: &mut Settings| {
        s.store = url;
        s.redis_timeout_ms = Some(500);
    };
    match dir {
        Some(d) => TestServer::in_dir(d, configure).await,
        None => TestServer::with(configure).await,
    }
}

/// `burns_misused`: the store spends a token presented under another name
/// (one Redis, where tokens are found by digest alone; on a Redis Cluster
/// and in the embedded store a token is found under its name, so another
/// name does not find it).
async fn login_duplicate_mute_resume(url: Option<String>, burns_misused: bool) {
    let s = server(url.clone(), None).await;
    let mut amy = s.user("amy").await;
    // Names that look like amy's are not a second account.
    let mut lookalike = s.client().await;
    for (name, code) in [
        ("Amy", ResultCode::NAME_TAKEN),
        ("AMY", ResultCode::NAME_TAKEN),
        ("a\u{200B}my", ResultCode::INVALID_NAME),
        ("\u{202E}yma", ResultCode::INVALID_NAME),
    ] {
        let r = lookalike
            .call(Request::Register {
                name: name.into(),
                password: "pw".into(),
            })
            .await;
        assert_eq!(r, Event::RegisterResult(code), "{name:?}");
    }
    // The other way round: a capital first, then its lower case.
    lookalike.register("Zed", "pw").await;
    assert_eq!(
        lookalike
            .call(Request::Register {
                name: "zed".into(),
                password: "pw".into()
            })
            .await,
        Event::RegisterResult(ResultCode::NAME_TAKEN)
    );
    // A name typed decomposed (e + a combining accent) is the composed one.
    lookalike.register("re\u{0301}my", "pw").await;
    lookalike.login("r\u{00E9}my", "pw").await;
    // Duplicate login.
    let mut again = s.client().await;
    assert_eq!(again.try_login("amy", "pw").await, ResultCode::LOGIN_ALREADY);
    let mut stranger = s.client().await;
    assert_eq!(
        stranger.try_login("zed", "pw").await,
        ResultCode::INVALID_CREDENTIALS
    );

    // Mute through the control link; it survives a reconnect and a restart.
    let ctl = s.control().await;
    assert!(
        ctl.cmd(Command::Mute {
            name: "amy".into(),
            seconds: 3600
        })
        .await
        .ok
    );
    assert_eq!(amy.recv().await, Event::Muted { seconds: 3600 });
    let token = amy.token.clone().expect("a token came with the login");
    // While amy is logged in, her token gets 31 and is not spent by that.
    let mut early = s.client().await;
    assert_eq!(early.try_resume("amy", &token).await, ResultCode::LOGIN_ALREADY);
    drop(amy);
    let mut amy = s.client().await;
    // Resume with the token: no password needed.
    let code = retry_while(ResultCode::LOGIN_ALREADY, async || {
        amy.try_resume("amy", &token).await
    })
    .await;
    // A LOGIN_ALREADY attempt does not consume the token; a success does.
    assert_eq!(code, ResultCode::OK);
    // She is told at once that she is still muted.
    assert!(matches!(amy.recv().await, Event::Muted { seconds: 3500..=3600 }));
    assert_eq!(
        amy.call(Request::Broadcast { message: "hi".into() }).await,
        Event::BroadcastResult(ResultCode::MUTED)
    );
    let fresh = amy.token.clone().unwrap();
    assert_ne!(fresh, token, "each login issues a new token");
    assert_eq!(
        amy.call(Request::Logout).await,
        Event::LogoutResult(ResultCode::OK)
    );
    assert_eq!(
        amy.try_resume("amy", &token).await,
        ResultCode::INVALID_CREDENTIALS,
        "tokens are single-use"
    );
    assert_eq!(
        amy.try_resume("bob", &fresh).await,
        ResultCode::INVALID_CREDENTIALS,
        "tokens are bound to a name"
    );
    let after_misuse = amy.try_resume("amy", &fresh).await;
    if burns_misused {
        // One Redis spends a token presented under another name.
        assert_eq!(
            after_misuse,
            ResultCode::INVALID_CREDENTIALS,
            "a misused token is burnt"
        );
    } else {
        // A token found under its name: one presented under another name
        // is refused and stays its owner's.
        assert_eq!(
            after_misuse,
            ResultCode::OK,
            "a misused token still works for its owner"
        );
        assert!(matches!(amy.recv().await, Event::Muted { .. }));
        assert_eq!(
            amy.call(Request::Logout).await,
            Event::LogoutResult(ResultCode::OK)
        );
    }
    amy.login("amy", "pw").await;
    assert!(matches!(amy.recv().await, Event::Muted { .. }));
    let keep = amy.token.clone().unwrap();

    // Restart the server on the same store: account, mute and token remain.
    let dir = s.dir.clone();
    let mut running = s.running;
    running.shutdown().await;
    within("stop", running.wait()).await;
    drop(amy);
    let s = server(url, Some(dir)).await;
    let mut amy = s.client().await;
    assert_eq!(amy.try_resume("amy", &keep).await, ResultCode::OK);
    assert!(
        matches!(amy.recv().await, Event::Muted { .. }),
        "the mute survives the restart, and she is told"
    );
    assert_eq!(
        amy.call(Request::Whisper {
            to: "amy".into(),
            message: "x".into()
        })
        .await,
        Event::WhisperResult(ResultCode::MUTED)
    );
    let ctl = s.control().await;
    assert!(ctl.cmd(Command::Unmute { name: "amy".into() }).await.ok);
    assert_eq!(amy.recv().await, Event::Muted { seconds: 0 });
    let mut bob = s.user("bob").await;
    assert_eq!(
        amy.call(Request::Whisper {
            to: "bob".into(),
            message: "free".into()
        })
        .await,
        Event::WhisperResult(ResultCode::OK)
    );
    assert!(matches!(bob.recv().await, Event::Whisper { .. }));
}

#[tokio::test]
async fn embedded_store_login_duplicate_mute_and_resume() {
    login_duplicate_mute_resume(None, false).await;
}

#[tokio::test]
async fn redis_store_login_duplicate_mute_and_resume() {
    let redis = RedisServer::start().await;
    login_duplicate_mute_resume(Some(redis.url()), true).await;
}

#[tokio::test]
async fn redis_cluster_store_login_duplicate_mute_and_resume() {
    let cluster = RedisCluster::start().await;
    login_duplicate_mute_resume(Some(cluster.url()), false).await;
    // The account is in its name's slot, found by the master that owns it.
    assert!(
        cluster
            .cmd(&["HGET", "plaza:account:{amy}", "hash"])
            .await
            .contains("argon2")
    );
}

#[tokio::test]
async fn duplicate_login_holds_across_two_nodes_sharing_redis() {
    let redis = RedisServer::start().await;
    let a = server(Some(redis.url()), None).await;
    let b = server(Some(redis.url()), None).await;
    let mut amy = a.user("amy").await;
    let token = amy.token.clone().unwrap();
    let mut other = b.client().await;
    assert_eq!(other.try_login("amy", "pw").await, ResultCode::LOGIN_ALREADY);
    // A resume on node b gets 31 too, and that does not spend the token.
    assert_eq!(other.try_resume("amy", &token).await, ResultCode::LOGIN_ALREADY);
    // Logging out on node a frees the name for node b, where the token works.
    assert_eq!(
        amy.call(Request::Logout).await,
        Event::LogoutResult(ResultCode::OK)
    );
    let code = retry_while(ResultCode::LOGIN_ALREADY, async || {
        other.try_resume("amy", &token).await
    })
    .await;
    assert_eq!(code, ResultCode::OK);
    assert!(redis.cmd(&["GET", "plaza:online:amy"]).await.contains(':'));
}

#[tokio::test]
async fn a_redis_outage_refuses_logins_with_112_and_chat_goes_on() {
    let mut redis = RedisServer::start().await;
    let s = server(Some(redis.url()), None).await;
    let mut amy = s.user("amy").await;
    let mut bob = s.user("bob").await;
    let mut carol = s.client().await;
    carol.register("carol", "pw").await;
    amy.enter(1).await;
    bob.enter(1).await;
    amy.recv().await;
    // Keep the accounts across the restart, then cut Redis off.
    assert!(redis.cmd(&["SAVE"]).await.contains("OK"));
    redis.stop();

    assert_eq!(
        carol.try_login("carol", "pw").await,
        ResultCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        carol
            .call(Request::Register {
                name: "dave".into(),
                password: "pw".into()
            })
            .await,
        Event::RegisterResult(ResultCode::SERVICE_UNAVAILABLE)
    );
    // Logged-in users keep chatting.
    assert_eq!(
        amy.call(Request::RoomChat {
            message: "still here".into()
        })
        .await,
        Event::RoomChatResult(ResultCode::OK)
    );
    assert!(matches!(bob.recv().await, Event::RoomChat { .. }));
    let ctl = s.control().await;
    let status = ctl.status().await;
    assert!(status.store.starts_with("down"), "{status:?}");

    // Redis comes back: logins work again on their own.
    redis.restart().await;
    let code = retry_while(ResultCode::SERVICE_UNAVAILABLE, async || {
        carol.try_login("carol", "pw").await
    })
    .await;
    assert_eq!(code, ResultCode::OK);
    assert_eq!(ctl.status().await.store, "ok");
}

#[tokio::test]
async fn seed_schema_logins_are_migrated_when_enabled() {
    let redis = RedisServer::start().await;
    // The seed's schema: GET <user id> holds the plaintext password.
    assert!(redis.cmd(&["SET", "oldtimer", "hunter2"]).await.contains("OK"));
    let plain = server(Some(redis.url()), None).await;
    let mut c = plain.client().await;
    assert_eq!(
        c.try_login("oldtimer", "hunter2").await,
        ResultCode::INVALID_CREDENTIALS,
        "off by default"
    );

    let url = redis.url();
    let compat = TestServer::with(move |s| {
        s.store = Some(url);
        s.seed_compat = Some(true);
    })
    .await;
    let mut c = compat.client().await;
    assert_eq!(
        c.try_login("oldtimer", "wrong").await,
        ResultCode::INVALID_CREDENTIALS
    );
    assert_eq!(c.try_login("oldtimer", "hunter2").await, ResultCode::OK);
    let hash = redis.cmd(&["HGET", "plaza:account:oldtimer", "hash"]).await;
    assert!(
        hash.contains("$argon2id$"),
        "rehashed into the Plaza schema: {hash}"
    );
    // Now it works without the switch too.
    assert_eq!(c.call(Request::Logout).await, Event::LogoutResult(ResultCode::OK));
    let mut d = plain.client().await;
    let code = retry_while(ResultCode::LOGIN_ALREADY, async || {
        d.try_login("oldtimer", "hunter2").await
    })
    .await;
    assert_eq!(code, ResultCode::OK);
}

/// A node that dies without cleanup (SIGKILL) leaves its users' marks,
/// which expire within the presence TTL; a live node keeps refreshing its own.
#[tokio::test]
async fn a_killed_nodes_users_are_freed_within_the_presence_ttl() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let live = TestServer::with({
        let url = url.clone();
        move |s| {
            s.store = Some(url);
            s.presence_ttl_secs = Some(3);
        }
    })
    .await;
    let _bob = live.user("bob").await;

    let dir = tempfile::tempdir().unwrap();
    let node = ServerProcess::spawn(
        env!("CARGO_BIN_EXE_plaza-server"),
        dir.path(),
        &[
            "--store",
            &url,
            "--presence-ttl-secs",
            "3",
            "--argon2-memory-kib",
            "64",
        ],
    );
    let mut amy = plaza_test_support::TestClient::connect(node.addr).await;
    amy.register("amy", "pw").await;
    amy.login("amy", "pw").await;
    let mut other = live.client().await;
    assert_eq!(other.try_login("amy", "pw").await, ResultCode::LOGIN_ALREADY);

    // Kill the node: no logout, no release.
    node.signal("KILL");
    node.wait().await;
    // Within the TTL (3 s) the name is free on the live node. Expiry inside
    // Redis sends us no event, so retry the login, pausing briefly between
    // tries (bounded by `within`); no timing is asserted.
    let code = within("amy's mark to expire", async {
        loop {
            match other.try_login("amy", "pw").await {
                ResultCode::LOGIN_ALREADY => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                c => break c,
            }
        }
    })
    .await;
    assert_eq!(code, ResultCode::OK);
    // Meanwhile the live node refreshed bob's mark: it is still there
    // after more than one TTL.
    let ttl = redis.cmd(&["TTL", "plaza:online:bob"]).await;
    assert!(
        ttl.starts_with(':') && !ttl.starts_with(":-"),
        "bob's mark: {ttl}"
    );
}

/// A node refreshes its users' presence marks a chunk at a time: every mark
/// it still holds gets the presence TTL again, one another node has taken
/// since is left alone, and a missing one is not created. `marks` of node
/// n1's (more than one chunk), each with a long TTL; then u7's is node
/// n2's. `key` names a user's mark.
async fn refresh_extends_own_marks(
    url: String,
    marks: usize,
    key: impl Fn(&str) -> String,
    cmd: impl AsyncFn(&[&str]) -> String,
) {
    for i in 1..=marks {
        let set = cmd(&["SET", &key(&format!("u{i}")), &format!("n1:{i}"), "EX", "1000"]).await;
        assert!(set.contains("OK"), "{set}");
    }
    assert!(
        cmd(&["SET", &key("u7"), "n2:7", "EX", "1000"])
            .await
            .contains("OK")
    );
    let dir = tempfile::tempdir().unwrap();
    let config = plaza_server::StoreConfig::Redis(plaza_server::store::RedisConfig {
        url,
        prefix: "plaza:".into(),
        timeout: std::time::Duration::from_secs(5),
        presence_ttl: std::time::Duration::from_secs(30),
        seed_compat: false,
    });
    let cost = plaza_server::HashCost {
        memory_kib: 64,
        iterations: 1,
    };
    let store = plaza_server::Store::open(&config, dir.path(), cost, 60).unwrap();

    let users = (1..=marks as u64 + 1)
        .map(|i| (Arc::from(format!("u{i}")), i))
        .collect();
    store.refresh("n1", users).await;

    let ttl = async |name: &str| {
        let r = cmd(&["TTL", &key(name)]).await;
        r.trim().trim_start_matches(':').parse::<i64>().unwrap()
    };
    for i in [1, 500, 501, marks] {
        let name = format!("u{i}");
        let t = ttl(&name).await;
        assert!((1..=30).contains(&t), "{name}'s mark: TTL {t}");
    }
    assert!(ttl("u7").await > 30, "another node's mark was extended");
    assert_eq!(
        ttl(&format!("u{}", marks + 1)).await,
        -2,
        "a missing mark was created"
    );
}

#[tokio::test]
async fn a_presence_refresh_extends_this_nodes_marks_only() {
    let redis = RedisServer::start().await;
    let key = |name: &str| format!("plaza:online:{name}");
    refresh_extends_own_marks(redis.url(), 1201, key, async |args: &[&str]| {
        redis.cmd(args).await
    })
    .await;
}

/// The same on a Redis Cluster, where each mark is in its user's slot.
#[tokio::test]
async fn a_presence_refresh_on_a_redis_cluster_extends_this_nodes_marks_only() {
    let cluster = RedisCluster::start().await;
    let key = |name: &str| format!("plaza:online:{{{name}}}");
    refresh_extends_own_marks(cluster.url(), 601, key, async |args: &[&str]| {
        cluster.cmd(args).await
    })
    .await;
}
