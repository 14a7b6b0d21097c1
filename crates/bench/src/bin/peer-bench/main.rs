//! Room fan-out and idle connections, measured the same way against Plaza
//! and the servers users would otherwise pick (issue #5): Redis pub/sub,
//! NATS, Mosquitto (MQTT 3.1.1) and InspIRCd (IRC), and against
//! `floor-server`, which does nothing but the writes (the floor any of them
//! stands on).
//!
//! R rooms × M members. Each member subscribes to its room and publishes
//! `--size`-byte messages at `--rate` with its send time in the first 20
//! bytes. Every member of a room receives every message of the room, its own
//! included (Redis, NATS and MQTT 3.1.1 deliver a subscriber's own
//! publications; IRC does with the IRCv3 echo-message capability, which
//! peer-bench requests), so deliveries = messages × M on every server.
//! `--scenario saturate` raises the rate step by step; `--scenario idle`
//! opens `--connections` members that stay quiet. The server runs elsewhere
//! (`scripts/peers.sh` starts each one pinned to a core); `--server-pid`
//! reads its CPU time, write calls and memory from `/proc`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use plaza_load::Tally;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Peer {
    Plaza,
    Redis,
    Nats,
    Mqtt,
    Irc,
    /// `floor-server`: frames of a 4-byte length; room, then message.
    Floor,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Scenario {
    /// One run at `--rate` (the scenarios a and b).
    Fanout,
    /// Runs at `--rate`, then `--factor` times faster each step, until a
    /// step loses a message or its p99 passes `--p99-ms` (scenario c).
    Saturate,
    /// `--connections` idle members spread over `--rooms` rooms: setup rate
    /// and server memory per connection (scenario d).
    Idle,
}

#[derive(Parser, Debug)]
#[command(
    about = "Room fan-out and idle connections against Plaza, Redis pub/sub, NATS, an MQTT broker or an IRC server, measured alike"
)]
struct Args {
    /// The server's protocol.
    #[arg(long, value_enum)]
    peer: Peer,
    /// The server's address.
    #[arg(long)]
    addr: SocketAddr,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Scenario::Fanout)]
    scenario: Scenario,
    /// Rooms (channels, subjects, topics).
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Members per room.
    #[arg(long, default_value_t = 100)]
    members: usize,
    /// Messages per second per member (the first step's, with `saturate`).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Message size (at least 20).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Measured seconds (per step, with `saturate`).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// `saturate`: each step's rate over the last one's.
    #[arg(long, default_value_t = 1.5)]
    factor: f64,
    /// `saturate`: a step with a higher p99 (ms) ends the run.
    #[arg(long, default_value_t = 50.0)]
    p99_ms: f64,
    /// `saturate`: at most this many steps.
    #[arg(long, default_value_t = 12)]
    max_steps: usize,
    /// `saturate`: runs of a step before it counts as failed. This machine
    /// has stalls of 100-200 ms that no server controls (seen with every
    /// server at the same rates), and one in a 5 s run decides its p99.
    #[arg(long, default_value_t = 2)]
    tries: usize,
    /// `idle`: connections.
    #[arg(long, default_value_t = 19_000)]
    connections: usize,
    /// `idle`: seconds to keep the connections open after measuring, to
    /// look at the server meanwhile.
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// `idle`: times every member closes and comes back (Plaza: with its
    /// resume token; the others under a new name, so that no server sees
    /// the name still taken), each round's rate printed.
    #[arg(long, default_value_t = 1)]
    resume_rounds: u32,
    /// `idle`, Plaza: members take room history and come back with
    /// ROOM_REJOIN; before the last comeback (of at least two), each room
    /// gets this many messages while its members are away, which each must
    /// get replayed, in order, once (the comebacks before replay none: the
    /// rates to compare with; the first of them also warms the server up).
    #[arg(long, default_value_t = 0)]
    missed: u64,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
    /// The server's process id, for its CPU time and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Plaza: its metrics address (`--metrics-bind`), to count its write
    /// calls from `plaza_writes_total`: it writes with `sendmsg` and
    /// `send`, which `/proc/PID/io` does not count.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Over WebSocket (Plaza's `/ws`, NATS's websocket listener) at
    /// `--addr`: the same messages, each in a masked binary frame.
    #[arg(long)]
    ws: bool,
    /// Prefix of user names, nicknames and client ids (Plaza accounts are
    /// registered).
    #[arg(long, default_value = "peer")]
    prefix: String,
}

mod idle;
mod wire;
mod ws;

use wire::*;

