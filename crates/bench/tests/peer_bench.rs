//! `peer-bench` in short smoke form: a fan-out at a low rate against a real
//! Plaza server, a real redis-server and `floor-server` delivers every
//! message, and Plaza's and the floor's write calls come from their own
//! counts (they write with `sendmsg` and `send`, which `/proc/PID/io` does
//! not count).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use plaza_test_support::{RedisServer, TestServer, run_command};

/// Runs `peer-bench` against `peer` at `addr` with `args` (off the async
/// threads), checks that it succeeded, and returns its output.
async fn peer_bench(peer: &str, addr: SocketAddr, args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_peer-bench"));
    cmd.args(["--peer", peer, "--addr", &addr.to_string()]).args(args);
    let out = run_command(cmd, b"").await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A one-second `peer-bench` fan-out of 2 rooms × `members` at 5/s.
async fn fanout(peer: &str, addr: SocketAddr, members: u32, extra: &[String]) -> String {
    let members = members.to_string();
    let mut args = vec!["--rooms", "2", "--members", &members];
    args.extend([
        "--rate",
        "5",
        "--seconds",
        "1",
        "--concurrency",
        "8",
        "--prefix",
        "smoke",
    ]);
    args.extend(extra.iter().map(String::as_str));
    peer_bench(peer, addr, &args).await
}

/// The number after `label` on the line that starts with `line`.
fn figure(out: &str, line: &str, label: &str) -> f64 {
    out.lines()
        .find(|l| l.starts_with(line))
        .and_then(|l| l.split(label).nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `{label}` on a `{line}` line in:\n{out}"))
}

fn delivered_everything(out: &str) {
    let expected = figure(out, "rate ", "expected ");
    assert!(expected > 0.0, "nothing was sent:\n{out}");
    assert_eq!(figure(out, "rate ", "received "), expected, "{out}");
    assert_eq!(figure(out, "rate ", "lost "), 0.0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaza_fanout_delivers_everything_and_counts_writes_from_the_metrics() {
    let s = TestServer::start().await;
    let metrics = s.running.metrics_addr().expect("metrics on in tests");
    let extra = [
        "--server-pid".to_string(),
        std::process::id().to_string(),
        "--metrics".to_string(),
        metrics.to_string(),
    ];
    let out = fanout("plaza", s.addr, 5, &extra).await;
    delivered_everything(&out);
    // The writes were counted (at this rate about one per delivery, plus
    // the server's other packets in the window).
    let writes = figure(&out, "server cpu/delivery", "write calls/delivery ");
    assert!(writes > 0.0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fanout_delivers_everything() {
    let r = RedisServer::start().await;
    let addr = SocketAddr::from(([127, 0, 0, 1], r.port));
    let out = fanout("redis", addr, 3, &[]).await;
    delivered_everything(&out);
}

/// Starts `floor-server` on a free port with `args`; it says which port
/// on its first line.
fn start_floor(args: &[&str]) -> (plaza_bench::child::Reap, SocketAddr) {
    let child = Command::new(env!("CARGO_BIN_EXE_floor-server"))
        .args(["--bind", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start floor-server");
    let mut server = plaza_bench::child::Reap(child);
    let mut line = String::new();
    BufReader::new(server.0.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("the floor server's first line");
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (server, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_fanout_delivers_everything_in_either_mode_and_counts_its_writes() {
    for mode in ["now", "turn"] {
        let (server, addr) = start_floor(&["--mode", mode]);
        let extra = ["--server-pid".to_string(), server.0.id().to_string()];
        let out = fanout("floor", addr, 4, &extra).await;
        delivered_everything(&out);
        let writes = figure(&out, "server cpu/delivery", "write calls/delivery ");
        assert!(writes > 0.0, "{mode}: {out}");
    }
}

/// Scenario d in small: members set up, all close and come back, and both
/// rounds' rates are reported (a peer other than Plaza comes back under new
/// names).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_members_come_back_and_both_rounds_are_reported() {
    let (server, addr) = start_floor(&[]);
    let pid = server.0.id().to_string();
    let stdout = peer_bench(
        "floor",
        addr,
        &[
            "--scenario",
            "idle",
            "--rooms",
            "3",
            "--connections",
            "60",
            "--concurrency",
            "8",
            "--resume-rounds",
            "2",
            "--server-pid",
            &pid,
        ],
    )
    .await;
    let line = stdout
        .lines()
        .find(|l| l.starts_with("idle: 60 connections in 3 rooms, set up at "))
        .unwrap_or_else(|| panic!("no setup line in:\n{stdout}"));
    assert_eq!(line.matches("; again at ").count(), 2, "{line}");
    assert!(stdout.contains("KiB per idle connection"), "{stdout}");
}

/// The reconnect storm with replay: Plaza members with room history come
/// back twice; the second time each room had 5 messages while they were
/// away, and every member must get exactly those 5, in order (peer-bench
/// fails otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaza_members_rejoin_and_get_exactly_what_they_missed() {
    let server = TestServer::with(|s| {
        s.login_rate_per_ip = Some(0);
        s.login_rate_per_account = Some(0);
        s.chat_rate = Some(0);
    })
    .await;
    let stdout = peer_bench(
        "plaza",
        server.addr,
        &[
            "--scenario",
            "idle",
            "--rooms",
            "3",
            "--connections",
            "30",
            "--concurrency",
            "8",
            "--resume-rounds",
            "2",
            "--missed",
            "5",
        ],
    )
    .await;
    let line = stdout
        .lines()
        .find(|l| l.starts_with("idle: 30 connections"))
        .unwrap_or_else(|| panic!("no setup line in:\n{stdout}"));
    assert!(line.contains("(rejoined, 0 messages replayed"), "{line}");
    assert!(line.contains("(rejoined, 150 messages replayed"), "{line}");
}
