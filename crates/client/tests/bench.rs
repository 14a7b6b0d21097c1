//! `plaza bench` in short smoke form, against a real server: each scenario's
//! JSON has its documented fields, and nothing is lost at a low rate.

use std::process::Command;

use plaza_test_support::{TestServer, run_command};
use serde_json::Value;

/// Runs `plaza bench ARGS --server ADDR --json` (off the async threads) and
/// parses its output.
async fn bench(s: &TestServer, args: &[&str]) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plaza"));
    cmd.arg("bench")
        .args(args)
        .args(["--server", &s.addr.to_string(), "--json"]);
    let out = run_command(cmd, b"").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn has(v: &Value, fields: &[&str]) {
    for f in fields {
        assert!(!v[f].is_null(), "missing {f} in {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_and_saturate_lose_nothing_at_a_low_rate() {
    let s = TestServer::start().await;
    let pid = std::process::id().to_string();
    let v = bench(
        &s,
        &[
            "fanout",
            "--rooms",
            "2",
            "--members",
            "5",
            "--rate",
            "5",
            "--seconds",
            "1",
            "--server-pid",
            &pid,
        ],
    )
    .await;
    has(
        &v,
        &[
            "scenario",
            "offered_msgs_per_sec",
            "deliveries_per_sec",
            "expected",
            "received",
            "lost",
            "latency_ms",
        ],
    );
    assert_eq!(v["joined"], 10);
    assert!(v["received"].as_u64().unwrap() > 0);
    assert_eq!(v["lost"], 0, "{v}");
    has(&v["latency_ms"], &["p50", "p90", "p99", "p999", "max"]);
    assert!(v["server_rss_kib"].as_u64().unwrap() > 0);

    let v = bench(
        &s,
        &[
            "saturate",
            "--members",
            "4",
            "--rate",
            "2",
            "--seconds",
            "1",
            "--steps",
            "2",
            "--first-room",
            "10",
        ],
    )
    .await;
    has(
        &v,
        &["scenario", "p99_bound_ms", "best_deliveries_per_sec", "steps"],
    );
    assert_eq!(v["steps"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_logs_in_with_passwords_then_tokens() {
    let s = TestServer::start().await;
    let v = bench(&s, &["connect", "--connections", "30", "--concurrency", "8"]).await;
    has(
        &v,
        &[
            "logged_in",
            "password_logins_per_sec",
            "failures",
            "resumed",
            "resume_logins_per_sec",
        ],
    );
    assert_eq!(v["logged_in"], 30, "{v}");
    assert_eq!(v["resumed"], 30, "{v}");
    assert_eq!(v["failures"], serde_json::json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_runs_every_kind_of_action() {
    let s = TestServer::start().await;
    let v = bench(
        &s,
        &[
            "mixed",
            "--users",
            "20",
            "--rooms",
            "3",
            "--rate",
            "10",
            "--seconds",
            "2",
        ],
    )
    .await;
    has(
        &v,
        &[
            "actions",
            "results",
            "actions_per_sec",
            "latency_ms",
            "rss_samples",
        ],
    );
    assert_eq!(v["user_errors"], 0, "{v}");
    for action in ["enter", "chat", "whisper", "users", "reconnect"] {
        assert!(
            v["actions"][action].as_u64().unwrap_or(0) > 0,
            "no {action} in {v}"
        );
    }
}
