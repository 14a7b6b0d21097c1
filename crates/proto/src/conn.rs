//! A raw protocol connection (with the `net` feature).

use bytes::BytesMut;
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
}

/// Results of [`Conn`].
type Result<T, E = ConnError> = std::result::Result<T, E>;

/// One connection speaking the chat protocol, over TCP or TLS: requests
/// out, frames and events in, nothing else (no HELLO unless asked, no
/// reconnect). The raw client the tests, the load tools and
/// `plaza_client` share.
pub struct Conn {
    /// The stream.
    pub stream: Stream,
    /// Bytes read and not yet decoded.
    pub buf: BytesMut,
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
        }
    }

    /// Sends bytes as they are (whole frames, or not: for tests).
    ///
    /// # Errors
    /// If the write fails.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await?;
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
            if let Some(f) = crate::split_frame(&mut self.buf)? {
                return Ok(f);
            }
            self.buf.reserve(4096);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
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
            features: crate::features::ALL,
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
