//! What a server adds around the frames, for protocols such as WebSocket: a
//! preamble before them, pings to quiet peers, a farewell at stop.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{Chat, put_chat_frame};
use plaza_net::{Handle, Handler, Preamble, PreambleFuture, Server, ServerConfig, SessionId, Stream};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

struct Echo(Handle);

impl Handler for Echo {
    async fn on_recv(&self, id: SessionId, frame: &[u8]) {
        let _ = self.0.send_slice(id, frame);
    }
}

async fn start(configure: impl FnOnce(&mut ServerConfig)) -> (SocketAddr, Handle) {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), Chat);
    configure(&mut config);
    let server = Server::bind(config).await.unwrap();
    let (addr, handle) = (server.local_addr(), server.handle());
    server.start(Echo(handle.clone()));
    (addr, handle)
}

fn frame(id: u16, body: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    put_chat_frame(&mut b, id, body);
    b.to_vec()
}

async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = within("the server to close", s.read_to_end(&mut all)).await;
    all
}

/// A line-based greeting: `yes` lets the frames begin, anything else is
/// answered and closed.
#[derive(Debug)]
struct Greeting;

impl Preamble for Greeting {
    fn run(&self, stream: Stream, _peer: SocketAddr) -> PreambleFuture {
        Box::pin(async move {
            let mut r = BufReader::new(stream);
            let mut line = String::new();
            r.read_line(&mut line).await.ok()?;
            let mut stream = r.into_inner();
            let welcome = line.trim() == "yes";
            let answer: &[u8] = if welcome { b"welcome\n" } else { b"go away\n" };
            stream.write_all(answer).await.ok()?;
            welcome.then_some(stream)
        })
    }
}

#[tokio::test]
async fn a_preamble_runs_before_the_frames_and_may_turn_a_peer_away() {
    let (addr, handle) = start(|c| c.preamble = Some(std::sync::Arc::new(Greeting))).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"yes\n").await.unwrap();
    let mut welcome = [0u8; 8];
    within("the welcome", c.read_exact(&mut welcome)).await.unwrap();
    assert_eq!(&welcome, b"welcome\n");
    let f = frame(7, b"hi");
    c.write_all(&f).await.unwrap();
    let mut back = vec![0u8; f.len()];
    within("the echo", c.read_exact(&mut back)).await.unwrap();
    assert_eq!(back, f);

    let mut turned_away = TcpStream::connect(addr).await.unwrap();
    turned_away.write_all(b"no\n").await.unwrap();
    assert_eq!(read_to_close(&mut turned_away).await, b"go away\n");
    // The one turned away never joined and leaves the table (its slot is
    // given back just after the preamble drops its stream): one session.
    within("the turned-away slot to be freed", async {
        while handle.session_count() != 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(handle.session_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_preamble_that_never_finishes_is_cut_at_the_handshake_timeout() {
    let (addr, handle) = start(|c| {
        c.preamble = Some(std::sync::Arc::new(Greeting));
        c.handshake_timeout = Duration::from_secs(10);
    })
    .await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(read_to_close(&mut silent).await.is_empty());
    assert_eq!(handle.session_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_quiet_peer_is_pinged_every_interval_until_the_idle_timeout() {
    let ping = Bytes::from(frame(9, b""));
    let (addr, handle) = start(|c| {
        c.idle_timeout = Some(Duration::from_secs(20));
        c.quiet_ping = Some((Duration::from_secs(6), ping.clone()));
    })
    .await;
    let mut quiet = TcpStream::connect(addr).await.unwrap();
    let got = read_to_close(&mut quiet).await;
    // Pinged at 6, 12 and 18 s of quiet; closed at 20.
    assert_eq!(got, ping.repeat(3));
    assert_eq!(handle.stats().idle_timeouts, 1);
}

#[tokio::test]
async fn every_session_gets_the_farewell_at_stop() {
    let farewell = Bytes::from(frame(10, b"bye"));
    let (addr, handle) = start(|c| c.farewell = Some(farewell.clone())).await;
    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    // Both joined: each has had an echo.
    for c in [&mut a, &mut b] {
        let f = frame(1, b"x");
        c.write_all(&f).await.unwrap();
        let mut back = vec![0u8; f.len()];
        within("the echo", c.read_exact(&mut back)).await.unwrap();
    }
    let stop = tokio::spawn({
        let handle = handle.clone();
        async move { handle.stop(Duration::from_secs(5)).await }
    });
    assert_eq!(read_to_close(&mut a).await, farewell);
    assert_eq!(read_to_close(&mut b).await, farewell);
    // Closing their side lets the stop finish without waiting for its linger.
    drop((a, b));
    within("the stop", stop).await.unwrap();
}

/// Reports each session's joining and leaving.
struct Comings(tokio::sync::mpsc::UnboundedSender<SessionId>);

impl Handler for Comings {
    async fn on_join(&self, id: SessionId, _peer: SocketAddr) {
        let _ = self.0.send(id);
    }
    async fn on_recv(&self, _id: SessionId, _frame: &[u8]) {}
    async fn on_leave(&self, id: SessionId) {
        let _ = self.0.send(id);
    }
}

#[tokio::test]
async fn a_slow_consumer_gets_its_last_words_instead_of_its_queue() {
    let words = Bytes::from(frame(99, b"too slow"));
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), Chat);
    config.max_send_queue = 256 * 1024;
    config.slow_farewell = Some(words.clone());
    config.linger = Duration::from_secs(1);
    let server = Server::bind(config).await.unwrap();
    let (addr, handle) = (server.local_addr(), server.handle());
    let (tx, mut comings) = tokio::sync::mpsc::unbounded_channel();
    server.start(Comings(tx));
    // A client that does not read yet, with a small window.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(addr).await.unwrap();
    let id = within("the join", comings.recv()).await.unwrap();
    // Whole frames of 1 KiB until the queue overflows.
    let chunk = Bytes::from(frame(5, &[0x5A; 1019]));
    let mut sent = 0usize;
    while handle.send(id, chunk.clone()).is_ok() {
        sent += 1;
        assert!(sent < 100_000, "the queue never filled");
    }
    // Now it reads: whole frames of what was already being written, then
    // the last words, then the end.
    let got = read_to_close(&mut slow).await;
    assert!(got.ends_with(&words), "the last words come last");
    let before = &got[..got.len() - words.len()];
    assert_eq!(before.len() % chunk.len(), 0, "only whole frames before them");
    assert!(before.len() < sent * chunk.len(), "the queue behind was dropped");
    assert_eq!(within("the leave", comings.recv()).await, Some(id));
    assert_eq!(handle.stats().slow_consumers, 1);
}
