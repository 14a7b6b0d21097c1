//! Each peer's wire: joining a room, encoding a publication, finding the
//! send stamp in what it delivers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::{Buf, BufMut, BytesMut};
use plaza_load::Endpoint;
use plaza_proto::{Event, Request, ResultCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::*;

/// One member's connections: where it publishes and where it receives.
pub(crate) struct Member {
    pub(crate) sub: TcpStream,
    /// Redis needs a second connection to publish (a subscribed one cannot).
    pub(crate) publish: Option<TcpStream>,
    pub(crate) buf: BytesMut,
    /// Over WebSocket: the frames' payloads so far (`buf` holds the frames).
    pub(crate) ws: Option<BytesMut>,
}

impl Member {
    pub(crate) fn over_ws(sub: TcpStream, frames: BytesMut, payloads: BytesMut) -> Self {
        Self {
            sub,
            publish: None,
            buf: frames,
            ws: Some(payloads),
        }
    }
}

pub(crate) fn resp(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", parts.len()).into_bytes();
    for p in parts {
        v.extend(format!("${}\r\n", p.len()).as_bytes());
        v.extend(*p);
        v.extend(b"\r\n");
    }
    v
}

pub(crate) fn mqtt_len(mut n: usize, out: &mut BytesMut) {
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

pub(crate) fn mqtt_str(s: &[u8], out: &mut BytesMut) {
    out.put_u16(s.len() as u16);
    out.put_slice(s);
}

/// The source address for connection `i`: 127.0.0.1..=16, so that a run's
/// connections, and the ones still in TIME_WAIT from the last, never run
/// out of ephemeral ports on one address.
pub(crate) fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % 16) as u8))
}

pub(crate) async fn dial(addr: SocketAddr, from: IpAddr) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let s = socket.connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads into `buf` until `done(buf)`.
pub(crate) async fn read_until(
    s: &mut TcpStream,
    buf: &mut BytesMut,
    what: &str,
    done: impl Fn(&[u8]) -> bool,
) -> Result<()> {
    while !done(buf) {
        anyhow::ensure!(
            s.read_buf(buf).await? > 0,
            "{what}: the server closed the connection"
        );
    }
    Ok(())
}

/// How one member joins its room.
pub(crate) struct Join<'a> {
    pub(crate) peer: Peer,
    pub(crate) addr: SocketAddr,
    /// User name, nickname or client id.
    pub(crate) name: &'a str,
    pub(crate) room: usize,
    pub(crate) from: IpAddr,
    /// Whether the member will publish (Redis then opens a second
    /// connection).
    pub(crate) publish: bool,
    /// Plaza: log in with this resume token instead of the password.
    pub(crate) token: Option<String>,
    /// Over WebSocket.
    pub(crate) ws: bool,
    /// Plaza with room history: join with ROOM_REJOIN (the epoch in
    /// [`EPOCH`]) after this sequence number instead of ROOM_ENTER, and
    /// expect exactly `.1` messages replayed, in order, without a gap.
    pub(crate) rejoin: Option<(u64, u64)>,
}

/// Plaza with room history: the server's epoch, from the first rejoin.
pub(crate) static EPOCH: AtomicU64 = AtomicU64::new(0);
/// Plaza with room history: messages replayed to rejoining members.
pub(crate) static REPLAYED: AtomicU64 = AtomicU64::new(0);

