//! An IRC client for the tests, written from RFC 1459 and IRCv3, and a
//! server with its IRC listener on.
#![allow(dead_code)] // each test file uses its own part of it

use std::net::SocketAddr;

use plaza_test_support::{TestCert, TestServer, within};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// An IRC client: lines out, lines in.
pub(crate) struct Irc {
    lines: tokio::io::Lines<BufReader<Box<dyn AsyncRead + Unpin + Send>>>,
    pub(crate) tx: Box<dyn AsyncWrite + Unpin + Send>,
}

impl Irc {
    pub(crate) async fn connect(addr: SocketAddr) -> Self {
        let stream = within("connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        let (rx, tx) = stream.into_split();
        Self::over(Box::new(rx), Box::new(tx))
    }

    /// Over TLS, trusting `ca`.
    pub(crate) async fn connect_tls(addr: SocketAddr, ca: &std::path::Path) -> Self {
        let target = plaza_net::Target {
            addr,
            tls: Some(TestCert::connector(ca)),
        };
        let stream = within("TLS", target.connect(None)).await.expect("TLS handshake");
        let (rx, tx) = tokio::io::split(stream);
        Self::over(Box::new(rx), Box::new(tx))
    }

    pub(crate) fn over(
        rx: Box<dyn AsyncRead + Unpin + Send>,
        tx: Box<dyn AsyncWrite + Unpin + Send>,
    ) -> Self {
        Self {
            lines: BufReader::new(rx).lines(),
            tx,
        }
    }

    /// A client that registered as `nick` (a guest, or with PASS).
    pub(crate) async fn register(addr: SocketAddr, nick: &str, pass: Option<&str>) -> Self {
        let mut c = Self::connect(addr).await;
        if let Some(p) = pass {
            c.send(&format!("PASS {p}")).await;
        }
        c.send(&format!("NICK {nick}")).await;
        c.send(&format!("USER {nick} 0 * :{nick}")).await;
        c.until(" 001 ").await;
        c.until(" 376 ").await;
        c
    }

    pub(crate) async fn send(&mut self, line: &str) {
        let mut l = line.as_bytes().to_vec();
        l.extend_from_slice(b"\r\n");
        within("send", self.tx.write_all(&l)).await.expect("write");
    }

    /// The next line, or `None` at the end (closed, or reset: a server
    /// that closes with the client's bytes unread resets).
    pub(crate) async fn line(&mut self) -> Option<String> {
        match within("a line from the server", self.lines.next_line()).await {
            Ok(line) => line,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// Reads up to and including the first line containing `part`.
    pub(crate) async fn until(&mut self, part: &str) -> String {
        loop {
            let l = self
                .line()
                .await
                .unwrap_or_else(|| panic!("closed before a line with {part:?}"));
            if l.contains(part) {
                return l;
            }
        }
    }

    /// Every line up to and including the first containing `part`.
    pub(crate) async fn lines_until(&mut self, part: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self
                .line()
                .await
                .unwrap_or_else(|| panic!("closed before a line with {part:?}"));
            let end = l.contains(part);
            lines.push(l);
            if end {
                return lines;
            }
        }
    }

    /// JOINs `channel` and reads up to the end of its NAMES (366).
    pub(crate) async fn join(&mut self, channel: &str) {
        self.send(&format!("JOIN {channel}")).await;
        self.until(" 366 ").await;
    }

    /// Every line until the server closes the connection.
    pub(crate) async fn until_closed(&mut self) -> Vec<String> {
        let mut all = Vec::new();
        while let Some(l) = self.line().await {
            all.push(l);
        }
        all
    }
}

pub(crate) async fn irc_server(guests: bool) -> (TestServer, SocketAddr) {
    let server = TestServer::with(|s| {
        s.irc_bind = Some("127.0.0.1:0".parse().unwrap());
        s.allow_guests = Some(guests);
        s.enter_leave_delay_ms = Some(0);
    })
    .await;
    let addr = server.running.irc_addr().expect("IRC listener");
    (server, addr)
}
