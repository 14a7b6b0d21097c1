//! `plaza bench`: the load generator, against any running Plaza server.
//!
//! Scenarios: `fanout` (rooms × members chatting at a rate, end-to-end
//! latency from a send time in each message), `saturate` (fanout with the
//! rate raised step by step), `connect` (connections and logins per second,
//! with passwords then resume tokens), `mixed` (joins, leaves, chat,
//! whispers, user lists and reconnects, for soak runs). Every run is bounded
//! in time; losses and failures are counted, never hidden. With
//! `--server-pid` the server's CPU time and RSS are read from `/proc`.
//! `--json` prints one JSON object with the fields documented in
//! docs/BENCHMARKS.md instead of the human summary.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use plaza_load::Endpoint;
use plaza_load::{Conn, Tally, run_member};
use plaza_proto::{Event, Request, ResultCode};
use serde_json::{Value, json};

mod connect;
mod mixed;

use connect::reconnect;

#[derive(Args, Debug)]
pub(crate) struct BenchCmd {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// R rooms x M members, each chatting at a rate.
    Fanout(Fanout),
    /// Fanout with the rate raised step by step: the highest deliveries/s
    /// sustained with no loss and p99 under a bound.
    Saturate(Saturate),
    /// Open N connections and log them in with passwords, then again with
    /// resume tokens.
    Connect(Connect),
    /// A realistic mix of joins, leaves, chat, whispers, user lists and
    /// reconnects, for soak runs.
    Mixed(Mixed),
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7777")]
    server: SocketAddr,
    /// The server's process id, to report its CPU time and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    json: bool,
    /// Source addresses 127.0.0.1..=N to spread connections over (loopback
    /// servers only) [default: one per 200 connections].
    #[arg(long)]
    spread: Option<u8>,
    /// Prefix of the user names (accounts are registered if missing).
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// Load-generator threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[command(flatten)]
    tls: super::TlsArgs,
    /// Over WebSocket: `--server` is the server's `--ws-bind` (or, with
    /// `--tls`, `--wss-bind`) address.
    #[arg(long)]
    ws: bool,
}

impl Common {
    fn target(&self) -> Result<Endpoint> {
        Ok(Endpoint {
            target: self.tls.target(self.server)?,
            websocket: self.ws,
        })
    }
}

#[derive(Args, Debug, Clone)]
struct Fanout {
    #[command(flatten)]
    common: Common,
    /// Rooms.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Members per room.
    #[arg(long, default_value_t = 100)]
    members: usize,
    /// Messages per second per member.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Message size in bytes (20 to 256).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// First room number.
    #[arg(long, default_value_t = 0)]
    first_room: usize,
}

#[derive(Args, Debug)]
struct Saturate {
    #[command(flatten)]
    fanout: Fanout,
    /// Multiply the rate by this each step.
    #[arg(long, default_value_t = 1.5)]
    factor: f64,
    /// Most steps.
    #[arg(long, default_value_t = 8)]
    steps: usize,
    /// p99 bound in milliseconds.
    #[arg(long, default_value_t = 50.0)]
    p99_ms: f64,
}

