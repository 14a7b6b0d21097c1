//! Hostile clients beside well-behaved ones (issue #8).
//!
//! Starts `plaza-server` as its own process with its default limits, puts
//! `--members` well-behaved members in one room (spread over 127.0.0.10-49,
//! chatting at `--rate` with the send time in each message), and measures
//! their delivery latency for `--seconds` without an attacker, then again
//! with the chosen attacker running beside them. Reported: p50/p99/max of
//! both runs and their ratio, lost messages, the server's RSS before, at the
//! end of the attack, and after the attackers left, its CPU time, and the
//! server's own counters of what it refused and why.
//!
//! Every attacker loop is bounded by the run's end and by a count; all
//! traffic stays on 127.0.0.0/8.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::BytesMut;
use clap::{Parser, ValueEnum};
use plaza_bench::child::{free_port, rss_kib, start_server};
use plaza_bench::conn::Conn;
use plaza_bench::control::Control;
use plaza_bench::room::{Tally, join, run_member};
use plaza_proto::Request;
use plaza_server::control::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Attack {
    /// Connections beyond max sessions, from 100 addresses, held open.
    ConnFlood,
    /// Connections that send a valid frame one byte per
    /// `--slowloris-interval` seconds.
    Slowloris,
    /// Logins with wrong passwords, as fast as answers come.
    LoginFlood,
    /// Random bytes, reconnecting after each disconnect.
    Garbage,
    /// Frames declaring 65,535 bytes, reconnecting after each disconnect.
    Oversized,
    /// Members of the busy room that never read.
    Stalled,
}

#[derive(Parser, Debug)]
#[command(about = "Well-behaved members' latency with and without a hostile client beside them")]
struct Args {
    /// The attacker.
    #[arg(long, value_enum)]
    attack: Attack,
    /// Well-behaved members (one room).
    #[arg(long, default_value_t = 50)]
    members: usize,
    /// Messages per second per member.
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Seconds of each run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Attacking connections (or attempts in flight).
    #[arg(long, default_value_t = 200)]
    attackers: usize,
    /// Seconds between a slowloris connection's bytes.
    #[arg(long, default_value_t = 1.0)]
    slowloris_interval: f64,
}

fn addr_n(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// One measured run of the well-behaved members; the attacker, if any, runs
/// until `end` too.
async fn measured_run(addr: SocketAddr, args: &Args, round: usize, attack: Option<Attack>) -> Result<Tally> {
    let mut members = Vec::new();
    for m in 0..args.members {
        let from = addr_n(10 + (m % 40) as u8);
        members.push(join(addr, Some(from), format!("g{round}m{m}"), round as i32).await?);
    }
    let t0 = Instant::now();
    let start = t0 + Duration::from_millis(500);
    let end = start + Duration::from_secs_f64(args.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for m in members {
        tasks.spawn(run_member(m, args.rate, 64, t0, start, end));
    }
    let attacker = attack.map(|a| {
        tokio::spawn(attack_until(
            a,
            addr,
            args.attackers,
            args.slowloris_interval,
            round,
            end,
        ))
    });
    let mut total = Tally::new();
    while let Some(r) = tasks.join_next().await {
        total.add(r??);
    }
    if let Some(a) = attacker {
        let done = a.await??;
        println!("  attacker: {done}");
    }
    Ok(total)
}

/// Runs the attack until `end`; returns what it did.
async fn attack_until(
    attack: Attack,
    addr: SocketAddr,
    n: usize,
    interval: f64,
    round: usize,
    end: Instant,
) -> Result<String> {
    let deadline = tokio::time::Instant::from_std(end);
    let mut held = Vec::new();
    let (mut tries, mut refused) = (0u64, 0u64);
    match attack {
        Attack::ConnFlood => {
            // Open as many as allowed, bounded by n x 20 attempts.
            while Instant::now() < end && tries < n as u64 * 20 {
                tries += 1;
                let from = addr_n(100 + (tries % 100) as u8);
                match tokio::time::timeout(Duration::from_secs(1), Conn::connect_from(addr, Some(from))).await
                {
                    Ok(Ok(c)) => held.push(c),
                    _ => refused += 1,
                }
            }
            tokio::time::sleep_until(deadline).await;
            Ok(format!(
                "{tries} connects, {} held open, {refused} failed",
                held.len()
            ))
        }
        Attack::Slowloris => {
            for i in 0..n {
                if let Ok(c) = Conn::connect_from(addr, Some(addr_n(60 + (i % 10) as u8))).await {
                    held.push(c);
                }
            }
            // A valid LOGIN frame, one byte per interval: it never
            // completes within the run.
            let mut frame = BytesMut::new();
            Request::Login {
                name: "slow".into(),
                password: "loris".into(),
            }
            .encode(&mut frame);
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(Duration::from_secs_f64(interval));
            let mut i = 0;
            while i < frame.len() {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = tokio::time::sleep_until(end.into()) => break,
                }
                for c in &mut held {
                    if c.stream.write_all(&frame[i..=i]).await.is_ok() {
                        sent += 1;
                    }
                }
                i += 1;
            }
            tokio::time::sleep_until(deadline).await;
            // Which the server has closed (EOF or reset waiting to be read).
            let mut closed = 0;
            for c in &mut held {
                let mut b = [0u8; 256];
                let r = tokio::time::timeout(Duration::from_millis(50), async {
                    loop {
                        match c.stream.read(&mut b).await {
                            Ok(0) | Err(_) => return true,
                            Ok(_) => {} // the "login timed out" notice
                        }
                    }
                })
                .await;
                closed += usize::from(r.unwrap_or(false));
            }
            Ok(format!(
                "{} connections, {sent} single bytes sent, {closed} closed by the server",
                held.len()
            ))
        }
        Attack::LoginFlood => {
            let mut conns = Vec::new();
            for i in 0..n.min(20) {
                conns.push(Conn::connect_from(addr, Some(addr_n(70 + (i % 5) as u8))).await?);
            }
            let mut answers = std::collections::BTreeMap::<String, u64>::new();
            while Instant::now() < end {
                for c in &mut conns {
                    let r = c.call(Request::Login {
                        name: format!("g{round}m0"),
                        password: "wrong".into(),
                    });
                    match tokio::time::timeout_at(deadline, r).await {
                        Ok(Ok(e)) => *answers.entry(format!("{e:?}")).or_default() += 1,
                        Ok(Err(_)) => *answers.entry("closed".into()).or_default() += 1,
                        Err(_) => break,
                    }
                    tries += 1;
                }
            }
            Ok(format!("{tries} wrong-password logins: {answers:?}"))
        }
        Attack::Garbage | Attack::Oversized => {
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            while Instant::now() < end && tries < n as u64 * 100 {
                tries += 1;
                let Ok(mut c) = Conn::connect_from(addr, Some(addr_n(80 + (tries % 10) as u8))).await else {
                    refused += 1;
                    continue;
                };
                let mut junk = BytesMut::new();
                if attack == Attack::Oversized {
                    junk.extend_from_slice(&[0xff, 0xff, 201, 0, 0]);
                } else {
                    for _ in 0..256 {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        junk.extend_from_slice(&seed.to_le_bytes());
                    }
                }
                let _ = c.stream.write_all(&junk).await;
                // Wait for the server to close it (bounded).
                let mut sink = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while c.stream.read(&mut sink).await.is_ok_and(|k| k > 0) {}
                })
                .await;
            }
            Ok(format!("{tries} connections of junk, {refused} refused"))
        }
        Attack::Stalled => {
            for i in 0..n.min(20) {
                held.push(join(addr, Some(addr_n(90)), format!("stall{round}x{i}"), round as i32).await?);
            }
            tokio::time::sleep_until(deadline).await;
            Ok(format!("{} members never reading", held.len()))
        }
    }
}

