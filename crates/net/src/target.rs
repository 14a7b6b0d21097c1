//! Where a client connects: an address, spoken to over TLS or not.

use std::io;
use std::net::{IpAddr, SocketAddr};

use crate::Stream;

/// A server address, and the TLS to speak to it with if it is a TLS
/// listener.
#[derive(Clone, Debug)]
pub struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    /// TLS, if the address is a TLS listener.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::TlsConnector>,
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Self {
        Self {
            addr,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl Target {
    /// Opens a stream to it with Nagle off, from a chosen source address if
    /// `from` is given (127.0.0.x spreads a load over addresses, for
    /// per-address limits and ephemeral ports), with the TLS handshake if
    /// it has TLS.
    ///
    /// # Errors
    /// If the bind, the connection or the handshake fails.
    pub async fn connect(&self, from: Option<IpAddr>) -> io::Result<Stream> {
        let tcp = match from {
            None => tokio::net::TcpStream::connect(self.addr).await?,
            Some(ip) => {
                let socket = if ip.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(self.addr).await?
            }
        };
        tcp.set_nodelay(true)?;
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.connect(tcp).await;
        }
        Ok(Stream::Tcp(tcp))
    }
}