#[derive(Args, Debug)]
struct Connect {
    #[command(flatten)]
    common: Common,
    /// Connections.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

#[derive(Args, Debug)]
struct Mixed {
    #[command(flatten)]
    common: Common,
    /// Simulated users.
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Rooms they move between.
    #[arg(long, default_value_t = 20)]
    rooms: usize,
    /// Actions per second per user.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Seconds of activity.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Seconds to keep sampling the server's RSS after every user has left.
    #[arg(long, default_value_t = 0.0)]
    linger: f64,
}

pub(crate) fn run(cmd: BenchCmd) -> Result<()> {
    let threads = match &cmd.scenario {
        Scenario::Fanout(f) => f.common.threads,
        Scenario::Saturate(s) => s.fanout.common.threads,
        Scenario::Connect(c) => c.common.threads,
        Scenario::Mixed(m) => m.common.threads,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    let (json, report) = rt.block_on(async {
        match cmd.scenario {
            Scenario::Fanout(f) => Ok::<_, anyhow::Error>((f.common.json, fanout(&f).await?)),
            Scenario::Saturate(s) => Ok((s.fanout.common.json, saturate(&s).await?)),
            Scenario::Connect(c) => Ok((c.common.json, connect::connect(&c).await?)),
            Scenario::Mixed(m) => Ok((m.common.json, mixed::mixed(&m).await?)),
        }
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

// ---- Helpers.

/// The soft limit on open files, from /proc/self/limits.
fn fd_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Refuses, before starting, a run that the file-descriptor limit would cut
/// short.
fn check_fds(connections: usize) -> Result<()> {
    if let Some(limit) = fd_limit() {
        let need = connections as u64 + 64;
        if need > limit {
            bail!(
                "{connections} connections need about {need} file descriptors, but this process may open {limit} \
                 (ulimit -n); raise it or use fewer connections"
            );
        }
    }
    Ok(())
}

/// Source address for connection `i`: spread over 127.0.0.1..=N when the
/// server is on loopback.
fn source(common: &Common, total: usize, i: usize) -> Option<IpAddr> {
    if !common.server.ip().is_loopback() {
        return None;
    }
    let n = common
        .spread
        .map_or_else(|| total.div_ceil(200).clamp(1, 250), usize::from)
        .max(1);
    Some(IpAddr::from([127, 0, 0, 1 + (i % n) as u8]))
}

#[derive(Clone, Copy)]
struct Proc {
    cpu: Duration,
    rss_kib: u64,
}

fn server_proc(pid: Option<u32>) -> Option<Proc> {
    let pid = pid?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(Proc {
        cpu: Duration::from_millis(ticks * 10),
        rss_kib,
    })
}

fn bar(common: &Common, seconds: f64, what: &str) -> ProgressBar {
    if common.json {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new((seconds * 10.0) as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {elapsed}/{duration}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    pb
}

/// Ticks `pb` until `end`.
async fn tick_until(pb: ProgressBar, end: Instant) {
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        pb.inc(1);
    }
    pb.finish_and_clear();
}

const PASSWORD: &str = "bench-pw";

/// Connects, registers `name` if it does not exist, and logs in, retrying
/// (bounded) while the server answers BUSY. Returns the connection, or the
/// result code that refused it.
async fn login(server: &Endpoint, from: Option<IpAddr>, name: &str) -> Result<Result<Conn, ResultCode>> {
    for attempt in 0..50u64 {
        match login_once(server, from, name).await? {
            Err(ResultCode::BUSY) => tokio::time::sleep(Duration::from_millis(20 * (attempt + 1))).await,
            other => return Ok(other),
        }
    }
    Ok(Err(ResultCode::BUSY))
}

async fn login_once(server: &Endpoint, from: Option<IpAddr>, name: &str) -> Result<Result<Conn, ResultCode>> {
    let mut c = server.connect(from).await?;
    match c.register_and_login(name, PASSWORD).await? {
        Event::LoginResult(ResultCode::OK) => Ok(Ok(c)),
        Event::RegisterResult(code) | Event::LoginResult(code) => Ok(Err(code)),
        other => bail!("login {name}: {other:?}"),
    }
}

/// Reads until `want` accepts an event; notifications in between are skipped.
async fn until(c: &mut Conn, want: impl Fn(&Event) -> bool) -> Result<Event> {
    loop {
        let e = c.next().await?;
        if want(&e) {
            return Ok(e);
        }
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e6
}

fn latency_json(h: &Histogram<u64>) -> Value {
    json!({
        "p50": ms(h, 0.5), "p90": ms(h, 0.9), "p99": ms(h, 0.99),
        "p999": ms(h, 0.999), "max": h.max() as f64 / 1e6,
    })
}

// ---- fanout and saturate.

async fn fanout(f: &Fanout) -> Result<Value> {
    if !(20..=256).contains(&f.size) {
        bail!("--size must be 20 to 256");
    }
    let total = f.rooms * f.members;
    check_fds(total)?;
    let mut members = Vec::with_capacity(total);
    let mut refused = BTreeMap::<String, u64>::new();
    let target = f.common.target()?;
    for r in 0..f.rooms {
        let room = (f.first_room + r) as i32;
        for m in 0..f.members {
            let i = r * f.members + m;
            let name = format!("{}r{room}m{m}", f.common.prefix);
            match login(&target, source(&f.common, total, i), &name).await? {
                Ok(mut c) => {
                    c.send(Request::RoomEnter { room }).await?;
                    match until(&mut c, |e| matches!(e, Event::RoomEnterResult(_))).await? {
                        Event::RoomEnterResult(ResultCode::OK) => members.push(c),
                        Event::RoomEnterResult(code) => *refused.entry(code.name().into()).or_default() += 1,
                        _ => unreachable!("filtered"),
                    }
                }
                Err(code) => *refused.entry(code.name().into()).or_default() += 1,
            }
        }
    }
    if members.is_empty() {
        bail!("no member could log in and enter: {refused:?}");
    }
    let t0 = Instant::now();
    let start = t0 + Duration::from_millis(500);
    let end = start + Duration::from_secs_f64(f.seconds);
    let joined = members.len();
    let mut tasks = tokio::task::JoinSet::new();
    for m in members {
        tasks.spawn(run_member(m, f.rate, f.size, t0, start, end));
    }
    tokio::time::sleep_until(start.into()).await;
    let before = server_proc(f.common.server_pid);
    tick_until(bar(&f.common, f.seconds, "fanout"), end).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server_proc(f.common.server_pid);
    let mut tally = Tally::new();
    let mut errors = 0u64;
    while let Some(r) = tasks.join_next().await {
        match r? {
            Ok(t) => tally.add(t),
            Err(_) => errors += 1,
        }
    }
    // Every member gets every message of its room, its own included.
    let per_room = joined as f64 / f.rooms as f64;
    let expected = (tally.sent as f64 * per_room).round() as u64;
    let secs = f.seconds;
    let cpu_per_delivery = before
        .zip(after)
        .map(|(b, a)| (a.cpu.saturating_sub(b.cpu)).as_secs_f64() * 1e6 / tally.received.max(1) as f64);
    let report = json!({
        "scenario": "fanout",
        "rooms": f.rooms, "members": f.members, "rate": f.rate, "size": f.size, "seconds": secs,
        "joined": joined, "refused": refused, "member_errors": errors,
        "offered_msgs_per_sec": tally.sent as f64 / secs,
        "deliveries_per_sec": tally.received as f64 / secs,
        "expected": expected, "received": tally.received,
        "lost": expected.saturating_sub(tally.received),
        "latency_ms": latency_json(&tally.hist),
        "server_cpu_us_per_delivery": cpu_per_delivery,
        "server_rss_kib": after.map(|p| p.rss_kib),
    });
    if !f.common.json {
        println!(
            "fanout: {} rooms x {} members x {}/s, {} B, {secs} s; {joined} joined{}",
            f.rooms,
            f.members,
            f.rate,
            f.size,
            if refused.is_empty() {
                String::new()
            } else {
                format!(", refused {refused:?}")
            }
        );
        println!(
            "offered {:.0} msg/s  deliveries {:.0}/s  expected {expected}  received {}  lost {}",
            tally.sent as f64 / secs,
            tally.received as f64 / secs,
            tally.received,
            expected.saturating_sub(tally.received)
        );
        let h = &tally.hist;
        println!(
            "latency ms p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            ms(h, 0.5),
            ms(h, 0.9),
            ms(h, 0.99),
            ms(h, 0.999),
            h.max() as f64 / 1e6
        );
        if let (Some(c), Some(a)) = (cpu_per_delivery, after) {
            println!("server cpu/delivery {c:.2} us  rss {} KiB", a.rss_kib);
        }
    }
    Ok(report)
}

async fn saturate(s: &Saturate) -> Result<Value> {
    let mut step = s.fanout.clone();
    step.common.json = true;
    let mut steps = Vec::new();
    let mut best: Option<Value> = None;
    for i in 0..s.steps {
        // Fresh rooms each step, so no backlog carries over.
        step.first_room = s.fanout.first_room + i * s.fanout.rooms;
        let r = fanout(&step).await?;
        let ok = r["lost"] == 0 && r["latency_ms"]["p99"].as_f64().is_some_and(|p| p < s.p99_ms);
        if !s.fanout.common.json {
            println!(
                "step {i}: rate {:.2}/s  deliveries {:.0}/s  p99 {:.3} ms  lost {}  {}",
                step.rate,
                r["deliveries_per_sec"].as_f64().unwrap_or(0.0),
                r["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
                r["lost"],
                if ok { "ok" } else { "over the bound" }
            );
        }
        steps.push(r.clone());
        if !ok {
            break;
        }
        best = Some(r);
        step.rate *= s.factor;
    }
    let best_rate = best.as_ref().map(|b| b["deliveries_per_sec"].clone());
    if !s.fanout.common.json {
        match &best_rate {
            Some(v) => println!(
                "highest sustained: {v} deliveries/s with p99 under {} ms and no loss",
                s.p99_ms
            ),
            None => println!("no step met the bound"),
        }
    }
    Ok(json!({
        "scenario": "saturate", "p99_bound_ms": s.p99_ms,
        "best_deliveries_per_sec": best_rate, "best": best, "steps": steps,
    }))
}

// ---- connect.

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fd_limit_is_read() {
        assert!(fd_limit().is_some_and(|n| n > 0));
        assert!(check_fds(usize::MAX / 2).is_err());
    }
}
