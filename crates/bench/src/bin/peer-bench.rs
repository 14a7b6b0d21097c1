//! Room fan-out measured the same way against Plaza and the servers users
//! would otherwise pick (issue #5): Redis pub/sub, NATS, Mosquitto (MQTT).
//!
//! R rooms × M members. Each member subscribes to its room and publishes
//! `--size`-byte messages at `--rate` with its send time in the first 20
//! bytes. Every member of a room receives every message of the room, its own
//! included (Redis, NATS and MQTT 3.1.1 all deliver a subscriber's own
//! publications), so deliveries = messages × M on every server. The server
//! runs elsewhere (`scripts/peers.sh` starts each one pinned to a core);
//! `--server-pid` reads its CPU time for the CPU per delivery.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{Buf, BufMut, BytesMut};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use plaza_client::load::{FrameConn, Tally};
use plaza_proto::{Event, Request, ResultCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Peer {
    Plaza,
    Redis,
    Nats,
    Mqtt,
}

#[derive(Parser, Debug)]
#[command(about = "Room fan-out against Plaza, Redis pub/sub, NATS or an MQTT broker, measured alike")]
struct Args {
    /// The server's protocol.
    #[arg(long, value_enum)]
    peer: Peer,
    /// The server's address.
    #[arg(long)]
    addr: SocketAddr,
    /// Rooms (channels, subjects, topics).
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Members per room.
    #[arg(long, default_value_t = 100)]
    members: usize,
    /// Messages per second per member.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Message size (at least 20).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// The server's process id, for its CPU time.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Prefix of Plaza user names (accounts are registered).
    #[arg(long, default_value = "peer")]
    prefix: String,
}

/// One member's connections: where it publishes and where it receives.
struct Member {
    sub: TcpStream,
    /// Redis needs a second connection to publish (a subscribed one cannot).
    publish: Option<TcpStream>,
    buf: BytesMut,
}

fn resp(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", parts.len()).into_bytes();
    for p in parts {
        v.extend(format!("${}\r\n", p.len()).as_bytes());
        v.extend(*p);
        v.extend(b"\r\n");
    }
    v
}

fn mqtt_len(mut n: usize, out: &mut BytesMut) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 128;
        }
        out.put_u8(b);
        if n == 0 {
            return;
        }
    }
}

fn mqtt_str(s: &[u8], out: &mut BytesMut) {
    out.put_u16(s.len() as u16);
    out.put_slice(s);
}

async fn connect(args: &Args, room: usize, m: usize) -> Result<Member> {
    let mut sub = TcpStream::connect(args.addr).await?;
    sub.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut publish = None;
    match args.peer {
        Peer::Plaza => {
            let name = format!("{}r{room}m{m}", args.prefix);
            let mut c = FrameConn {
                stream: sub.into(),
                buf,
            };
            let _ = c
                .call(Request::Register {
                    name: name.clone(),
                    password: "pw".into(),
                })
                .await?;
            let r = c
                .call(Request::Login {
                    name,
                    password: "pw".into(),
                })
                .await?;
            anyhow::ensure!(r == Event::LoginResult(ResultCode::OK), "login: {r:?}");
            c.send(Request::RoomEnter { room: room as i32 }).await?;
            loop {
                match c.next().await? {
                    Event::RoomEnterResult(ResultCode::OK) => break,
                    Event::RoomEnterResult(code) => bail!("enter: {code:?}"),
                    _ => {}
                }
            }
            let plaza_net::Stream::Tcp(sub) = c.stream else {
                unreachable!("peer-bench speaks plain TCP")
            };
            return Ok(Member {
                sub,
                publish: None,
                buf: c.buf,
            });
        }
        Peer::Redis => {
            sub.write_all(&resp(&[b"SUBSCRIBE", format!("room.{room}").as_bytes()]))
                .await?;
            // The confirmation: *3 $9 subscribe $N room.R :1
            while !buf.ends_with(b":1\r\n") {
                anyhow::ensure!(sub.read_buf(&mut buf).await? > 0, "redis closed");
            }
            buf.clear();
            let p = TcpStream::connect(args.addr).await?;
            p.set_nodelay(true)?;
            publish = Some(p);
        }
        Peer::Nats => {
            sub.write_all(
                format!("CONNECT {{\"verbose\":false}}\r\nSUB room.{room} 1\r\nPING\r\n").as_bytes(),
            )
            .await?;
            // INFO ... then PONG once the SUB is in.
            while !buf.windows(6).any(|w| w == b"PONG\r\n") {
                anyhow::ensure!(sub.read_buf(&mut buf).await? > 0, "nats closed");
            }
            buf.clear();
        }
        Peer::Mqtt => {
            let mut p = BytesMut::new();
            let id = format!("{}-{room}-{m}", args.prefix);
            let mut body = BytesMut::new();
            mqtt_str(b"MQTT", &mut body);
            body.put_u8(4); // 3.1.1
            body.put_u8(0x02); // clean session
            body.put_u16(600); // keepalive
            mqtt_str(id.as_bytes(), &mut body);
            p.put_u8(0x10);
            mqtt_len(body.len(), &mut p);
            p.put_slice(&body);
            let mut s = BytesMut::new();
            s.put_u16(1);
            mqtt_str(format!("room/{room}").as_bytes(), &mut s);
            s.put_u8(0);
            p.put_u8(0x82);
            mqtt_len(s.len(), &mut p);
            p.put_slice(&s);
            sub.write_all(&p).await?;
            // CONNACK (4 bytes) then SUBACK (5 bytes).
            while buf.len() < 9 {
                anyhow::ensure!(sub.read_buf(&mut buf).await? > 0, "mqtt closed");
            }
            anyhow::ensure!(
                buf[0] == 0x20 && buf[4] == 0x90,
                "mqtt handshake: {:?}",
                &buf[..9]
            );
            buf.advance(9);
        }
    }
    Ok(Member { sub, publish, buf })
}