/// Where in each send interval member `i` sends, in [0, 1): successive
/// multiples of the golden ratio, so that members send evenly spread over
/// the interval, as independent people do, not in lockstep, and every
/// server is offered the same sequence.
fn phase(i: usize) -> f64 {
    (i as f64 * 0.618_033_988_749_895).fract()
}

/// The run's clock: send times count from `t0`; members send from `start`
/// until `end`.
#[derive(Clone, Copy)]
struct Window {
    t0: Instant,
    start: Instant,
    end: Instant,
}

async fn run_member(
    peer: Peer,
    m: Member,
    room: usize,
    phase: f64,
    rate: f64,
    size: usize,
    w: Window,
) -> Result<Tally> {
    let Window { t0, start, end } = w;
    let (mut rd, mut sub_wr) = m.sub.into_split();
    let mut publish = m.publish;
    let mut buf = m.buf;
    let mut payloads = m.ws;
    let over_ws = payloads.is_some();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let sender = tokio::spawn(async move {
        let mut next = start + interval.mul_f64(phase);
        let (mut sent, mut out, mut sink) = (0u64, BytesMut::new(), [0u8; 4096]);
        let mut message = BytesMut::new();
        while next < end {
            tokio::time::sleep_until(next.into()).await;
            let payload = plaza_load::stamped(t0.elapsed().as_nanos() as u64, size).into_bytes();
            out.clear();
            if over_ws {
                message.clear();
                encode(peer, room, &payload, &mut message);
                ws::put_frame(&mut out, &message);
            } else {
                encode(peer, room, &payload, &mut out);
            }
            match &mut publish {
                Some(p) => {
                    p.write_all(&out).await?;
                    // Drain PUBLISH's integer replies.
                    let _ = p.try_read(&mut sink);
                }
                None => sub_wr.write_all(&out).await?,
            }
            sent += 1;
            next += interval;
        }
        // Hand the write halves back: dropping them would close the
        // connections before the last deliveries are read.
        Ok::<_, anyhow::Error>((sent, sub_wr, publish))
    });
    let mut tally = Tally::new();
    let drain_end = end + Duration::from_secs(2);
    loop {
        let delivered = match &mut payloads {
            Some(p) => {
                ws::deframe(&mut buf, p)?;
                p
            }
            None => &mut buf,
        };
        while let Some(s) = next_stamp(peer, delivered)? {
            if let Some(s) = s {
                tally.received += 1;
                tally
                    .hist
                    .saturating_record((t0.elapsed().as_nanos() as u64).saturating_sub(s).max(1_000));
            }
        }
        buf.reserve(64 * 1024);
        let now = Instant::now();
        if now >= drain_end {
            break;
        }
        match tokio::time::timeout(drain_end - now, rd.read_buf(&mut buf)).await {
            Ok(Ok(0)) => bail!("server closed"),
            Ok(r) => {
                r?;
            }
            Err(_) => break,
        }
    }
    tally.sent = sender.await??.0;
    Ok(tally)
}

/// The server's user and system CPU time so far.
fn cpu(pid: Option<u32>) -> Option<(Duration, Duration)> {
    plaza_bench::cpu::process_split(pid?)
}

