//! A raw protocol connection (with the `net` feature).

use std::net::{IpAddr, SocketAddr};

use bytes::{Buf, BytesMut};
use plaza_net::ws::{opcode, put_masked, unframe, upgrade_request};
use plaza_net::{Stream, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Event, Request, ResultCode};

/// Why a connection stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent a frame that does not decode.
    #[error("undecodable frame: {0}")]
    Decode(#[from] crate::DecodeError),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// The server answered something other than expected.
    #[error("{0}")]
    Unexpected(String),
    /// Over WebSocket: a frame a server may not send.
    #[error("websocket: {0}")]
    WebSocket(#[from] plaza_net::FrameError),
}

/// Results of [`Conn`].
type Result<T, E = ConnError> = std::result::Result<T, E>;

/// The largest message a server sends over WebSocket (a packet's length
/// is a u16).
const MAX_MESSAGE: usize = u16::MAX as usize;

/// Where a [`Conn`] connects: a target, over WebSocket (a server's
/// `--ws-bind` listener, `/ws`, subprotocol `plaza.v1`) or not.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The address, and TLS if it is a TLS listener.
    pub target: Target,
    /// Upgrade to WebSocket first.
    pub websocket: bool,
}

impl From<Target> for Endpoint {
    fn from(target: Target) -> Self {
        Self {
            target,
            websocket: false,
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Target::from(addr).into()
    }
}

impl Endpoint {
    /// Connects (from `from`, if given), upgrading to WebSocket if asked.
    ///
    /// # Errors
    /// If the connection, the TLS handshake or the upgrade fails.
    pub async fn connect(&self, from: Option<IpAddr>) -> Result<Conn> {
        let stream = self.target.connect(from).await?;
        match self.websocket {
            true => Conn::upgrade(stream, &self.target.addr.to_string()).await,
            false => Ok(Conn::over(stream)),
        }
    }
}

/// One connection speaking the chat protocol, over TCP or TLS, or in
/// WebSocket messages: requests out, frames and events in, nothing else
/// (no HELLO unless asked, no reconnect). The raw client the tests, the
/// load tools and `plaza_client` share.
pub struct Conn {
    /// The stream.
    pub stream: Stream,
    /// Bytes read and not yet decoded (over WebSocket: the messages'
    /// payloads).
    pub buf: BytesMut,
    /// Over WebSocket: the frames read and not yet unframed into `buf`.
    pub ws: Option<BytesMut>,
}

impl Conn {
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
        Ok(Self::over(target.into().connect(from).await?))
    }

    /// Speaks the protocol over a stream already open.
    pub fn over(stream: Stream) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            ws: None,
        }
    }

    /// Upgrades a stream already open to a server's WebSocket listener
    /// (`/ws`, subprotocol `plaza.v1`; `host` for the `Host` header) and
    /// speaks the protocol in WebSocket messages over it.
    ///
    /// # Errors
    /// If the write fails or the server refuses the upgrade.
    pub async fn upgrade(mut stream: Stream, host: &str) -> Result<Self> {
        let head = upgrade_request(host, "/ws", Some("plaza.v1"));
        stream.write_all(head.as_bytes()).await?;
        stream.flush().await?;
        let mut raw = BytesMut::with_capacity(1024);
        let end = loop {
            if let Some(e) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break e + 4;
            }
            if raw.len() > 16 * 1024 || stream.read_buf(&mut raw).await? == 0 {
                return Err(ConnError::Closed);
            }
        };
        if !raw.starts_with(b"HTTP/1.1 101") {
            let status = String::from_utf8_lossy(&raw[..end]);
            let status = status.lines().next().unwrap_or_default();
            return Err(ConnError::Unexpected(format!(
                "websocket upgrade refused: {status}"
            )));
        }
        raw.advance(end);
        Ok(Self {
            stream,
            buf: BytesMut::new(),
            ws: Some(raw),
        })
    }

    /// Sends bytes as they are (whole frames, or not: for tests); over
    /// WebSocket, as one message.
    ///
    /// # Errors
    /// If the write fails.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        if self.ws.is_some() {
            let mut message = BytesMut::with_capacity(bytes.len() + 14);
            put_masked(&mut message, opcode::BINARY, bytes);
            self.stream.write_all(&message).await?;
        } else {
            self.stream.write_all(bytes).await?;
        }
        // TLS holds written bytes until flushed; TCP ignores this.
        Ok(self.stream.flush().await?)
    }

    /// The next whole frame, as it came.
    ///
    /// # Errors
    /// [`ConnError::Closed`] when the server closes the connection,
    /// [`ConnError::Decode`] for a frame whose length is below the header.
    pub async fn next_frame(&mut self) -> Result<BytesMut> {
        loop {
            let closed = match &mut self.ws {
                Some(raw) => unframe(raw, &mut self.buf, MAX_MESSAGE)?,
                None => false,
            };
            if let Some(f) = crate::split_frame(&mut self.buf)? {
                return Ok(f);
            }
            if closed {
                return Err(ConnError::Closed);
            }
            let into = self.ws.as_mut().unwrap_or(&mut self.buf);
            into.reserve(4096);
            if self.stream.read_buf(into).await? == 0 {
                return Err(ConnError::Closed);
            }
        }
    }

    /// Sends one request.
    ///
    /// # Errors
    /// If the write fails.
    pub async fn send(&mut self, r: Request) -> Result<()> {
        let mut b = BytesMut::new();
        r.encode(&mut b);
        self.send_raw(&b).await
    }

    /// The next event.
    ///
    /// # Errors
    /// If the server closes the connection or sends an undecodable frame.
    pub async fn next(&mut self) -> Result<Event> {
        let f = self.next_frame().await?;
        Ok(Event::decode(&f)?)
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
            version: crate::VERSION,
            features: crate::features::NOTIFICATIONS,
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