fn report(label: &str, t: &Tally, members: usize) {
    let q = |x: f64| t.hist.value_at_quantile(x) as f64 / 1e6;
    let expected = t.sent * members as u64;
    println!(
        "{label}: sent {} delivered {}/{} lost {}  latency ms p50 {:.3} p99 {:.3} max {:.3}",
        t.sent,
        t.received,
        expected,
        expected.saturating_sub(t.received),
        q(0.5),
        q(0.99),
        t.hist.max() as f64 / 1e6
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let (port, control) = (free_port()?, free_port()?);
    let server = start_server(
        dir.path(),
        port,
        control,
        // Every abuse limit at its default; sized so a flood can reach them.
        &[
            "--metrics-bind",
            "off",
            "--log",
            "error",
            "--max-sessions",
            "1500",
            "--argon2-memory-kib",
            "64",
        ],
    )
    .await?;
    let pid = server.0.id();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let ctl = Control::connect(format!("127.0.0.1:{control}").parse()?, dir.path()).await?;
    let cpu0 = plaza_bench::cpu::process(pid);

    println!(
        "attack-bench: {:?}, {} members x {}/s in one room, {} s per run, server pid {pid}",
        args.attack, args.members, args.rate, args.seconds
    );
    let rss_start = rss_kib(pid)?;
    let base = measured_run(addr, &args, 1, None).await?;
    report("without attacker", &base, args.members);
    let attacked = measured_run(addr, &args, 2, Some(args.attack)).await?;
    let rss_attack = rss_kib(pid)?;
    report("with attacker   ", &attacked, args.members);
    // The attackers are gone (their connections dropped with their task).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = rss_kib(pid)?;
    let p99 = |t: &Tally| t.hist.value_at_quantile(0.99) as f64;
    println!(
        "p99 ratio (attacked / baseline): {:.2}",
        p99(&attacked) / p99(&base).max(1.0)
    );
    println!("server RSS KiB: start {rss_start}, end of attack {rss_attack}, after {rss_after}");
    if let (Some(a), Some(b)) = (plaza_bench::cpu::process(pid), cpu0) {
        println!("server CPU over both runs: {:.2} s", (a - b).as_secs_f64());
    }
    let s = ctl.cmd(Command::Status).await?.data;
    let keys = [
        "sessions",
        "refused_connections",
        "refused_connections_per_ip",
        "logins_rate_limited",
        "login_timeouts",
        "bad_frames",
        "slow_consumer_disconnects",
        "idle_timeouts",
    ];
    let counts: Vec<String> = keys.iter().map(|k| format!("{k}={}", s[*k])).collect();
    println!("server counters: {}", counts.join(" "));
    Ok(())
}