/// Connects, subscribes to the room, and returns the member with (Plaza)
/// its next resume token.
pub(crate) async fn connect(j: Join<'_>) -> Result<(Member, Option<String>)> {
    let mut buf = BytesMut::with_capacity(4096);
    if j.ws {
        return super::ws::member(j).await;
    }
    if j.peer == Peer::Plaza {
        return plaza_member(j).await;
    }
    let mut sub = dial(j.addr, j.from).await?;
    let mut publish = None;
    match j.peer {
        Peer::Plaza => unreachable!("handled above"),
        Peer::Redis => {
            sub.write_all(&resp(&[b"SUBSCRIBE", format!("room.{}", j.room).as_bytes()]))
                .await?;
            // The confirmation: *3 $9 subscribe $N room.R :1
            read_until(&mut sub, &mut buf, "redis", |b| b.ends_with(b":1\r\n")).await?;
            buf.clear();
            if j.publish {
                publish = Some(dial(j.addr, j.from).await?);
            }
        }
        Peer::Nats => {
            let hello = format!(
                "CONNECT {{\"verbose\":false}}\r\nSUB room.{} 1\r\nPING\r\n",
                j.room
            );
            sub.write_all(hello.as_bytes()).await?;
            // INFO ... then PONG once the SUB is in.
            read_until(&mut sub, &mut buf, "nats", |b| contains(b, b"PONG\r\n")).await?;
            buf.clear();
        }
        Peer::Mqtt => {
            let mut p = BytesMut::new();
            let mut body = BytesMut::new();
            mqtt_str(b"MQTT", &mut body);
            body.put_u8(4); // 3.1.1
            body.put_u8(0x02); // clean session
            body.put_u16(600); // keepalive
            mqtt_str(j.name.as_bytes(), &mut body);
            p.put_u8(0x10);
            mqtt_len(body.len(), &mut p);
            p.put_slice(&body);
            let mut s = BytesMut::new();
            s.put_u16(1);
            mqtt_str(format!("room/{}", j.room).as_bytes(), &mut s);
            s.put_u8(0);
            p.put_u8(0x82);
            mqtt_len(s.len(), &mut p);
            p.put_slice(&s);
            sub.write_all(&p).await?;
            // CONNACK (4 bytes) then SUBACK (5 bytes).
            read_until(&mut sub, &mut buf, "mqtt", |b| b.len() >= 9).await?;
            anyhow::ensure!(
                buf[0] == 0x20 && buf[4] == 0x90,
                "mqtt handshake: {:?}",
                &buf[..9]
            );
            buf.advance(9);
        }
        Peer::Floor => {
            // A join is the room and an empty message, answered by an empty frame.
            let mut join = BytesMut::new();
            encode(Peer::Floor, j.room, b"", &mut join);
            sub.write_all(&join).await?;
            read_until(&mut sub, &mut buf, "floor join", |b| b.len() >= 4).await?;
            anyhow::ensure!(buf[..4] == [0; 4], "floor join: {:?}", &buf[..4]);
            buf.advance(4);
        }
        Peer::Irc => {
            // echo-message (IRCv3) makes the server send a member its own
            // messages, as the other servers do.
            let hello = format!(
                "CAP REQ :echo-message\r\nNICK {0}\r\nUSER {0} 0 * :{0}\r\nCAP END\r\n",
                j.name
            );
            sub.write_all(hello.as_bytes()).await?;
            read_until(&mut sub, &mut buf, "irc welcome", |b| contains(b, b" 001 ")).await?;
            anyhow::ensure!(contains(&buf, b"ACK :echo-message"), "irc: echo-message refused");
            buf.clear();
            sub.write_all(format!("JOIN #room{}\r\n", j.room).as_bytes())
                .await?;
            // 366: end of the channel's member list.
            read_until(&mut sub, &mut buf, "irc join", |b| contains(b, b" 366 ")).await?;
            let end = find(&buf, b" 366 ").unwrap_or(0);
            match find(&buf[end..], b"\r\n") {
                Some(e) => buf.advance(end + e + 2),
                None => buf.clear(),
            }
        }
    }
    Ok((
        Member {
            sub,
            publish,
            buf,
            ws: None,
        },
        None,
    ))
}

/// Where `needle` first starts in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// Plaza answers 112 or 113 (retry later) that were retried.
pub(crate) static RETRIED: AtomicU64 = AtomicU64::new(0);

