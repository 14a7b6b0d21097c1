//! `plaza chat` as a person meets it: errors that read as errors, room
//! switching, logging in again, no server, and a session that survives the
//! server's restart.

use std::process::{Command, Stdio};

use plaza_proto::Event;
use plaza_test_support::{TestServer, run_command, within};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_plaza");

fn chat(addr: &str, user: &str, register: bool) -> Command {
    let mut c = Command::new(BIN);
    c.args(["chat", "--server", addr, "--user", user]);
    if register {
        c.arg("--register");
    }
    c.env("RUST_BACKTRACE", "1");
    c
}

#[tokio::test]
async fn errors_read_as_errors_and_rooms_switch_and_logins_come_back() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let script = "pw\n/admin wrong\n/join 2\n/join 3\nhi\n/topic release at noon\n/logout\nhi\n/login\n/join 1\n/help\n/quit\n";
    let out = run_command(chat(&addr, "carol", true), script.as_bytes()).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for expected in [
        "rooms are numbered 0 to 999",
        "error: admin failed: administrator rights required (106)",
        "ok: in room 2 with carol",
        "ok: in room 3 with carol",
        "ok: sent",
        "ok: topic set",
        "ok: logged out",
        "error: send failed: log in first (100)",
        "ok: logged in as carol",
        "ok: in room 1 with carol",
        "/join N [KEY]        enter room N (0 to 999",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("ok: you are an administrator"));
}

#[tokio::test]
async fn a_failed_register_stops_before_logging_in() {
    let server = TestServer::start().await;
    server.user("bob").await;
    let out = run_command(chat(&server.addr.to_string(), "bob", true), b"other\n").await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: register bob failed: that user name is taken (108)"),
        "{err}"
    );
    assert!(err.contains("leave out --register"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("logged in"));
}

#[tokio::test]
async fn no_server_says_so_at_once_in_one_line() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    // No password given: it must not be asked for.
    let out = run_command(chat(&closed, "amy", false), b"").await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot connect to {closed}")), "{err}");
    assert!(err.contains("is plaza-server running there?"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// Reads the client's output until a line contains `want`.
async fn until_line(lines: &mut Lines, want: &str) {
    within(&format!("the line {want:?}"), async {
        loop {
            let line = lines.next_line().await.unwrap().expect("the client ended");
            if line.contains(want) {
                return;
            }
        }
    })
    .await;
}

type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// `plaza chat` at `addr`, registered as `user` (password "pw"), in room 3.
async fn chat_in_room_3(
    addr: std::net::SocketAddr,
    user: &str,
) -> (tokio::process::Child, tokio::process::ChildStdin, Lines) {
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "chat",
            "--server",
            &addr.to_string(),
            "--user",
            user,
            "--register",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    stdin.write_all(b"pw\n/join 3\n").await.unwrap();
    until_line(&mut lines, "ok: in room 3").await;
    (child, stdin, lines)
}

#[tokio::test]
async fn a_session_comes_back_to_its_room_after_a_server_restart() {
    let server = TestServer::start().await;
    let (addr, dir) = (server.addr, server.dir.clone());
    let (mut child, mut stdin, mut lines) = chat_in_room_3(addr, "carol").await;

    // The server restarts on the same address and data.
    let mut running = server.running;
    running.shutdown().await;
    until_line(&mut lines, "reconnecting").await;
    within("the server to stop", running.wait()).await;
    let server = TestServer::in_dir(dir, |s| s.bind = Some(addr)).await;
    until_line(&mut lines, "* reconnected").await;
    // A restart loses the room's history: back in the room, told so.
    until_line(&mut lines, "* back in room 3").await;
    until_line(&mut lines, "no longer held").await;

    // Back in the room: a member there hears it.
    let mut bob = server.user("bob").await;
    bob.enter(3).await;
    stdin.write_all(b"hello again\n").await.unwrap();
    let heard = within("carol's message", async {
        loop {
            if let Event::RoomChat { name, message } = bob.recv().await {
                return (name, message);
            }
        }
    })
    .await;
    assert_eq!(heard, ("carol".into(), "hello again".into()));
    stdin.write_all(b"/quit\n").await.unwrap();
    let status = within("the client to exit", child.wait()).await.unwrap();
    assert!(status.success());
}

/// The network drops (the server keeps running): `plaza chat` comes back
/// on its own, back in its room, and shows what was said meanwhile, once.
#[tokio::test]
async fn a_dropped_session_comes_back_with_what_was_said_meanwhile() {
    let server = TestServer::start().await;
    let relay = plaza_test_support::Relay::start(server.addr).await;
    let (mut child, mut stdin, mut lines) = chat_in_room_3(relay.addr, "dina").await;
    let mut bob = server.user("bob").await;
    bob.enter(3).await;
    bob.say("before").await;
    until_line(&mut lines, "[bob] before").await;

    // The network goes down; once the server has seen dina go (her seat is
    // held for her return: the room hears no leave), bob talks.
    relay.down();
    server.until_status("users_away", 1).await;
    bob.say("while you were out").await;
    bob.say("and this").await;
    relay.restore();

    until_line(&mut lines, "* back in room 3").await;
    let mut shown = Vec::new();
    within("the catch-up line", async {
        loop {
            let line = lines.next_line().await.unwrap().expect("the client ended");
            if line.contains("caught up") {
                assert!(line.contains("(2 messages)"), "{line}");
                return;
            }
            shown.push(line);
        }
    })
    .await;
    assert_eq!(shown, ["[bob] while you were out", "[bob] and this"]);
    stdin.write_all(b"/quit\n").await.unwrap();
    let status = within("the client to exit", child.wait()).await.unwrap();
    assert!(status.success());
}
