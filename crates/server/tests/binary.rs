//! The `plaza-server` binary as an operator runs it.

use std::process::{Command, Stdio};

use plaza_proto::{Event, Request, ResultCode};
use plaza_test_support::{ServerProcess, TestCert, TestClient, within};

const BIN: &str = env!("CARGO_BIN_EXE_plaza-server");

#[test]
fn help_explains_every_setting() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--bind",
        "--data-dir",
        "--rooms",
        "--room-capacity",
        "--max-users",
        "--max-sessions",
        "--registration",
        "--admin-secret-file",
        "--workers",
        "--idle-timeout-secs",
        "--max-send-queue-kib",
        "--shutdown-grace-secs",
        "--argon2-memory-kib",
        "--log",
        "--tls-bind",
        "--tls-cert",
        "--tls-key",
        "--config",
        "add-user",
        "grant-admin",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    // Seed an account through the operator command.
    let mut add = Command::new(BIN)
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--argon2-memory-kib",
            "64",
            "add-user",
            "amy",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    add.stdin.take().unwrap().write_all(b"pw\n").unwrap();
    assert!(add.wait().unwrap().success());

    let server = ServerProcess::spawn(BIN, dir.path(), &[]);
    let mut c = TestClient::connect(server.addr).await;
    assert_eq!(c.try_login("amy", "pw").await, ResultCode::OK);
    assert_eq!(c.call(Request::Ping { nonce: 3 }).await, Event::Pong { nonce: 3 });

    server.signal("TERM");
    assert_eq!(
        c.until_closed().await,
        vec![Event::Notice {
            message: "server is shutting down".into()
        }]
    );
    assert_eq!(server.wait().await.code(), Some(0));
}

#[tokio::test]
async fn sighup_reloads_the_tls_certificate_and_keeps_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new();
    let server = ServerProcess::spawn(
        BIN,
        dir.path(),
        &[
            "--argon2-memory-kib",
            "64",
            "--tls-bind",
            "127.0.0.1:0",
            "--tls-cert",
            cert.cert.to_str().unwrap(),
            "--tls-key",
            cert.key.to_str().unwrap(),
        ],
    );
    let tls = server.tls_addr.expect("the TLS listener is logged");
    let mut amy = TestClient::connect_tls(tls, &cert.cert).await;
    amy.register("amy", "pw").await;
    amy.login("amy", "pw").await;

    let old = cert.renew();
    server.signal("HUP");
    // The reload is done when a client trusting only the new certificate
    // gets in (each try is a fresh connection).
    within("the new certificate to be served", async {
        loop {
            let tcp = tokio::net::TcpStream::connect(tls).await.unwrap();
            if TestCert::connector(&cert.cert).connect(tcp).await.is_ok() {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let refused = TestCert::connector(&old)
        .connect(tokio::net::TcpStream::connect(tls).await.unwrap())
        .await;
    assert!(refused.is_err(), "the replaced certificate is still served");
    // The session from before the reload is still up, and over plain TCP
    // the same server answers too.
    assert_eq!(
        amy.call(Request::Ping { nonce: 9 }).await,
        Event::Pong { nonce: 9 }
    );
    let mut bob = TestClient::connect(server.addr).await;
    bob.register("bob", "pw").await;
    bob.login("bob", "pw").await;
    server.signal("TERM");
    assert_eq!(server.wait().await.code(), Some(0));
}

/// Runs the server binary with `args` to its end (it is expected to fail at
/// once); returns its standard error.
fn failing_start(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--metrics-bind",
            "off",
        ])
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.to_lowercase().contains("backtrace"), "{err}");
    err
}

#[test]
fn startup_errors_say_what_failed() {
    // A port in use: which listener, which address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = failing_start(&["--bind", &addr, "--control-bind", "127.0.0.1:0"]);
    assert!(err.contains("starting the chat listener"), "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    let err = failing_start(&["--bind", "127.0.0.1:0", "--control-bind", &addr]);
    assert!(err.contains("starting the control listener"), "{err}");

    // Cluster mode with Redis down: which Redis.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{closed}/0");
    let err = failing_start(&[
        "--bind",
        "127.0.0.1:0",
        "--control-bind",
        "127.0.0.1:0",
        "--store",
        &url,
        "--cluster",
        "--redis-timeout-ms",
        "500",
    ]);
    assert!(
        err.contains(&format!("cluster mode: cannot use Redis at {url}")),
        "{err}"
    );
}
