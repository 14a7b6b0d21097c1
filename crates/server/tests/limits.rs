//! The abuse limits, end to end: per-address connections, login attempts,
//! chat rate, slow mode, and the time allowed before login.

use plaza_proto::{Event, Request, ResultCode};
use plaza_server::control::Command;
use plaza_test_support::{TestClient, TestServer};

fn local(n: u8) -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, n])
}

#[tokio::test]
async fn a_wrong_password_flood_is_refused_per_address_and_per_account() {
    let s = TestServer::with(|s| {
        s.login_rate_per_ip = Some(5);
        s.login_rate_per_account = Some(3);
    })
    .await;
    let mut setup = TestClient::connect_from(s.addr, local(9)).await;
    setup.register("amy", "pw").await;

    // Three wrong guesses at amy from one address, then amy is closed to
    // guessing from that address, while her owner, elsewhere, still logs in.
    let mut attacker = TestClient::connect_from(s.addr, local(2)).await;
    for _ in 0..3 {
        assert_eq!(
            attacker.try_login("amy", "guess").await,
            ResultCode::INVALID_CREDENTIALS
        );
    }
    assert_eq!(attacker.try_login("amy", "guess").await, ResultCode::RATE_LIMITED);
    let mut elsewhere = TestClient::connect_from(s.addr, local(3)).await;
    assert_eq!(elsewhere.try_login("amy", "pw").await, ResultCode::OK);
    // The attacker's address has one attempt left in its burst of five.
    assert_eq!(
        attacker.try_login("bob", "x").await,
        ResultCode::INVALID_CREDENTIALS
    );
    assert_eq!(attacker.try_login("cat", "x").await, ResultCode::RATE_LIMITED);
    // The connection stays usable, and the refusals are counted.
    assert_eq!(
        attacker.call(Request::Ping { nonce: 3 }).await,
        Event::Pong { nonce: 3 }
    );
    let status = s.control().await.cmd(Command::Status).await;
    assert_eq!(status.data["logins_rate_limited"], 2);
}

#[tokio::test]
async fn admin_secret_guesses_are_rate_limited_like_logins() {
    let s = TestServer::with(|s| {
        s.login_rate_per_ip = Some(5);
    })
    .await;
    let mut guesser = TestClient::connect_from(s.addr, local(6)).await;
    guesser.register("guesser", "pw").await;
    guesser.login("guesser", "pw").await;
    let mut codes = Vec::new();
    for i in 0..10 {
        let r = guesser
            .call(Request::Admin {
                secret: format!("guess{i}"),
            })
            .await;
        let Event::AdminResult(code) = r else {
            panic!("expected an admin result, got {r:?}")
        };
        codes.push(code);
    }
    // Register and login took two of the address's five.
    assert_eq!(
        codes,
        [ResultCode::NOT_ADMIN; 3]
            .into_iter()
            .chain([ResultCode::RATE_LIMITED; 7])
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn one_address_holds_at_most_its_connections() {
    let s = TestServer::with(|s| s.max_connections_per_ip = Some(3)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = TestClient::connect_from(s.addr, local(4)).await;
        assert_eq!(c.call(Request::Ping { nonce: 1 }).await, Event::Pong { nonce: 1 });
        held.push(c);
    }
    let mut extra = TestClient::connect_from(s.addr, local(4)).await;
    assert_eq!(extra.until_closed().await, Vec::<Event>::new());
    let mut other = TestClient::connect_from(s.addr, local(5)).await;
    assert_eq!(
        other.call(Request::Ping { nonce: 2 }).await,
        Event::Pong { nonce: 2 }
    );
    let status = s.control().await.cmd(Command::Status).await;
    assert_eq!(status.data["refused_connections_per_ip"], 1);
}

#[tokio::test]
async fn chat_rate_and_slow_mode_answer_115_and_keep_the_session() {
    let s = TestServer::with(|s| s.chat_rate = Some(1)).await;
    let mut amy = s.user("amy").await;
    let chat = |m: &str| Request::RoomChat { message: m.into() };
    // Entering and leaving take from the same allowance (each tells the
    // whole room): a burst of two, then 115.
    let mut bob = s.user("bob").await;
    assert_eq!(bob.enter(1).await.1, ResultCode::OK);
    assert_eq!(
        bob.call(Request::RoomLeave).await,
        Event::RoomLeaveResult(ResultCode::OK)
    );
    assert_eq!(bob.enter(1).await.1, ResultCode::RATE_LIMITED);
    assert_eq!(
        bob.call(Request::RoomLeave).await,
        Event::RoomLeaveResult(ResultCode::RATE_LIMITED)
    );
    amy.enter(1).await;
    // What the enter left of the burst of two, then 115 (the rate refills
    // one per second).
    for m in ["one"] {
        assert_eq!(amy.call(chat(m)).await, Event::RoomChatResult(ResultCode::OK));
        amy.recv().await; // her own copy
    }
    assert_eq!(
        amy.call(chat("three")).await,
        Event::RoomChatResult(ResultCode::RATE_LIMITED)
    );

    // Slow mode, set by an operator: one message per hour in room 2.
    let s2 = TestServer::start().await;
    let ctl = s2.control().await;
    assert!(
        ctl.cmd(Command::Slow {
            room: 2,
            seconds: 3600
        })
        .await
        .ok
    );
    let mut bob = s2.user("bob").await;
    bob.enter(2).await;
    assert_eq!(
        bob.call(chat("first")).await,
        Event::RoomChatResult(ResultCode::OK)
    );
    bob.recv().await;
    assert_eq!(
        bob.call(chat("second")).await,
        Event::RoomChatResult(ResultCode::RATE_LIMITED)
    );
    assert!(
        !ctl.cmd(Command::Slow {
            room: 99_999,
            seconds: 1
        })
        .await
        .ok
    );
    let status = ctl.cmd(Command::Status).await;
    assert_eq!(status.data["chat_rate_limited"], 1);
    assert_eq!(status.data["slow_rooms"][0]["room"], 2);
}

#[tokio::test]
async fn a_connection_that_never_logs_in_is_closed_with_a_notice() {
    let s = TestServer::with(|s| s.login_timeout_secs = Some(1)).await;
    let mut idle = s.client().await;
    let mut user = s.user("amy").await;
    assert_eq!(
        idle.until_closed().await,
        vec![Event::Notice {
            message: "login timed out".into()
        }]
    );
    assert_eq!(
        user.call(Request::Ping { nonce: 1 }).await,
        Event::Pong { nonce: 1 }
    );
    let status = s.control().await.cmd(Command::Status).await;
    assert_eq!(status.data["login_timeouts"], 1);
}
