//! The HTTP endpoint: a Prometheus scrape and the health answers.

use plaza_proto::{Request, ResultCode};
use plaza_test_support::{RedisServer, TestServer, http_get as get_with, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path`, returning (status code, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let (code, _, body) = get_with(addr, path, "").await;
    (code, body)
}

fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{body}"))
}

#[tokio::test]
async fn a_scrape_counts_sessions_logins_deliveries_and_drops() {
    let s = TestServer::start().await;
    let addr = s.running.metrics_addr().expect("metrics on");
    let mut amy = s.user("amy").await;
    let mut bob = s.user("bob").await;
    let mut eve = s.client().await;
    assert_eq!(
        eve.try_login("cat", "wrong").await,
        ResultCode::INVALID_CREDENTIALS
    );
    amy.enter(1).await;
    bob.enter(1).await;
    amy.recv().await;
    amy.call(Request::RoomChat { message: "hi".into() }).await;

    let (code, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(value(&body, "plaza_sessions"), 3.0);
    assert_eq!(value(&body, "plaza_users_online"), 2.0);
    // The one room message is kept: its packet (20 bytes, "amy", "hi") and 64.
    assert_eq!(value(&body, "plaza_history_bytes"), (20 + 3 + 2 + 64) as f64);
    assert_eq!(value(&body, "plaza_users_away"), 0.0);
    assert_eq!(value(&body, r#"plaza_logins_total{result="OK"}"#), 2.0);
    assert_eq!(
        value(&body, r#"plaza_logins_total{result="INVALID_CREDENTIALS"}"#),
        1.0
    );
    assert!(
        value(&body, "plaza_deliveries_total") >= 2.0,
        "the chat reached both"
    );
    assert_eq!(value(&body, r#"plaza_drops_total{reason="slow_consumer"}"#), 0.0);
    assert_eq!(
        value(&body, "plaza_store_latency_seconds_count"),
        5.0,
        "2 registers, 3 logins"
    );
    assert_eq!(value(&body, r#"plaza_up{part="store"}"#), 1.0);
    // The write-gathering series are there; their values follow the load.
    assert!(value(&body, "plaza_writes_held_total") >= 0.0);
    assert!([0.0, 1.0].contains(&value(&body, "plaza_writes_gathering")));
    // A plain Prometheus parser's format unless OpenMetrics is asked for:
    // every sample belongs to the family its TYPE line names.
    let (_, head, text) = get_with(addr, "/metrics", "").await;
    assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
    assert!(!text.contains("# EOF"));
    let mut family = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            family = rest.split(' ').next().unwrap();
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            let suffixes = ["", "_bucket", "_sum", "_count"];
            assert!(
                suffixes.iter().any(|s| name == format!("{family}{s}")),
                "{name} after TYPE {family}"
            );
        }
    }
    let (_, head, om) = get_with(addr, "/metrics", "Accept: application/openmetrics-text\r\n").await;
    assert!(
        head.contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(om.ends_with("# EOF\n"));

    assert_eq!(get(addr, "/livez").await, (200, "ok\n".into()));
    assert_eq!(get(addr, "/readyz").await, (200, "ok\n".into()));
    assert_eq!(get(addr, "/nope").await.0, 404);
}

#[tokio::test]
async fn readiness_is_false_while_redis_is_down_and_comes_back() {
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    let s = TestServer::with(move |s| {
        s.store = Some(url);
        s.redis_timeout_ms = Some(500);
    })
    .await;
    let addr = s.running.metrics_addr().unwrap();
    // Redis health is probed every second: wait for each change.
    let until = |want: u16| async move {
        within("readiness to change", async {
            loop {
                let (code, body) = get(addr, "/readyz").await;
                if code == want {
                    return body;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
    };
    until(200).await;
    redis.stop();
    let why = until(503).await;
    assert!(why.starts_with("account store down"), "{why}");
    assert_eq!(get(addr, "/livez").await.0, 200, "alive, just not ready");
    redis.restart().await;
    until(200).await;
}

#[tokio::test]
async fn tls_handshakes_and_their_failures_are_scraped() {
    let cert = plaza_test_support::TestCert::new();
    let s = TestServer::with_tls(&cert, |_| {}).await;
    let addr = s.running.metrics_addr().expect("metrics on");
    let mut amy = plaza_test_support::TestClient::connect_tls(s.tls_addr(), &cert.cert).await;
    amy.register("amy", "pw").await;
    amy.login("amy", "pw").await;
    // Plain bytes at the TLS port: the handshake fails and it is closed.
    let mut plain = tokio::net::TcpStream::connect(s.tls_addr()).await.unwrap();
    plain.write_all(&[9, 0, 0xff, 0xff, 1, 2, 3, 4, 5]).await.unwrap();
    let mut rest = Vec::new();
    let _ = within("the server to close it", plain.read_to_end(&mut rest)).await;
    let body = within("the failure to be counted", async {
        loop {
            let (_, body) = get(addr, "/metrics").await;
            if value(&body, r#"plaza_drops_total{reason="tls_handshake"}"#) >= 1.0 {
                return body;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(value(&body, r#"plaza_drops_total{reason="tls_handshake"}"#), 1.0);
    assert_eq!(value(&body, "plaza_tls_handshakes_total"), 1.0);
    assert_eq!(value(&body, r#"plaza_logins_total{result="OK"}"#), 1.0);
}

#[tokio::test]
async fn idle_connections_do_not_starve_the_health_checks() {
    let s = TestServer::start().await;
    let addr = s.running.metrics_addr().expect("metrics on");
    // Forty connections held open, saying nothing.
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    assert_eq!(get(addr, "/livez").await, (200, "ok\n".into()));
    assert_eq!(get(addr, "/readyz").await.0, 200);
    // A connection that never sends its request head is closed.
    let mut silent = idle.pop().unwrap();
    let mut rest = Vec::new();
    let n = within(
        "the silent connection to be closed",
        silent.read_to_end(&mut rest),
    )
    .await;
    assert!(n.is_ok_and(|_| !String::from_utf8_lossy(&rest).contains("200")));
}