/// One message of `payload` for `room`, in the peer's protocol.
fn encode(peer: Peer, room: usize, payload: &[u8], out: &mut BytesMut) {
    match peer {
        Peer::Plaza => Request::RoomChat {
            message: String::from_utf8_lossy(payload).into_owned(),
        }
        .encode(out),
        Peer::Redis => out.put_slice(&resp(&[b"PUBLISH", format!("room.{room}").as_bytes(), payload])),
        Peer::Nats => {
            out.put_slice(format!("PUB room.{room} {}\r\n", payload.len()).as_bytes());
            out.put_slice(payload);
            out.put_slice(b"\r\n");
        }
        Peer::Mqtt => {
            let topic = format!("room/{room}");
            out.put_u8(0x30);
            mqtt_len(2 + topic.len() + payload.len(), out);
            mqtt_str(topic.as_bytes(), out);
            out.put_slice(payload);
        }
    }
}

/// The next delivered payload's send stamp in `buf`, consuming it; `Ok(None)`
/// when more bytes are needed. Anything else the server sends is skipped.
fn next_stamp(peer: Peer, buf: &mut BytesMut) -> Result<Option<Option<u64>>> {
    let stamp = |p: &[u8]| std::str::from_utf8(&p[..20]).ok().and_then(|s| s.parse().ok());
    match peer {
        Peer::Plaza => {
            if buf.len() < 2 {
                return Ok(None);
            }
            let len = usize::from(u16::from_le_bytes([buf[0], buf[1]]));
            if buf.len() < len {
                return Ok(None);
            }
            let f = buf.split_to(len);
            if plaza_proto::packet_id(&f) == plaza_proto::id::ROOM_CHAT_NOTIFY {
                return Ok(Some(stamp(&f[5 + 33..])));
            }
            Ok(Some(None))
        }
        Peer::Redis => {
            // *3\r\n$7\r\nmessage\r\n$N\r\nroom.R\r\n$L\r\n<payload>\r\n
            let mut parts = Vec::new();
            let line =
                |buf: &[u8], at: usize| buf[at..].windows(2).position(|w| w == b"\r\n").map(|p| at + p);
            let Some(e) = line(buf, 0) else { return Ok(None) };
            let n: usize = std::str::from_utf8(&buf[1..e])?.parse()?;
            let mut at = e + 2;
            for _ in 0..n {
                let Some(e) = line(buf, at) else { return Ok(None) };
                let l: usize = std::str::from_utf8(&buf[at + 1..e])?.parse()?;
                if buf.len() < e + 2 + l + 2 {
                    return Ok(None);
                }
                parts.push((e + 2, l));
                at = e + 2 + l + 2;
            }
            let s = parts
                .get(2)
                .and_then(|&(o, l)| (l >= 20).then(|| stamp(&buf[o..o + l])).flatten());
            buf.advance(at);
            Ok(Some(s))
        }
        Peer::Nats => {
            let Some(e) = buf.windows(2).position(|w| w == b"\r\n") else {
                return Ok(None);
            };
            if buf.starts_with(b"PING") {
                buf.advance(e + 2);
                // The server pings every 2 minutes; runs are shorter.
                return Ok(Some(None));
            }
            if !buf.starts_with(b"MSG ") {
                buf.advance(e + 2);
                return Ok(Some(None));
            }
            let head = std::str::from_utf8(&buf[..e])?;
            let l: usize = head.rsplit(' ').next().context("MSG size")?.parse()?;
            if buf.len() < e + 2 + l + 2 {
                return Ok(None);
            }
            let s = stamp(&buf[e + 2..e + 2 + l]);
            buf.advance(e + 2 + l + 2);
            Ok(Some(s))
        }
        Peer::Mqtt => {
            if buf.len() < 2 {
                return Ok(None);
            }
            let (mut len, mut mult, mut i) = (0usize, 1usize, 1usize);
            loop {
                let Some(&b) = buf.get(i) else { return Ok(None) };
                len += usize::from(b & 127) * mult;
                mult *= 128;
                i += 1;
                if b & 128 == 0 {
                    break;
                }
            }
            if buf.len() < i + len {
                return Ok(None);
            }
            let s = if buf[0] >> 4 == 3 {
                let tl = usize::from(u16::from_be_bytes([buf[i], buf[i + 1]]));
                stamp(&buf[i + 2 + tl..i + len])
            } else {
                None
            };
            buf.advance(i + len);
            Ok(Some(s))
        }
    }
}

