//! Load-generation primitives, shared by `plaza bench` and the benchmark
//! tools: a bare protocol connection, and room members that chat at a rate
//! with the send time in each message and measure delivery latency.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use plaza_net::Stream;
use plaza_proto::{Event, Request, ResultCode};

pub use crate::Target;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a load-generating connection stopped.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent a frame that does not decode.
    #[error("undecodable frame: {0}")]
    Decode(#[from] plaza_proto::DecodeError),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// The server answered something other than expected.
    #[error("{0}")]
    Unexpected(String),
}

/// Results of this module.
pub type Result<T, E = LoadError> = std::result::Result<T, E>;

/// One connection speaking the chat protocol, over TCP or TLS.
pub struct FrameConn {
    /// The stream.
    pub stream: Stream,
    /// Bytes read and not yet decoded.
    pub buf: BytesMut,
}

impl FrameConn {
    /// Connects with Nagle off.
    ///
    /// # Errors
    /// If the connection or the TLS handshake fails.
    pub async fn connect(target: impl Into<Target>) -> Result<Self> {
        Self::connect_from(target, None).await
    }

    /// Connects from a chosen source address (127.0.0.x spreads a load
    /// over addresses, for per-address limits and ephemeral ports).
    ///
    /// # Errors
    /// If the bind, the connection or the TLS handshake fails.
    pub async fn connect_from(target: impl Into<Target>, from: Option<std::net::IpAddr>) -> Result<Self> {
        let target = target.into();
        let tcp = match from {
            None => tokio::net::TcpStream::connect(target.addr).await?,
            Some(ip) => {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(std::net::SocketAddr::new(ip, 0))?;
                socket.connect(target.addr).await?
            }
        };
        tcp.set_nodelay(true)?;
        let stream = match &target.tls {
            Some(tls) => tls.connect(tcp).await?,
            None => Stream::Tcp(tcp),
        };
        Ok(Self {
            stream,
            buf: BytesMut::new(),
        })
    }

    /// Sends one request.
    ///
    /// # Errors
    /// If the write fails.
    pub async fn send(&mut self, r: Request) -> Result<()> {
        let mut b = BytesMut::new();
        r.encode(&mut b);
        self.stream.write_all(&b).await?;
        // TLS holds written bytes until flushed; TCP ignores this.
        Ok(self.stream.flush().await?)
    }

    /// The next event.
    ///
    /// # Errors
    /// If the server closes the connection or sends an undecodable frame.
    pub async fn next(&mut self) -> Result<Event> {
        loop {
            if let Some(f) = plaza_proto::split_frame(&mut self.buf)? {
                return Ok(Event::decode(&f)?);
            }
            self.buf.reserve(4096);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(LoadError::Closed);
            }
        }
    }

    /// Sends a request and returns the next event.
    ///
    /// # Errors
    /// As [`send`](Self::send) and [`next`](Self::next).
    pub async fn call(&mut self, r: Request) -> Result<Event> {
        self.send(r).await?;
        self.next().await
    }

    /// Says HELLO (Plaza's notifications on: resume tokens, whispers...),
    /// returning the server's answer. REGISTER and RESUME imply it.
    ///
    /// # Errors
    /// As [`call`](Self::call).
    pub async fn hello(&mut self) -> Result<Event> {
        self.call(Request::Hello {
            version: plaza_proto::VERSION,
            features: plaza_proto::features::ALL,
        })
        .await
    }

    /// Registers `name` (a name already taken counts as registered, by an
    /// earlier try) and logs in with `password`. Returns the login's
    /// answer, or the registration's if it was refused.
    ///
    /// # Errors
    /// As [`call`](Self::call).
    pub async fn register_and_login(&mut self, name: &str, password: &str) -> Result<Event> {
        let reg = self
            .call(Request::Register {
                name: name.into(),
                password: password.into(),
            })
            .await?;
        if !matches!(
            reg,
            Event::RegisterResult(ResultCode::OK | ResultCode::NAME_TAKEN)
        ) {
            return Ok(reg);
        }
        self.call(Request::Login {
            name: name.into(),
            password: password.into(),
        })
        .await
    }
}

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
    target: impl Into<Target>,
    from: Option<std::net::IpAddr>,
    name: String,
    room: i32,
) -> Result<FrameConn> {
    let mut m = FrameConn::connect_from(target, from).await?;
    let login = m.register_and_login(&name, "pw").await?;
    if login != Event::LoginResult(ResultCode::OK) {
        return Err(LoadError::Unexpected(format!("{name}: {login:?}")));
    }
    m.send(Request::RoomEnter { room }).await?;
    loop {
        match m.next().await? {
            Event::RoomEnterResult(ResultCode::OK) => return Ok(m),
            Event::RoomEnterResult(c) => return Err(LoadError::Unexpected(format!("enter: {c:?}"))),
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
    m: FrameConn,
    rate: f64,
    size: usize,
    t0: Instant,
    start: Instant,
    end: Instant,
) -> Result<Tally> {
    match m.stream {
        Stream::Tcp(tcp) => {
            let (rd, wr) = tcp.into_split();
            member(rd, wr, m.buf, rate, size, t0, start, end).await
        }
        tls => {
            let (rd, wr) = tokio::io::split(tls);
            member(rd, wr, m.buf, rate, size, t0, start, end).await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn member<R, W>(
    mut rd: R,
    mut wr: W,
    mut buf: BytesMut,
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
    let sender = tokio::spawn(async move {
        // Spread members over the first interval so sends are not in lockstep.
        let mut next = start + interval.mul_f64(fraction());
        let mut sent = 0u64;
        let mut frame = BytesMut::new();
        while next < end {
            tokio::time::sleep_until(next.into()).await;
            let message = stamped(t0.elapsed().as_nanos() as u64, size);
            frame.clear();
            Request::RoomChat { message }.encode(&mut frame);
            wr.write_all(&frame).await?;
            wr.flush().await?;
            sent += 1;
            next += interval;
        }
        Ok::<_, LoadError>((sent, wr))
    });
    let mut tally = Tally::new();
    let drain_end = end + Duration::from_secs(2);
    loop {
        while let Some(f) = plaza_proto::split_frame(&mut buf)? {
            if plaza_proto::packet_id(&f) == plaza_proto::id::ROOM_CHAT_NOTIFY {
                let stamp = room_chat_stamp(&f)
                    .ok_or_else(|| LoadError::Unexpected("a room message without a send time".into()))?;
                tally.received += 1;
                tally
                    .hist
                    .saturating_record((t0.elapsed().as_nanos() as u64).saturating_sub(stamp).max(1_000));
            }
        }
        buf.reserve(64 * 1024);
        let now = Instant::now();
        if now >= drain_end {
            break;
        }
        match tokio::time::timeout(drain_end - now, rd.read_buf(&mut buf)).await {
            Ok(Ok(0)) => return Err(LoadError::Closed),
            Ok(r) => {
                r?;
            }
            Err(_) => break,
        }
    }
    let (sent, _wr) = sender
        .await
        .map_err(|e| LoadError::Unexpected(format!("sender task: {e}")))??;
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