/// Sets up `n` members (member `i` in room `room_of(i)`), `concurrency` at
/// a time; returns them in order with their resume tokens.
async fn connect_many(
    args: &Args,
    prefix: &str,
    n: usize,
    publish: bool,
    tokens: Option<Vec<Option<String>>>,
    rejoin: Option<(u64, u64)>,
) -> Result<Vec<(usize, Member, Option<String>)>> {
    let (peer, addr, rooms, over_ws) = (args.peer, args.addr, args.rooms.max(1), args.ws);
    let mut tasks = tokio::task::JoinSet::new();
    let mut out: Vec<Option<(usize, Member, Option<String>)>> = (0..n).map(|_| None).collect();
    let mut next = 0;
    let mut tokens = tokens.unwrap_or_default();
    while next < n || !tasks.is_empty() {
        while next < n && tasks.len() < args.concurrency.max(1) {
            let (i, room) = (next, next % rooms);
            let name = format!("{prefix}r{room}m{}", i / rooms);
            let token = tokens.get_mut(i).and_then(Option::take);
            tasks.spawn(async move {
                let j = Join {
                    peer,
                    addr,
                    name: &name,
                    room,
                    from: source(i),
                    publish,
                    token,
                    ws: over_ws,
                    rejoin,
                };
                let r = connect(j).await.with_context(|| format!("member {name}"));
                (i, room, r)
            });
            next += 1;
        }
        if let Some(r) = tasks.join_next().await {
            let (i, room, r) = r?;
            let (m, token) = r?;
            out[i] = Some((room, m, token));
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// One fan-out run's figures.
struct Outcome {
    rate: f64,
    sent: u64,
    expected: u64,
    received: u64,
    hist: Histogram<u64>,
    cpu_per_delivery_us: Option<f64>,
    /// Of that, the server's own (user) time.
    user_per_delivery_us: Option<f64>,
    /// Server write system calls per delivery (see `write_calls`).
    writes_per_delivery: Option<f64>,
}

impl Outcome {
    fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }
    fn p99_ms(&self) -> f64 {
        self.hist.value_at_quantile(0.99) as f64 / 1e6
    }
    fn print(&self, seconds: f64) {
        let q = |x: f64| self.hist.value_at_quantile(x) as f64 / 1e6;
        println!(
            "rate {}/s: offered {:.0} msg/s  deliveries {:.0}/s  expected {}  received {}  lost {}",
            self.rate,
            self.sent as f64 / seconds,
            self.received as f64 / seconds,
            self.expected,
            self.received,
            self.lost()
        );
        println!(
            "latency ms p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            q(0.5),
            q(0.99),
            q(0.999),
            self.hist.max() as f64 / 1e6
        );
        if let Some(c) = self.cpu_per_delivery_us {
            let u = (self.user_per_delivery_us).map_or(String::new(), |u| format!(" (user {u:.2} us)"));
            let w = self
                .writes_per_delivery
                .map_or(String::new(), |w| format!("  write calls/delivery {w:.3}"));
            println!("server cpu/delivery {c:.2} us{u}{w}");
        }
    }
}

/// The server's write system calls so far: Plaza's own count when its
/// metrics address is given, `floor-server`'s when it is the peer, else
/// `syscw` in /proc/PID/io (write and writev; a server that uses send or
/// sendmsg shows none).
async fn write_calls(args: &Args) -> Option<u64> {
    if let Some(addr) = args.metrics {
        return plaza_writes(addr).await.ok();
    }
    if args.peer == Peer::Floor {
        // ws-floor's layers write with different calls, not all of which
        // /proc/PID/io counts: not reported.
        return match args.ws {
            true => None,
            false => floor_writes(args.addr).await.ok(),
        };
    }
    let io = std::fs::read_to_string(format!("/proc/{}/io", args.server_pid?)).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("syscw: ")?.trim().parse().ok())
}

/// `plaza_writes_total` from a Plaza server's metrics endpoint.
async fn plaza_writes(addr: SocketAddr) -> Result<u64> {
    let mut c = tokio::net::TcpStream::connect(addr).await?;
    c.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_string(&mut body)).await??;
    body.lines()
        .find_map(|l| l.strip_prefix("plaza_writes_total ")?.trim().parse::<f64>().ok())
        .map(|n| n as u64)
        .context("no plaza_writes_total in the metrics")
}

/// `floor-server`'s own count of its write calls (it writes with `send`).
async fn floor_writes(addr: SocketAddr) -> Result<u64> {
    let mut c = tokio::net::TcpStream::connect(addr).await?;
    // The stats room (u32::MAX) with an empty message.
    let mut ask = BytesMut::new();
    encode(Peer::Floor, u32::MAX as usize, b"", &mut ask);
    c.write_all(&ask).await?;
    let mut answer = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut answer)).await??;
    anyhow::ensure!(answer[..4] == 8u32.to_be_bytes(), "floor stats: {answer:?}");
    Ok(u64::from_be_bytes(answer[4..].try_into()?))
}

