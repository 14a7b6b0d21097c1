//! The operators' control link against a running server with real clients.

use std::process::Command as Process;

use plaza_proto::{Event, Request, ResultCode};
use plaza_server::control::Command;
use plaza_test_support::{ControlClient, TestClient, TestServer, within};

#[tokio::test]
async fn status_users_rooms_and_user_describe_the_server() {
    let server = TestServer::start().await;
    let mut amy = server.user("amy").await;
    let _bob = server.user("bob").await;
    amy.enter(5).await;
    let ctl = server.control().await;

    let status = ctl.status().await;
    assert_eq!(status.sessions, 2);
    assert_eq!(status.users_online, 2);
    assert_eq!(status.rooms_in_use, 1);
    assert_eq!(status.store, "ok");
    assert!(!status.draining);
    assert!(status.requests_total >= 4, "{status:?}");
    assert_eq!(status.logins.get("OK"), Some(&2));

    let users = ctl.cmd(Command::Users).await;
    let names: Vec<&str> = users
        .data
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["amy", "bob"]);

    let rooms = ctl.cmd(Command::Rooms).await;
    assert_eq!(rooms.data, serde_json::json!([{ "room": 5, "members": ["amy"] }]));

    let user = ctl.cmd(Command::User { name: "amy".into() }).await;
    assert_eq!(user.data["room"], 5);
    assert!(user.data["address"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(user.data["send_queue_bytes"], 0);
    assert!(user.data["muted"].is_null());
    let missing = ctl.cmd(Command::User { name: "ghost".into() }).await;
    assert!(!missing.ok);
}

#[tokio::test]
async fn kick_mute_unmute_and_notice_reach_the_clients() {
    let server = TestServer::start().await;
    let mut amy = server.user("amy").await;
    let mut bob = server.user("bob").await;
    let mut cat = server.user("cat").await;
    let (list, _) = amy.enter(1).await;
    let amy_uid = list[0].0;
    bob.enter(1).await;
    amy.recv().await; // bob joined
    let ctl = server.control().await;

    assert!(
        ctl.cmd(Command::Mute {
            name: "bob".into(),
            seconds: 600
        })
        .await
        .ok
    );
    assert_eq!(bob.recv().await, Event::Muted { seconds: 600 });
    assert_eq!(
        bob.call(Request::RoomChat { message: "x".into() }).await,
        Event::RoomChatResult(ResultCode::MUTED)
    );
    let info = ctl.cmd(Command::User { name: "bob".into() }).await;
    assert!(info.data["muted"].as_u64().unwrap() > 500);
    assert!(ctl.cmd(Command::Unmute { name: "bob".into() }).await.ok);
    assert_eq!(bob.recv().await, Event::Muted { seconds: 0 });
    assert_eq!(
        bob.call(Request::RoomChat {
            message: "back".into()
        })
        .await,
        Event::RoomChatResult(ResultCode::OK)
    );
    bob.recv().await;
    amy.recv().await;

    let n = ctl
        .cmd(Command::Notice {
            room: Some(1),
            message: "room notice".into(),
            local: false,
        })
        .await;
    assert_eq!(n.data["delivered_to"], 2);
    let notice = Event::Notice {
        message: "room notice".into(),
    };
    assert_eq!(amy.recv().await, notice);
    assert_eq!(bob.recv().await, notice);
    assert!(
        ctl.cmd(Command::Notice {
            room: None,
            message: "to all".into(),
            local: false,
        })
        .await
        .ok
    );
    for c in [&mut amy, &mut bob, &mut cat] {
        assert_eq!(
            c.recv().await,
            Event::Notice {
                message: "to all".into()
            }
        );
    }
    assert!(
        !ctl.cmd(Command::Notice {
            room: Some(100_000),
            message: "x".into(),
            local: false,
        })
        .await
        .ok
    );

    assert!(ctl.cmd(Command::Kick { name: "amy".into() }).await.ok);
    let seen = amy.until_closed().await;
    assert_eq!(
        seen.last(),
        Some(&Event::Kicked {
            by: "operator".into()
        })
    );
    assert_eq!(bob.recv().await, Event::RoomLeaveUser { uid: amy_uid });
    assert!(!ctl.cmd(Command::Kick { name: "amy".into() }).await.ok);
}

#[tokio::test]
async fn a_wrong_secret_or_no_auth_is_refused_and_disconnected() {
    let server = TestServer::start().await;
    let c = ControlClient::connect(server.running.control_addr()).await;
    let r = c
        .cmd(Command::Auth {
            secret: "nope".into(),
        })
        .await;
    assert!(!r.ok);
    assert_eq!(r.error.as_deref(), Some("authentication failed"));
    assert!(c.try_cmd(Command::Status).await.is_err(), "link must be closed");

    let c = ControlClient::connect(server.running.control_addr()).await;
    let r = c.cmd(Command::Shutdown).await;
    assert!(!r.ok);
    assert!(c.try_cmd(Command::Status).await.is_err());
    // The server is still up.
    let mut user = server.client().await;
    assert_eq!(
        user.call(Request::Ping { nonce: 1 }).await,
        Event::Pong { nonce: 1 }
    );
}

#[tokio::test]
async fn drain_refuses_logins_counts_down_and_exits_after_flushing() {
    let server = TestServer::start().await;
    let mut amy = server.user("amy").await;
    let mut late = server.client().await;
    late.register("late", "pw").await;
    let ctl = server.control().await;
    let r = ctl
        .cmd(Command::Drain {
            seconds: 2,
            cluster: false,
        })
        .await;
    assert!(r.ok);
    // Every connection gets the countdown notices, guests too, so the login
    // answer may come after one.
    late.send(Request::Login {
        name: "late".into(),
        password: "pw".into(),
    })
    .await;
    loop {
        match late.recv().await {
            Event::Notice { .. } => {}
            other => break assert_eq!(other, Event::LoginResult(ResultCode::SHUTTING_DOWN)),
        }
    }
    let seen = amy.until_closed().await;
    let notices: Vec<String> = seen
        .into_iter()
        .filter_map(|e| match e {
            Event::Notice { message } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(
        notices,
        vec![
            "server shutting down in 2 seconds",
            "server shutting down in 1 seconds",
            "server is shutting down",
        ]
    );
    let mut running = server.running;
    within("server exit", running.wait()).await;
}

#[tokio::test]
async fn the_control_link_answers_while_the_user_port_is_full() {
    let server = TestServer::with(|s| {
        s.max_users = Some(10);
        s.max_sessions = Some(20);
    })
    .await;
    let mut flood = Vec::new();
    for _ in 0..20 {
        flood.push(TestClient::connect(server.addr).await);
    }
    // One more is refused by the user listener...
    let mut extra = TestClient::connect(server.addr).await;
    assert!(extra.until_closed().await.is_empty());
    // ...while the control link works.
    let ctl = server.control().await;
    let status = ctl.status().await;
    assert_eq!(status.sessions, 20);
    assert!(status.refused_connections >= 1);
}

#[tokio::test]
async fn plaza_ctl_prints_status_and_reports_errors_clearly() {
    let server = TestServer::start().await;
    let _amy = server.user("amy").await;
    let addr = server.running.control_addr().to_string();
    let secret_file = server.dir.path().join("control.secret");
    let ctl = env!("CARGO_BIN_EXE_plaza-ctl");
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || Process::new(ctl).args(args).output().expect("run plaza-ctl"))
    };
    let base = vec![
        "--addr".to_owned(),
        addr.clone(),
        "--secret-file".into(),
        secret_file.display().to_string(),
    ];

    let out = within(
        "plaza-ctl",
        run([base.clone(), vec!["--json".into(), "status".into()]].concat()),
    )
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["data"]["users_online"], 1);

    assert!(
        server
            .control()
            .await
            .cmd(Command::Mute {
                name: "amy".into(),
                seconds: 90
            })
            .await
            .ok
    );
    let out = within("plaza-ctl", run([base.clone(), vec!["users".into()]].concat()))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("amy") && text.contains("1 user\n"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("amy") && l.contains(" for 8") || l.contains(" for 9"))
            && text.contains(" s\n"),
        "a mute has a unit: {text}"
    );

    // Status as text: no raw JSON, and counts read as English.
    let out = within("plaza-ctl", run([base.clone(), vec!["status".into()]].concat()))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains('{') && !text.contains('['), "{text}");
    assert!(text.contains("logins.OK"), "{text}");
    let out = within("plaza-ctl", run([base.clone(), vec!["rooms".into()]].concat()))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 rooms in use"));

    let wrong = std::env::temp_dir().join(format!("plaza-wrong-secret-{}", std::process::id()));
    std::fs::write(&wrong, "wrong").unwrap();
    let out = within(
        "plaza-ctl",
        run(vec![
            "--addr".into(),
            addr,
            "--secret-file".into(),
            wrong.display().to_string(),
            "status".into(),
        ]),
    )
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("control secret rejected"));
    let _ = std::fs::remove_file(&wrong);

    // Nothing listening: a clear message, not a hang.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let out = within(
        "plaza-ctl",
        run(vec![
            "--addr".into(),
            closed,
            "--secret-file".into(),
            secret_file.display().to_string(),
            "status".into(),
        ]),
    )
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is plaza-server running?"));

    // An error and its causes, one a line, even with RUST_BACKTRACE set.
    let out = within(
        "plaza-ctl",
        tokio::task::spawn_blocking(move || {
            Process::new(ctl)
                .args([
                    "--addr",
                    "127.0.0.1:1",
                    "--secret-file",
                    "/nonexistent/secret",
                    "status",
                ])
                .env("RUST_BACKTRACE", "1")
                .output()
                .expect("run plaza-ctl")
        }),
    )
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: reading /nonexistent/secret"), "{err}");
    assert!(err.contains("caused by: No such file"), "{err}");
    assert!(!err.to_lowercase().contains("backtrace"), "{err}");
    assert!(err.lines().count() <= 3, "{err}");
}
