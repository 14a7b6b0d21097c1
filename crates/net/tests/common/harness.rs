//! A server that records its events, and the frames and waits the tests
//! use with it.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use plaza_net::{Handle, Handler, NetError, Server, ServerConfig, SessionId};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{Chat, put_chat_frame};

pub(crate) const WAIT: Duration = Duration::from_secs(30);

pub(crate) async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[derive(Debug)]
pub(crate) enum Ev {
    Join(SessionId),
    Recv(SessionId, Vec<u8>),
    Error(SessionId, String),
    Leave(SessionId),
}

/// Records every event; echoes frames back when `echo` is set.
pub(crate) struct Recorder {
    handle: Handle,
    echo: bool,
    tx: mpsc::UnboundedSender<Ev>,
}

impl Handler for Recorder {
    async fn on_join(&self, id: SessionId, _peer: SocketAddr) {
        let _ = self.tx.send(Ev::Join(id));
    }
    async fn on_leave(&self, id: SessionId) {
        let _ = self.tx.send(Ev::Leave(id));
    }
    async fn on_recv(&self, id: SessionId, frame: &[u8]) {
        if self.echo {
            let _ = self.handle.send_slice(id, frame);
        } else {
            let _ = self.tx.send(Ev::Recv(id, frame.to_vec()));
        }
    }
    fn on_error(&self, id: Option<SessionId>, error: &NetError) {
        if let Some(id) = id {
            let _ = self.tx.send(Ev::Error(id, error.to_string()));
        }
    }
}

pub(crate) struct Harness {
    pub(crate) addr: SocketAddr,
    pub(crate) handle: Handle,
    pub(crate) events: mpsc::UnboundedReceiver<Ev>,
}

impl Harness {
    pub(crate) async fn start(echo: bool, configure: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), Chat);
        configure(&mut config);
        let server = Server::bind(config).await.unwrap();
        let addr = server.local_addr();
        let handle = server.handle();
        let (tx, events) = mpsc::unbounded_channel();
        server.start(Recorder {
            handle: handle.clone(),
            echo,
            tx,
        });
        Self { addr, handle, events }
    }

    pub(crate) async fn next(&mut self) -> Ev {
        within("a server event", self.events.recv())
            .await
            .expect("server gone")
    }

    pub(crate) async fn joined(&mut self) -> SessionId {
        match self.next().await {
            Ev::Join(id) => id,
            other => panic!("expected a join, got {other:?}"),
        }
    }
}

pub(crate) fn frame(id: u16, body: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    put_chat_frame(&mut b, id, body);
    b.to_vec()
}

pub(crate) async fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut header = [0u8; 5];
    within("a frame", s.read_exact(&mut header)).await.unwrap();
    let len = usize::from(u16::from_le_bytes([header[0], header[1]]));
    let mut f = header.to_vec();
    f.resize(len, 0);
    within("a frame body", s.read_exact(&mut f[5..])).await.unwrap();
    f
}

/// Reads until the peer closes; returns what was read.
pub(crate) async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = within("the server to close", s.read_to_end(&mut all)).await;
    all
}
