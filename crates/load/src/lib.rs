//! Load generation, shared by `plaza bench` and the benchmark tools: room
//! members that chat at a rate with the send time in each message and
//! measure delivery latency, over plaza-proto's raw [`Conn`].

use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use plaza_net::Stream;
pub use plaza_net::Target;
pub use plaza_proto::{Conn, ConnError, Endpoint};
use plaza_proto::{Event, Request, ResultCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Results of this crate.
pub type Result<T, E = ConnError> = std::result::Result<T, E>;

/// A load message of `size` bytes (at least 20): its send time in
/// nanoseconds as 20 decimal digits, then `x`s.
pub fn stamped(ns: u64, size: usize) -> String {
    let mut message = format!("{ns:020}");
    message.extend(std::iter::repeat_n('x', size.saturating_sub(20)));
    message
}

/// The send time a [`stamped`] message starts with.
pub fn stamp_of(message: &[u8]) -> Option<u64> {
    std::str::from_utf8(message.get(..20)?).ok()?.parse().ok()
}

/// The send time of a ROOM_CHAT_NOTIFY frame's [`stamped`] message, which
/// follows the header and the sender's fixed name field.
pub fn room_chat_stamp(frame: &[u8]) -> Option<u64> {
    frame
        .get(plaza_proto::HEADER_LEN + plaza_proto::limits::SEED_ID_FIELD..)
        .and_then(stamp_of)
}

/// Registers `name` (password "pw"), logs in and enters `room`, from
/// `from` (a 127.0.0.x source address) if given.
///
/// # Errors
/// If any step fails.
pub async fn join(
    endpoint: impl Into<Endpoint>,
    from: Option<std::net::IpAddr>,
    name: String,
    room: i32,
) -> Result<Conn> {
    let mut m = endpoint.into().connect(from).await?;
    let login = m.register_and_login(&name, "pw").await?;
    if login != Event::LoginResult(ResultCode::OK) {
        return Err(ConnError::Unexpected(format!("{name}: {login:?}")));
    }
    m.send(Request::RoomEnter { room }).await?;
    loop {
        match m.next().await? {
            Event::RoomEnterResult(ResultCode::OK) => return Ok(m),
            Event::RoomEnterResult(c) => return Err(ConnError::Unexpected(format!("enter: {c:?}"))),
            _ => {}
        }
    }
}

/// What one member sent and received.
pub struct Tally {
    /// Messages sent.
    pub sent: u64,
    /// Room messages received.
    pub received: u64,
    /// Send-to-delivery latency of each, in ns.
    pub hist: Histogram<u64>,
}

impl Tally {
    /// An empty tally.
    ///
    /// # Panics
    /// Never (the bounds are valid).
    pub fn new() -> Self {
        Self {
            sent: 0,
            received: 0,
            hist: Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid bounds"),
        }
    }

    /// Adds `other` to this.
    ///
    /// # Panics
    /// Never: every tally's histogram has the same bounds.
    pub fn add(&mut self, other: Tally) {
        self.sent += other.sent;
        self.received += other.received;
        self.hist.add(other.hist).expect("same bounds");
    }
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

/// One member: sends `rate` room messages per second of `size` bytes (at
/// least 20: the send time) from `start` until `end`, and counts what
/// arrives until two seconds after `end`.
///
/// # Errors
/// If the connection fails or the server closes it.
pub async fn run_member(
    m: Conn,
    rate: f64,
    size: usize,
    t0: Instant,
    start: Instant,
    end: Instant,
) -> Result<Tally> {
    let bufs = (m.buf, m.ws);
    match m.stream {
        Stream::Tcp(tcp) => {
            let (rd, wr) = tcp.into_split();
            member(rd, wr, bufs, rate, size, t0, start, end).await
        }
        tls => {
            let (rd, wr) = tokio::io::split(tls);
            member(rd, wr, bufs, rate, size, t0, start, end).await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn member<R, W>(
    mut rd: R,
    mut wr: W,
    // The frames read and not yet decoded, and over WebSocket the
    // messages read and not yet unframed into them.
    (mut buf, mut ws): (BytesMut, Option<BytesMut>),
    rate: f64,
    size: usize,
    t0: Instant,
    start: Instant,
    end: Instant,
) -> Result<Tally>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let interval = Duration::from_secs_f64(1.0 / rate);
    let over_ws = ws.is_some();
    let sender = tokio::spawn(async move {
        // Spread members over the first interval so sends are not in lockstep.
        let mut next = start + interval.mul_f64(fraction());
        let mut sent = 0u64;
        let (mut frame, mut masked) = (BytesMut::new(), BytesMut::new());
        while next < end {
            tokio::time::sleep_until(next.into()).await;
            let message = stamped(t0.elapsed().as_nanos() as u64, size);
            frame.clear();
            Request::RoomChat { message }.encode(&mut frame);
            if over_ws {
                masked.clear();
                plaza_net::ws::put_masked(&mut masked, plaza_net::ws::opcode::BINARY, &frame);
                wr.write_all(&masked).await?;
            } else {
                wr.write_all(&frame).await?;
            }
            wr.flush().await?;
            sent += 1;
            next += interval;
        }
        Ok::<_, ConnError>((sent, wr))
    });
    let mut tally = Tally::new();
    let drain_end = end + Duration::from_secs(2);
    loop {
        if let Some(raw) = &mut ws
            && plaza_net::ws::unframe(raw, &mut buf, u16::MAX as usize)?
        {
            return Err(ConnError::Closed);
        }
        while let Some(f) = plaza_proto::split_frame(&mut buf)? {
            if plaza_proto::packet_id(&f) == plaza_proto::id::ROOM_CHAT_NOTIFY {
                let stamp = room_chat_stamp(&f)
                    .ok_or_else(|| ConnError::Unexpected("a room message without a send time".into()))?;
                tally.received += 1;
                tally
                    .hist
                    .saturating_record((t0.elapsed().as_nanos() as u64).saturating_sub(stamp).max(1_000));
            }
        }
        let into = ws.as_mut().unwrap_or(&mut buf);
        into.reserve(64 * 1024);
        let now = Instant::now();
        if now >= drain_end {
            break;
        }
        match tokio::time::timeout(drain_end - now, rd.read_buf(into)).await {
            Ok(Ok(0)) => return Err(ConnError::Closed),
            Ok(r) => {
                r?;
            }
            Err(_) => break,
        }
    }
    let (sent, _wr) = sender
        .await
        .map_err(|e| ConnError::Unexpected(format!("sender task: {e}")))??;
    tally.sent = sent;
    Ok(tally)
}

/// A number in [0, 1) that differs between calls.
fn fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() % 10_000) as f64 / 10_000.0
}