/// The run's clock: send times count from `t0`; members send from `start`
/// until `end`.
#[derive(Clone, Copy)]
struct Window {
    t0: Instant,
    start: Instant,
    end: Instant,
}

async fn run_member(peer: Peer, m: Member, room: usize, rate: f64, size: usize, w: Window) -> Result<Tally> {
    let Window { t0, start, end } = w;
    let (mut rd, mut sub_wr) = m.sub.into_split();
    let mut publish = m.publish;
    let mut buf = m.buf;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let offset = (room * 7919 + size) as f64 % 1000.0 / 1000.0;
    let sender = tokio::spawn(async move {
        let mut next = start + interval.mul_f64(offset);
        let (mut sent, mut out, mut sink) = (0u64, BytesMut::new(), [0u8; 4096]);
        while next < end {
            tokio::time::sleep_until(next.into()).await;
            let mut payload = format!("{:020}", t0.elapsed().as_nanos() as u64).into_bytes();
            payload.resize(size, b'x');
            out.clear();
            encode(peer, room, &payload, &mut out);
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
        while let Some(s) = next_stamp(peer, &mut buf)? {
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

fn cpu(pid: Option<u32>) -> Option<Duration> {
    plaza_bench::cpu::process(pid?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.size >= 20, "--size must be at least 20");
    let mut members = Vec::new();
    for r in 0..args.rooms {
        for m in 0..args.members {
            members.push((
                r,
                connect(&args, r, m)
                    .await
                    .with_context(|| format!("member {r}/{m}"))?,
            ));
        }
    }
    let t0 = Instant::now();
    let start = t0 + Duration::from_millis(500);
    let end = start + Duration::from_secs_f64(args.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    let window = Window { t0, start, end };
    for (r, m) in members {
        tasks.spawn(run_member(args.peer, m, r, args.rate, args.size, window));
    }
    tokio::time::sleep_until(start.into()).await;
    let before = cpu(args.server_pid);
    tokio::time::sleep_until(end.into()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = cpu(args.server_pid);
    let mut t = Tally::new();
    while let Some(r) = tasks.join_next().await {
        t.add(r??);
    }
    let expected = t.sent * args.members as u64;
    let q = |h: &Histogram<u64>, x: f64| h.value_at_quantile(x) as f64 / 1e6;
    println!(
        "peer-bench {:?}: {} rooms x {} members x {}/s, {} B, {} s",
        args.peer, args.rooms, args.members, args.rate, args.size, args.seconds
    );
    println!(
        "offered {:.0} msg/s  deliveries {:.0}/s  expected {expected}  received {}  lost {}",
        t.sent as f64 / args.seconds,
        t.received as f64 / args.seconds,
        t.received,
        expected.saturating_sub(t.received)
    );
    println!(
        "latency ms p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        q(&t.hist, 0.5),
        q(&t.hist, 0.99),
        q(&t.hist, 0.999),
        t.hist.max() as f64 / 1e6
    );
    if let (Some(a), Some(b)) = (after, before) {
        println!(
            "server cpu/delivery {:.2} us",
            (a - b).as_secs_f64() * 1e6 / t.received.max(1) as f64
        );
    }
    Ok(())
}
