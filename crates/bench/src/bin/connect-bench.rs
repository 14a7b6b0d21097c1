//! Idle connections and reconnect storms against a separate plaza-server
//! process (a first form of issue #5's `plaza bench connect`).
//!
//! 1. Starts `plaza-server` (the binary next to this one) on free loopback
//!    ports with a fresh data directory and a cheap Argon2 cost (this
//!    measures connections, not hashing).
//! 2. Opens `--connections` connections; each registers, logs in and stays
//!    idle. Reports connections set up and logged in per second (password),
//!    and the server's RSS per idle logged-in connection (VmRSS delta / N).
//! 3. Closes them all, then reconnects them all at once with their resume
//!    tokens (a reconnect storm) and reports logins/s.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use plaza_bench::child::{free_port, rss_kib, start_server};
use plaza_bench::conn::FrameConn;
use plaza_proto::{Event, Request, ResultCode};

#[derive(Parser, Debug)]
#[command(about = "Idle connections (RSS per connection) and a resume-token reconnect storm")]
struct Args {
    /// Connections (this process and the server each need that many fds).
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Connections set up concurrently.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Keep accounts in a redis-server (started on a free port) instead of
    /// the embedded store, so the server's RSS holds connection state only.
    #[arg(long)]
    redis: bool,
}

async fn connect_all(
    addr: SocketAddr,
    names: Vec<(String, Option<String>)>,
    concurrency: usize,
) -> Result<Vec<(FrameConn, String, String)>> {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for (name, token) in names {
        let sem = sem.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire().await?;
            let mut c = FrameConn::connect(addr).await?;
            let answer = match &token {
                None => c.register_and_login(&name, "pw").await?,
                Some(t) => {
                    c.call(Request::Resume {
                        name: name.clone(),
                        token: t.clone(),
                    })
                    .await?
                }
            };
            anyhow::ensure!(
                answer == Event::LoginResult(ResultCode::OK),
                "login {name}: {answer:?}"
            );
            let Event::ResumeToken { token, .. } = c.next().await? else {
                anyhow::bail!("no token")
            };
            Ok::<_, anyhow::Error>((c, name, token))
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.push(r??);
    }
    Ok(all)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let (port, control) = (free_port()?, free_port()?);
    // A redis-server on a free loopback port, stopped (by PID) on drop.
    let redis = if args.redis {
        Some(plaza_test_support::RedisServer::start().await)
    } else {
        None
    };
    let store = redis
        .as_ref()
        .map_or_else(|| "embedded".to_owned(), plaza_test_support::RedisServer::url);
    let (max_users, max_sessions) = (
        (args.connections + 10).to_string(),
        (args.connections + 100).to_string(),
    );
    let server = start_server(
        dir.path(),
        port,
        control,
        &[
            "--store",
            &store,
            // One load-generating address far beyond a person's rates.
            "--max-connections-per-ip",
            "0",
            "--login-rate-per-ip",
            "0",
            "--login-rate-per-account",
            "0",
            "--chat-rate",
            "0",
            "--metrics-bind",
            "off",
            "--argon2-memory-kib",
            "64",
            "--argon2-iterations",
            "1",
            "--log",
            "warn",
            "--max-users",
            &max_users,
            "--max-sessions",
            &max_sessions,
        ],
    )
    .await?;
    let pid = server.0.id();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    // The guards above stop both children (by PID) once this finishes.
    async {
        let base = rss_kib(pid)?;
        let names: Vec<(String, Option<String>)> = (0..args.connections).map(|i| (format!("user{i}"), None)).collect();
        let t = Instant::now();
        let conns = connect_all(addr, names, args.concurrency).await?;
        let setup = t.elapsed();
        // Let the server settle (buffers of the login burst), then measure.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let with_accounts = rss_kib(pid)?;
        println!(
            "connect-bench: {} connections, concurrency {}, server pid {pid}",
            args.connections, args.concurrency
        );
        println!(
            "register+login (password, cheap hash): {:.0} connections/s ({:.2}s)",
            args.connections as f64 / setup.as_secs_f64(),
            setup.as_secs_f64()
        );
        println!(
            "server RSS: {base} KiB at start, {with_accounts} KiB with {} idle logged-in connections: {:.2} KiB per connection{}",
            args.connections,
            with_accounts.saturating_sub(base) as f64 / args.connections as f64,
            if args.redis { " (accounts live in Redis)" } else { " (includes the embedded store's account data and cache)" }
        );
        // Reconnect storm with resume tokens.
        let tokens: Vec<(String, Option<String>)> = conns.into_iter().map(|(c, n, t)| {
            drop(c);
            (n, Some(t))
        }).collect();
        // Wait until the server has processed every disconnect: a resume
        // while the old session is still logged in would get 31.
        tokio::time::sleep(Duration::from_secs(2)).await;
        // With every account loaded and no connection left, this is the
        // baseline for the per-connection figure.
        let without = rss_kib(pid)?;
        let t = Instant::now();
        let again = connect_all(addr, tokens, args.concurrency).await?;
        let storm = t.elapsed();
        println!(
            "reconnect storm (resume tokens): {:.0} connections set up and logged in per second ({:.2}s)",
            args.connections as f64 / storm.as_secs_f64(),
            storm.as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let with = rss_kib(pid)?;
        println!(
            "after the storm: {without} KiB with no connections, {with} KiB with {} again (freed memory is reused, so this delta understates)",
            args.connections
        );
        drop(again);
        Ok::<_, anyhow::Error>(())
    }
    .await
}
