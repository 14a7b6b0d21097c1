//! The byte stream a session runs over: plain TCP, or TLS over TCP.

use std::io::{self, IoSlice, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A connected stream: plain TCP or, with the `tls` feature, TLS over TCP.
/// Both carry the same frames.
#[derive(Debug)]
#[non_exhaustive]
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP (boxed: the TLS state is large).
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Tcp(s) => s,
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.get_ref().0,
        }
    }
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        Self::Tcp(s)
    }
}

/// Calls the same poll method on whichever stream this is.
macro_rules! delegate {
    ($self:ident.$method:ident($($arg:expr),*)) => {
        match $self.get_mut() {
            Self::Tcp(s) => Pin::new(s).$method($($arg),*),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(&mut **s).$method($($arg),*),
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        delegate!(self.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        delegate!(self.poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self.poll_shutdown(cx))
    }
}

/// A session's TCP socket, read and written from its one task through a
/// shared reference: no `into_split` (an `Arc` per connection) and no lock.
/// It reads with `recv` and writes with `sendmsg` (`send` for one slice),
/// not `read` and `writev`: the socket calls skip the file layer's
/// position lock and checks, a measurable share of the server's time when
/// fan-out writes one message per member (docs/BENCHMARKS.md, "Sockets").
#[derive(Clone, Copy)]
pub(crate) struct Sock<'a>(pub(crate) &'a TcpStream);

impl Sock<'_> {
    /// Runs `op` once the socket is ready for `interest`, again each time it
    /// would block (which clears the readiness tokio cached).
    fn poll_op<T>(
        &self,
        cx: &mut Context<'_>,
        interest: Interest,
        mut op: impl FnMut(&socket2::Socket) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        let sock = socket2::SockRef::from(self.0);
        loop {
            let ready = if interest == Interest::READABLE {
                self.0.poll_read_ready(cx)
            } else {
                self.0.poll_write_ready(cx)
            };
            if let Err(e) = std::task::ready!(ready) {
                return Poll::Ready(Err(e));
            }
            match self.0.try_io(interest, || op(&sock)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

impl AsyncRead for Sock<'_> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = std::task::ready!(
            self.poll_op(cx, Interest::READABLE, |mut s| s.read(buf.initialize_unfilled()))
        )?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Sock<'_> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_op(cx, Interest::WRITABLE, |s| s.send(buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // One slice (a single message, the common case when members hear
        // little) goes out with `send`, which copies in no message header
        // or iovec array (docs/BENCHMARKS.md, "Sockets").
        self.poll_op(cx, Interest::WRITABLE, |s| match bufs {
            [one] => s.send(one),
            _ => s.send_vectored(bufs),
        })
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(self.0).shutdown(std::net::Shutdown::Write))
    }
}
