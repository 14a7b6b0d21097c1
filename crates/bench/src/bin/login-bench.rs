//! Logins per second with a password and with a resume token, on the
//! embedded store and on Redis, in one run (issue #4).
//!
//! Starts plaza-server in-process (one run per store; Redis is a
//! `redis-server` started on a free loopback port), registers `--clients`
//! accounts, then each client loops LOGIN → LOGOUT (password phase) or
//! RESUME → LOGOUT with the token from the previous login (token phase) for
//! `--seconds`. The default Argon2id cost is the production one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use plaza_proto::{Event, Request, ResultCode};

#[derive(Parser, Debug)]
#[command(about = "Logins/s with password and with resume token, embedded store vs Redis")]
struct Args {
    /// Concurrent clients (one account each).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Argon2id memory in KiB (production default 19456).
    #[arg(long, default_value_t = 19456)]
    argon2_memory_kib: u32,
    /// Skip the Redis runs.
    #[arg(long)]
    no_redis: bool,
}

struct Conn {
    io: plaza_bench::conn::Conn,
    name: String,
    token: String,
}

impl Conn {
    /// One login (password or token) and logout; returns whether it worked.
    async fn cycle(&mut self, token: bool) -> Result<bool> {
        let name = self.name.clone();
        let r = if token {
            Request::Resume {
                name: name.clone(),
                token: self.token.clone(),
            }
        } else {
            Request::Login {
                name: name.clone(),
                password: "pw".into(),
            }
        };
        self.io.send(r).await?;
        let answer = self.io.next().await?;
        if answer != Event::LoginResult(ResultCode::OK) {
            if std::env::var_os("LOGIN_BENCH_DEBUG").is_some() {
                eprintln!("{name}: {answer:?}");
            }
            return Ok(false);
        }
        if let Event::ResumeToken { token, .. } = self.io.next().await? {
            self.token = token;
        }
        self.io.send(Request::Logout).await?;
        anyhow::ensure!(
            self.io.next().await? == Event::LogoutResult(ResultCode::OK),
            "logout"
        );
        Ok(true)
    }
}

async fn phase(addr: SocketAddr, args: &Args, token: bool, conns: &mut Vec<Conn>) -> Result<(u64, u64)> {
    let end = Instant::now() + Duration::from_secs_f64(args.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for mut c in conns.drain(..) {
        tasks.spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while Instant::now() < end {
                if c.cycle(token).await? {
                    ok += 1;
                } else {
                    failed += 1;
                    // Fall back to the password to get a fresh token.
                    c.cycle(false).await?;
                }
            }
            Ok::<_, anyhow::Error>((c, ok, failed))
        });
    }
    let (mut ok, mut failed) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (c, o, f) = r??;
        conns.push(c);
        ok += o;
        failed += f;
    }
    let _ = addr;
    Ok((ok, failed))
}

fn run_store(name: &str, store: Option<String>, args: &Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let settings = plaza_server::Settings {
        bind: Some("127.0.0.1:0".parse()?),
        control_bind: Some("127.0.0.1:0".parse()?),
        data_dir: Some(dir.path().into()),
        store,
        argon2_memory_kib: Some(args.argon2_memory_kib),
        log: Some("warn".into()),
        // A load generator is one address sending far beyond a person's
        // rates: the abuse limits are off for it.
        max_connections_per_ip: Some(0),
        login_rate_per_ip: Some(0),
        login_rate_per_account: Some(0),
        chat_rate: Some(0),
        ..Default::default()
    };
    let running = rt.block_on(plaza_server::start(settings.resolve()?))?;
    let addr = running.local_addr();
    let load = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    load.block_on(async {
        let mut conns = Vec::new();
        for i in 0..args.clients {
            let mut c = Conn {
                io: plaza_bench::conn::Conn::connect(addr).await?,
                name: format!("u{i}"),
                token: String::new(),
            };
            c.io.send(Request::Register {
                name: format!("u{i}"),
                password: "pw".into(),
            })
            .await?;
            anyhow::ensure!(
                c.io.next().await? == Event::RegisterResult(ResultCode::OK),
                "register"
            );
            anyhow::ensure!(c.cycle(false).await?, "first login");
            conns.push(c);
        }
        for token in [false, true] {
            let (ok, failed) = phase(addr, args, token, &mut conns).await.context("phase")?;
            println!(
                "{name:<9} {:<9} {:>9.0} logins/s  ({ok} ok, {failed} failed, {} clients, {}s)",
                if token { "token" } else { "password" },
                ok as f64 / args.seconds,
                args.clients,
                args.seconds
            );
        }
        Ok::<_, anyhow::Error>(())
    })?;
    rt.block_on(running.shutdown());
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "login-bench: {} clients, {}s per phase, Argon2id {} KiB x 2 passes, server 1 worker thread + blocking pool",
        args.clients, args.seconds, args.argon2_memory_kib
    );
    run_store("embedded", None, &args)?;
    if !args.no_redis {
        // A redis-server on a free loopback port, stopped (by PID) on drop.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (dir, port) = (tempfile::tempdir()?, plaza_bench::child::free_port()?);
        let _redis = rt.block_on(plaza_bench::child::start_redis(dir.path(), port))?;
        run_store("redis", Some(format!("redis://127.0.0.1:{port}/0")), &args)?;
    }
    Ok(())
}
