//! The `plaza-server` binary as an operator runs it.

use std::process::{Command, Stdio};

use plaza_proto::{Event, Request, ResultCode};
use plaza_test_support::{ServerProcess, TestClient};

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