/// Plaza: registers and logs in with the password, then enters the room;
/// or, coming back with a resume token, resumes and enters at once, as a
/// reconnecting client does (the server answers pipelined requests in
/// order, the enter after the resume).
pub(crate) async fn plaza_member(j: Join<'_>) -> Result<(Member, Option<String>)> {
    let name = j.name.to_string();
    let enter = match j.rejoin {
        Some((after, _)) => Request::RoomRejoin {
            room: j.room as i32,
            epoch: EPOCH.load(Ordering::Relaxed),
            after,
        },
        None => Request::RoomEnter { room: j.room as i32 },
    };
    let mut tries = 0;
    let mut c = loop {
        tries += 1;
        let endpoint = Endpoint {
            target: j.addr.into(),
            websocket: j.ws,
        };
        let mut c = endpoint.connect(Some(j.from)).await?;
        let history = Request::Hello {
            version: plaza_proto::VERSION,
            features: plaza_proto::features::ALL,
        };
        let r = match &j.token {
            Some(token) => {
                // Pipelined: HELLO (with history), RESUME, the enter.
                if j.rejoin.is_some() {
                    c.send(history).await?;
                }
                c.send(Request::Resume {
                    name: name.clone(),
                    token: token.clone(),
                })
                .await?;
                match c.call(enter.clone()).await? {
                    Event::Hello { .. } => c.next().await?,
                    r => r,
                }
            }
            None => {
                if j.rejoin.is_some() {
                    c.call(history).await?;
                }
                c.register_and_login(&name, "pw").await?
            }
        };
        match plaza_client::PlazaClient::result_of(&r) {
            ResultCode::OK => break c,
            // The member's last connection is closed but the server has not
            // seen it yet: what any client does is try again.
            ResultCode::LOGIN_ALREADY if tries < 200 => tokio::time::sleep(Duration::from_millis(5)).await,
            // "Retry later" (the store did not answer in time, or too many
            // checks in flight): counted and reported, then retried.
            ResultCode::SERVICE_UNAVAILABLE | ResultCode::BUSY if tries < 20 => {
                RETRIED.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            code => bail!("login: {code:?}"),
        }
    };
    if j.token.is_none() {
        c.send(enter).await?;
    }
    let mut token = None;
    let (after, expect) = j.rejoin.unwrap_or_default();
    let mut replayed = 0;
    loop {
        match c.next().await? {
            Event::RoomEnterResult(ResultCode::OK) => break,
            Event::RoomEnterResult(code) => bail!("enter: {code:?}"),
            Event::ResumeToken { token: t, .. } => token = Some(t),
            Event::RoomMessage { seq, .. } => {
                replayed += 1;
                ensure!(
                    seq == after + replayed,
                    "replay: message {seq} where {} was due",
                    after + replayed
                );
            }
            Event::Rejoin(r) => {
                ensure!(r.result == ResultCode::OK, "rejoin: {:?}", r.result);
                ensure!(
                    !r.gap && replayed == expect,
                    "rejoin: {replayed} replayed of {expect}, gap {}",
                    r.gap
                );
                EPOCH.store(r.epoch, Ordering::Relaxed);
                REPLAYED.fetch_add(replayed, Ordering::Relaxed);
                break;
            }
            _ => {}
        }
    }
    let plaza_net::Stream::Tcp(sub) = c.stream else {
        unreachable!("peer-bench speaks plain TCP")
    };
    let member = match c.ws {
        // Over WebSocket `buf` holds the messages' payloads, `ws` the frames.
        Some(frames) => Member::over_ws(sub, frames, c.buf),
        None => Member {
            sub,
            publish: None,
            buf: c.buf,
            ws: None,
        },
    };
    Ok((member, token))
}

/// One message of `payload` for `room`, in the peer's protocol.
pub(crate) fn encode(peer: Peer, room: usize, payload: &[u8], out: &mut BytesMut) {
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
        Peer::Irc => {
            out.put_slice(format!("PRIVMSG #room{room} :").as_bytes());
            out.put_slice(payload);
            out.put_slice(b"\r\n");
        }
        Peer::Floor => {
            out.put_u32(4 + payload.len() as u32);
            out.put_u32(room as u32);
            out.put_slice(payload);
        }
    }
}

