//! The TLS listener, end to end: plaza-client, the `plaza` binary and the
//! load generator against a server presenting a certificate generated here.

use std::process::Command;

use plaza_client::{PlazaClient, Target};
use plaza_proto::{Event, Request, ResultCode};
use plaza_server::control::Command as Ctl;
use plaza_test_support::{TestCert, TestServer, run_command, within};

fn tls_target(s: &TestServer, ca: &std::path::Path) -> Target {
    Target {
        addr: s.tls_addr(),
        tls: Some(TestCert::connector(ca)),
    }
}

async fn tls_user(
    s: &TestServer,
    ca: &std::path::Path,
    name: &str,
) -> (PlazaClient, plaza_client::Notifications) {
    let (c, notes) = PlazaClient::connect(tls_target(s, ca)).await.unwrap();
    let r = c
        .request(Request::Register {
            name: name.into(),
            password: "pw".into(),
        })
        .await
        .unwrap();
    assert_eq!(PlazaClient::result_of(&r), ResultCode::OK);
    assert_eq!(c.login(name, "pw").await.unwrap(), ResultCode::OK);
    (c, notes)
}

/// The next notification that is not a resume token.
async fn note(n: &mut plaza_client::Notifications) -> Event {
    loop {
        match within("a notification", n.recv()).await.expect("connection open") {
            // The room's operator (amy, who opened it), told as she enters.
            Event::ResumeToken { .. } | Event::RoomRole { .. } => {}
            e => return e,
        }
    }
}

#[tokio::test]
async fn tls_and_plain_clients_share_rooms() {
    let cert = TestCert::new();
    let s = TestServer::with_tls(&cert, |_| {}).await;
    let (amy, mut amy_notes) = tls_user(&s, &cert.cert, "amy").await;
    let mut bob = s.user("bob").await;
    assert_eq!(amy.enter(3).await.unwrap().0, ResultCode::OK);
    let (members, code) = bob.enter(3).await;
    assert_eq!(code, ResultCode::OK);
    assert_eq!(members.len(), 2);
    assert!(matches!(note(&mut amy_notes).await, Event::RoomNewUser { name, .. } if name == "bob"));

    let r = amy
        .request(Request::RoomChat {
            message: "over tls".into(),
        })
        .await
        .unwrap();
    assert_eq!(PlazaClient::result_of(&r), ResultCode::OK);
    assert_eq!(
        bob.recv().await,
        Event::RoomChat {
            name: "amy".into(),
            message: "over tls".into()
        }
    );
    bob.send(Request::RoomChat {
        message: "over tcp".into(),
    })
    .await;
    // Room chat reaches every member, the sender included.
    // (The library asks for room history: its copies carry their numbers.)
    assert!(matches!(note(&mut amy_notes).await, Event::RoomMessage { name, seq: 1, .. } if name == "amy"));
    assert_eq!(
        note(&mut amy_notes).await,
        Event::RoomMessage {
            room: 3,
            seq: 2,
            name: "bob".into(),
            message: "over tcp".into()
        }
    );
    let status = s.control().await.cmd(Ctl::Status).await;
    assert_eq!(status.data["tls"]["handshakes_total"], 1, "{status:?}");
    assert_eq!(status.data["tls"]["addr"], s.tls_addr().to_string());
    amy.close().await;
}

#[tokio::test]
async fn a_certificate_reload_keeps_sessions_and_serves_the_new_certificate() {
    let cert = TestCert::new();
    let s = TestServer::with_tls(&cert, |_| {}).await;
    let (amy, _notes) = tls_user(&s, &cert.cert, "amy").await;
    let ctl = s.control().await;

    // A broken key is refused and the current certificate stays.
    let first = cert.renew();
    std::fs::write(&cert.key, "not a key").unwrap();
    let r = ctl.cmd(Ctl::ReloadTls).await;
    assert!(!r.ok, "{r:?}");
    let (c, _) = PlazaClient::connect(tls_target(&s, &first)).await.unwrap();
    c.close().await;

    let old = cert.renew();
    assert!(ctl.cmd(Ctl::ReloadTls).await.ok);
    // The session from before the reload is still up and answering.
    let r = amy.request(Request::Ping { nonce: 7 }).await.unwrap();
    assert_eq!(r, Event::Pong { nonce: 7 });
    // New connections get the new certificate.
    assert!(
        PlazaClient::connect(tls_target(&s, &old)).await.is_err(),
        "a client trusting only the replaced certificate connected"
    );
    let (bob, _) = tls_user(&s, &cert.cert, "bob").await;
    let (code, users) = bob.users().await.unwrap();
    assert_eq!(code, ResultCode::OK);
    assert_eq!(users, vec!["amy".to_owned(), "bob".to_owned()]);
    amy.close().await;
    bob.close().await;
}

#[tokio::test]
async fn reload_without_tls_is_refused() {
    let s = TestServer::start().await;
    let r = s.control().await.cmd(Ctl::ReloadTls).await;
    assert!(!r.ok);
    assert_eq!(r.error.as_deref(), Some("TLS is not on"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_client_and_the_load_generator_speak_tls() {
    let cert = TestCert::new();
    let s = TestServer::with_tls(&cert, |_| {}).await;
    let tls = ["--tls", "--tls-ca", cert.cert.to_str().unwrap()];
    let addr = s.tls_addr().to_string();

    let mut chat = Command::new(env!("CARGO_BIN_EXE_plaza"));
    chat.args(["chat", "--server", &addr, "--user", "carol", "--register"])
        .args(tls);
    let out = run_command(chat, b"pw\n/echo secure\n/quit\n").await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("logged in as carol"), "{text}");
    assert!(text.contains("echo: secure"), "{text}");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plaza"));
    cmd.args([
        "bench",
        "fanout",
        "--rooms",
        "2",
        "--members",
        "4",
        "--rate",
        "5",
        "--seconds",
        "1",
    ])
    .args(["--server", &addr, "--json"])
    .args(tls);
    let out = run_command(cmd, b"").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["joined"], 8, "{v}");
    assert!(v["received"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["lost"], 0, "{v}");

    // A client that does not trust the certificate is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_plaza"))
        .args([
            "bench",
            "connect",
            "--connections",
            "1",
            "--server",
            &addr,
            "--tls",
        ])
        .args(["--tls-ca", "/dev/null"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
