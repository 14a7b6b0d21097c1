//! The `plaza-server` binary as an operator runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use plaza_proto::{Event, Request, ResultCode};
use plaza_test_support::{TestClient, within};

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

    let mut server = Command::new(BIN)
        .args([
            "--bind",
            "127.0.0.1:0",
            "--control-bind",
            "127.0.0.1:0",
            "--metrics-bind",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--log",
            "info",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Stop the server by its PID even if an assertion below fails.
    struct KillOnDrop(u32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
        }
    }
    let _guard = KillOnDrop(server.id());
    // The listening address is in the first log line.
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server log ended").unwrap();
        if let Some(rest) = line.split(" addr=").nth(1) {
            let rest = rest.split_whitespace().next().unwrap_or("");
            let clean: String = rest
                .chars()
                .filter(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            break clean.parse::<std::net::SocketAddr>().unwrap();
        }
    };
    let mut c = TestClient::connect(addr).await;
    assert_eq!(c.try_login("amy", "pw").await, ResultCode::OK);
    assert_eq!(c.call(Request::Ping { nonce: 3 }).await, Event::Pong { nonce: 3 });

    let kill = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(
        c.until_closed().await,
        vec![Event::Notice {
            message: "server is shutting down".into()
        }]
    );
    let status = within(
        "the server to exit",
        tokio::task::spawn_blocking(move || server.wait().unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));
}
