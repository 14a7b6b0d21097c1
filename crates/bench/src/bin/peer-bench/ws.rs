//! WebSocket, for the peers that offer it (Plaza's `/ws` with `plaza.v1`,
//! NATS's websocket listener): the client's upgrade, masked binary frames
//! out, the server's frames in. Each peer's own bytes ride inside, as over
//! TCP.

use std::net::SocketAddr;

use anyhow::{Result, bail, ensure};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// Upgrades `s` to WebSocket at `path`; returns what arrived after the
/// server's answer (frames already).
pub(crate) async fn upgrade(
    s: &mut TcpStream,
    addr: SocketAddr,
    path: &str,
    protocol: Option<&str>,
) -> Result<BytesMut> {
    let head = plaza_net::ws::upgrade_request(&addr.to_string(), path, protocol);
    s.write_all(head.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(4096);
    read_until(s, &mut buf, "websocket upgrade", |b| contains(b, b"\r\n\r\n")).await?;
    let end = find(&buf, b"\r\n\r\n").map_or(0, |e| e + 4);
    ensure!(
        buf.starts_with(b"HTTP/1.1 101"),
        "websocket upgrade refused: {}",
        String::from_utf8_lossy(&buf[..end])
    );
    buf.advance(end);
    Ok(buf)
}

/// Appends `payload` as one masked binary frame.
pub(crate) fn put_frame(out: &mut BytesMut, payload: &[u8]) {
    plaza_net::ws::put_masked(out, plaza_net::ws::opcode::BINARY, payload);
}

/// Moves the payload of every whole data frame at the front of `raw` to
/// `inner`; control frames (pings) are dropped.
pub(crate) fn deframe(raw: &mut BytesMut, inner: &mut BytesMut) -> Result<()> {
    let closed = plaza_net::ws::unframe(raw, inner, 1 << 24)?;
    ensure!(!closed, "the server closed the websocket");
    Ok(())
}

/// Reads until `inner` (the frames' payloads) satisfies `done`.
async fn read_inner(
    s: &mut TcpStream,
    raw: &mut BytesMut,
    inner: &mut BytesMut,
    what: &str,
    mut done: impl FnMut(&mut BytesMut) -> Result<bool>,
) -> Result<()> {
    loop {
        deframe(raw, inner)?;
        if done(inner)? {
            return Ok(());
        }
        ensure!(
            s.read_buf(raw).await? > 0,
            "{what}: the server closed the connection"
        );
    }
}

/// A member over WebSocket: Plaza (register and log in, or resume, then
/// enter, as a browser does) or NATS (CONNECT and SUB).
pub(crate) async fn member(j: Join<'_>) -> Result<(Member, Option<String>)> {
    match j.peer {
        // plaza-proto's `Conn` speaks plaza.v1 itself.
        Peer::Plaza => plaza_member(j).await,
        Peer::Nats => nats(j).await,
        Peer::Floor => floor(j).await,
        other => bail!("{other:?} has no WebSocket mode here"),
    }
}

/// `ws-floor`: its join, in a WebSocket message.
async fn floor(j: Join<'_>) -> Result<(Member, Option<String>)> {
    let mut s = dial(j.addr, j.from).await?;
    let mut raw = upgrade(&mut s, j.addr, "/", None).await?;
    let (mut join, mut out) = (BytesMut::new(), BytesMut::new());
    encode(Peer::Floor, j.room, b"", &mut join);
    put_frame(&mut out, &join);
    s.write_all(&out).await?;
    let mut inner = BytesMut::new();
    read_inner(&mut s, &mut raw, &mut inner, "floor join", |b| Ok(b.len() >= 4)).await?;
    ensure!(inner[..4] == [0; 4], "floor join: {:?}", &inner[..4]);
    inner.advance(4);
    Ok((Member::over_ws(s, raw, inner), None))
}

async fn nats(j: Join<'_>) -> Result<(Member, Option<String>)> {
    let mut s = dial(j.addr, j.from).await?;
    let mut raw = upgrade(&mut s, j.addr, "/", None).await?;
    let hello = format!(
        "CONNECT {{\"verbose\":false}}\r\nSUB room.{} 1\r\nPING\r\n",
        j.room
    );
    let mut out = BytesMut::new();
    put_frame(&mut out, hello.as_bytes());
    s.write_all(&out).await?;
    let mut inner = BytesMut::new();
    read_inner(&mut s, &mut raw, &mut inner, "nats", |b| {
        Ok(contains(b, b"PONG\r\n"))
    })
    .await?;
    let end = find(&inner, b"PONG\r\n").map_or(0, |e| e + 6);
    inner.advance(end);
    Ok((Member::over_ws(s, raw, inner), None))
}