/// The next delivered payload's send stamp in `buf`, consuming it; `Ok(None)`
/// when more bytes are needed. Anything else the server sends is skipped.
pub(crate) fn next_stamp(peer: Peer, buf: &mut BytesMut) -> Result<Option<Option<u64>>> {
    let stamp = plaza_load::stamp_of;
    match peer {
        Peer::Plaza => {
            let Some(f) = plaza_proto::split_frame(buf)? else {
                return Ok(None);
            };
            if plaza_proto::packet_id(&f) == plaza_proto::id::ROOM_CHAT_NOTIFY {
                return Ok(Some(plaza_load::room_chat_stamp(&f)));
            }
            Ok(Some(None))
        }
        Peer::Redis => {
            // *3\r\n$7\r\nmessage\r\n$N\r\nroom.R\r\n$L\r\n<payload>\r\n
            let mut parts = Vec::new();
            let line = |buf: &[u8], at: usize| find(&buf[at..], b"\r\n").map(|p| at + p);
            let Some(e) = line(buf, 0) else { return Ok(None) };
            let n: usize = std::str::from_utf8(buf.get(1..e).context("RESP array header")?)?.parse()?;
            let mut at = e + 2;
            for _ in 0..n {
                let Some(e) = line(buf, at) else { return Ok(None) };
                let l: usize =
                    std::str::from_utf8(buf.get(at + 1..e).context("RESP bulk header")?)?.parse()?;
                let next = l.checked_add(e + 4).context("RESP bulk length")?;
                if buf.len() < next {
                    return Ok(None);
                }
                parts.push((e + 2, l));
                at = next;
            }
            let s = parts
                .get(2)
                .and_then(|&(o, l)| (l >= 20).then(|| stamp(&buf[o..o + l])).flatten());
            buf.advance(at);
            Ok(Some(s))
        }
        Peer::Nats => {
            let Some(e) = find(buf, b"\r\n") else {
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
            let next = l.checked_add(e + 4).context("MSG size")?;
            if buf.len() < next {
                return Ok(None);
            }
            let s = stamp(&buf[e + 2..e + 2 + l]);
            buf.advance(next);
            Ok(Some(s))
        }
        Peer::Mqtt => {
            if buf.len() < 2 {
                return Ok(None);
            }
            let (mut len, mut mult, mut i) = (0usize, 1usize, 1usize);
            loop {
                // A remaining length takes at most four bytes.
                anyhow::ensure!(i <= 4, "MQTT remaining length over four bytes");
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
                // PUBLISH: topic length, topic, payload.
                let body = &buf[i..i + len];
                let (tl, rest) = body.split_first_chunk::<2>().context("MQTT PUBLISH too short")?;
                rest.get(usize::from(u16::from_be_bytes(*tl))..).and_then(stamp)
            } else {
                None
            };
            buf.advance(i + len);
            Ok(Some(s))
        }
        Peer::Irc => {
            // :nick!user@host PRIVMSG #roomR :<payload>
            let Some(e) = find(buf, b"\r\n") else {
                return Ok(None);
            };
            let line = &buf[..e];
            let s = find(line, b" PRIVMSG ")
                .and_then(|at| find(&line[at..], b" :").map(|p| at + p + 2))
                .and_then(|p| (line.len() - p >= 20).then(|| stamp(&line[p..])).flatten());
            // Anything else (a PING: runs are shorter than the ping
            // interval the script configures) is skipped.
            buf.advance(e + 2);
            Ok(Some(s))
        }
        Peer::Floor => {
            let Some(head) = buf.first_chunk::<4>() else {
                return Ok(None);
            };
            let len = u32::from_be_bytes(*head) as usize;
            anyhow::ensure!(len <= 64 * 1024, "floor frame of {len} bytes");
            if buf.len() < 4 + len {
                return Ok(None);
            }
            let s = stamp(&buf[4..4 + len]);
            buf.advance(4 + len);
            Ok(Some(s))
        }
    }
}