/// R rooms × M members chatting at `rate` for `--seconds`.
async fn fanout(args: &Args, prefix: &str, rate: f64) -> Result<Outcome> {
    let members = connect_many(args, prefix, args.rooms * args.members, true, None, None).await?;
    let t0 = Instant::now();
    let start = t0 + Duration::from_millis(500);
    let end = start + Duration::from_secs_f64(args.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    let window = Window { t0, start, end };
    for (i, (r, m, _)) in members.into_iter().enumerate() {
        tasks.spawn(run_member(args.peer, m, r, phase(i), rate, args.size, window));
    }
    tokio::time::sleep_until(start.into()).await;
    let (cpu0, w0) = (cpu(args.server_pid), write_calls(args).await);
    tokio::time::sleep_until(end.into()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (cpu1, w1) = (cpu(args.server_pid), write_calls(args).await);
    let mut t = Tally::new();
    while let Some(r) = tasks.join_next().await {
        t.add(r??);
    }
    let per = |x: f64| x / t.received.max(1) as f64;
    Ok(Outcome {
        rate,
        sent: t.sent,
        expected: t.sent * args.members as u64,
        received: t.received,
        cpu_per_delivery_us: cpu1
            .zip(cpu0)
            .map(|(a, b)| per((a.0 + a.1 - b.0 - b.1).as_secs_f64() * 1e6)),
        user_per_delivery_us: cpu1.zip(cpu0).map(|(a, b)| per((a.0 - b.0).as_secs_f64() * 1e6)),
        writes_per_delivery: w1.zip(w0).map(|(a, b)| per((a - b) as f64)),
        hist: t.hist,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.size >= 20, "--size must be at least 20");
    println!(
        "peer-bench {:?} {:?}: {} rooms x {} members, {} B, {} s",
        args.peer, args.scenario, args.rooms, args.members, args.size, args.seconds
    );
    match args.scenario {
        Scenario::Fanout => fanout(&args, &args.prefix, args.rate).await?.print(args.seconds),
        Scenario::Saturate => {
            let mut rate = args.rate;
            let mut best: Option<Outcome> = None;
            for step in 0..args.max_steps {
                let mut sustained = None;
                for t in 1..=args.tries.max(1) {
                    match fanout(&args, &format!("{}s{step}t{t}", args.prefix), rate).await {
                        Ok(o) if o.lost() == 0 && o.p99_ms() <= args.p99_ms => {
                            o.print(args.seconds);
                            sustained = Some(o);
                            break;
                        }
                        Ok(o) => {
                            o.print(args.seconds);
                            println!(
                                "try {t} of {}: lost {} or p99 {:.3} ms over {} ms",
                                args.tries,
                                o.lost(),
                                o.p99_ms(),
                                args.p99_ms
                            );
                        }
                        Err(e) => println!("rate {rate:.0}/s, try {t} of {}: failed: {e:#}", args.tries),
                    }
                }
                let Some(o) = sustained else {
                    println!("stop: no try of this step was sustained");
                    break;
                };
                best = Some(o);
                rate *= args.factor;
            }
            match best {
                Some(b) => {
                    println!("best sustained (no loss, p99 under {} ms):", args.p99_ms);
                    b.print(args.seconds);
                }
                None => println!("no step was sustained"),
            }
        }
        Scenario::Idle => idle::idle(&args).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(peer: Peer, bytes: &[u8]) -> Result<Option<Option<u64>>> {
        next_stamp(peer, &mut BytesMut::from(bytes))
    }

    #[test]
    fn each_peers_delivery_gives_its_send_stamp() {
        let stamp = "00000000000000001234";
        let payload = format!("{stamp}{}", "x".repeat(44));
        let redis = format!("*3\r\n$7\r\nmessage\r\n$6\r\nroom.1\r\n$64\r\n{payload}\r\n");
        let nats = format!("MSG room.1 1 64\r\n{payload}\r\n");
        let irc = format!(":m1!m1@h PRIVMSG #room1 :{payload}\r\n");
        let mut mqtt = vec![0x30, 2 + 5 + 64, 0, 5];
        mqtt.extend_from_slice(b"room1");
        mqtt.extend_from_slice(payload.as_bytes());
        let mut floor = 64u32.to_be_bytes().to_vec();
        floor.extend_from_slice(payload.as_bytes());
        for (peer, bytes) in [
            (Peer::Redis, redis.as_bytes()),
            (Peer::Nats, nats.as_bytes()),
            (Peer::Irc, irc.as_bytes()),
            (Peer::Mqtt, &mqtt[..]),
            (Peer::Floor, &floor[..]),
        ] {
            assert_eq!(next(peer, bytes).unwrap(), Some(Some(1234)), "{peer:?}");
            let partial = &bytes[..bytes.len() - 1];
            assert_eq!(next(peer, partial).unwrap(), None, "{peer:?}: not all there yet");
        }
    }

    #[test]
    fn a_malformed_reply_is_an_error_not_a_panic() {
        for (peer, bytes) in [
            (Peer::Redis, &b"\r\n"[..]),
            (Peer::Redis, b"*1\r\n\r\n"),
            (Peer::Redis, b"*1\r\n$18446744073709551615\r\n"),
            (Peer::Nats, b"MSG room.1 1 18446744073709551615\r\n"),
            // A PUBLISH too short for its topic length.
            (Peer::Mqtt, &[0x30, 1, 0]),
            // A remaining length of more than four bytes.
            (Peer::Mqtt, &[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]),
            // A frame over the floor server's 64 KiB.
            (Peer::Floor, &[0xff, 0xff, 0xff, 0xff]),
        ] {
            assert!(next(peer, bytes).is_err(), "{peer:?} {bytes:?}");
        }
    }
}
