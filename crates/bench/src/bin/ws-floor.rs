//! The floor over WebSocket, three ways: how the WebSocket layer Plaza
//! chose compares with the crates it could have used (issue #28). A room
//! fan-out server with no chat logic, on one tokio worker (as Plaza's
//! benchmarks run it), whose WebSocket is one of:
//! - `plaza`: plaza-net's sessions with `plaza_net::ws` frames, as
//!   plaza-server runs them: a delivery is framed once and the same bytes
//!   are queued to every member; each member's queue leaves in one write;
//! - `tungstenite`: tokio-tungstenite (read buffer cut to 4 KiB from its
//!   128 KiB default), a reader and a writer task per connection, each
//!   member's writer framing every delivery into its own buffer and
//!   flushing once its channel is empty;
//! - `fastwebsockets`: the same tasks with fastwebsockets' split halves,
//!   the writer behind a `BufWriter` flushed once its channel is empty.
//!
//! `peer-bench --peer floor --ws` drives it: each WebSocket message holds
//! one frame of `floor-server`'s protocol (a 4-byte big-endian length;
//! a 4-byte room then a message; an empty message joins and is answered
//! with an empty frame; any other goes to every member, the sender too).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use bytes::{BufMut, Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use plaza_net::ws::{Frame, WebSocket, opcode, put_message};
use plaza_net::{Handle, Handler, Preamble, PreambleFuture, Server, ServerConfig, SessionId, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Impl {
    Plaza,
    Tungstenite,
    Fastwebsockets,
}

#[derive(Parser, Debug)]
#[command(
    about = "A fan-out server over WebSocket with nothing but the writes, on one of three WebSocket layers"
)]
struct Args {
    /// Where to listen (port 0: a free one; the first line printed says which).
    #[arg(long, default_value = "127.0.0.1:7791")]
    bind: SocketAddr,
    /// The WebSocket layer.
    #[arg(long = "impl", value_enum)]
    layer: Impl,
}

/// Rooms and their members, each reached through an `M`.
struct Rooms<M>(Mutex<HashMap<u32, Vec<M>>>);

impl<M: Clone> Rooms<M> {
    fn new() -> Arc<Self> {
        Arc::new(Self(Mutex::new(HashMap::new())))
    }

    fn join(&self, room: u32, m: M) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(room)
            .or_default()
            .push(m);
    }

    /// Takes every member `gone` matches out of every room.
    fn leave(&self, gone: impl Fn(&M) -> bool) {
        let mut rooms = self.0.lock().unwrap_or_else(|p| p.into_inner());
        rooms.values_mut().for_each(|ms| ms.retain(|m| !gone(m)));
    }

    fn members(&self, room: u32) -> Vec<M> {
        let rooms = self.0.lock().unwrap_or_else(|p| p.into_inner());
        rooms.get(&room).cloned().unwrap_or_default()
    }
}

/// A floor frame's room and message.
fn parse(frame: &[u8]) -> Result<(u32, &[u8])> {
    let Some((head, rest)) = frame.split_first_chunk::<8>() else {
        bail!("a floor frame under 8 bytes")
    };
    let len = u32::from_be_bytes(head[..4].try_into()?) as usize;
    let room = u32::from_be_bytes(head[4..].try_into()?);
    let message = rest.get(..len.saturating_sub(4)).context("a cut floor frame")?;
    Ok((room, message))
}

/// The floor frame members get: the message alone, with its length.
fn delivery(message: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(4 + message.len());
    b.put_u32(message.len() as u32);
    b.put_slice(message);
    b
}

/// Reads the upgrade request and answers it (the same for every layer, so
/// that only the frames differ).
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        anyhow::ensure!(head.len() < 8192, "an upgrade request over 8 KiB");
        anyhow::ensure!(s.read(&mut byte).await? == 1, "closed during the upgrade");
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let key = text
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-key"))
        })
        .map(|(_, v)| v.trim().to_owned())
        .context("no Sec-WebSocket-Key")?;
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        plaza_net::ws::accept_key(&key)
    );
    s.write_all(answer.as_bytes()).await?;
    Ok(())
}

// --- plaza-net ---

#[derive(Debug)]
struct Upgrade;

impl Preamble for Upgrade {
    fn run(&self, mut stream: Stream, _peer: SocketAddr) -> PreambleFuture {
        Box::pin(async move { handshake(&mut stream).await.ok().map(|()| stream) })
    }
}

struct PlazaFloor {
    net: Handle,
    rooms: Arc<Rooms<SessionId>>,
}

impl Handler for PlazaFloor {
    async fn on_leave(&self, id: SessionId) {
        self.rooms.leave(|m| *m == id);
    }

    async fn on_recv(&self, id: SessionId, frame: &[u8]) {
        let frame = Frame::parse(frame);
        if frame.opcode != opcode::BINARY {
            return;
        }
        let mut payload = vec![0; frame.len()];
        frame.unmask_into(&mut payload);
        let Ok((room, message)) = parse(&payload) else {
            let _ = self.net.disconnect(id);
            return;
        };
        if message.is_empty() {
            self.rooms.join(room, id);
            let _ = self
                .net
                .send_with(id, |b| put_message(b, opcode::BINARY, |b| b.put_u32(0)));
            return;
        }
        let mut once = BytesMut::new();
        put_message(&mut once, opcode::BINARY, |b| b.put_slice(&delivery(message)));
        let once = once.freeze();
        for m in self.rooms.members(room) {
            let _ = self.net.send(m, once.clone());
        }
    }
}

async fn plaza(bind: SocketAddr) -> Result<()> {
    let mut config = ServerConfig::new(bind, WebSocket);
    config.preamble = Some(Arc::new(Upgrade));
    config.max_sessions = 30_000;
    config.max_send_queue = 32 << 20;
    config.soft_send_queue = config.max_send_queue;
    config.idle_timeout = None;
    config.gather = Some(std::time::Duration::from_millis(2));
    let server = Server::bind(config).await?;
    println!("listening on {}", server.local_addr());
    let net = server.handle();
    server.start(PlazaFloor {
        net,
        rooms: Rooms::new(),
    });
    std::future::pending::<()>().await;
    Ok(())
}

// --- the crates: a reader and a writer task per connection ---

type Outbox = mpsc::UnboundedSender<Bytes>;

async fn accept_loop<F, Fut>(bind: SocketAddr, serve: F) -> Result<()>
where
    F: Fn(TcpStream, Arc<Rooms<Outbox>>) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    // The backlog plaza-net listens with: a storm of connects overflows
    // tokio's default of 1,024, and the kernel then resets them.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(bind)?;
    let listener: TcpListener = socket.listen(4096)?;
    println!("listening on {}", listener.local_addr()?);
    let rooms = Rooms::new();
    loop {
        let s = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = s.set_nodelay(true);
        tokio::spawn(serve(s, rooms.clone()));
    }
}

/// What a member's reader does with one message.
fn on_message(payload: &[u8], me: &Outbox, rooms: &Rooms<Outbox>) -> Result<()> {
    let (room, message) = parse(payload)?;
    if message.is_empty() {
        rooms.join(room, me.clone());
        let _ = me.send(Bytes::from_static(&[0; 4]));
        return Ok(());
    }
    let once = delivery(message).freeze();
    for m in rooms.members(room) {
        let _ = m.send(once.clone());
    }
    Ok(())
}

async fn tungstenite(mut s: TcpStream, rooms: Arc<Rooms<Outbox>>) -> Result<()> {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
    handshake(&mut s).await?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(s, Role::Server, Some(config)).await;
    let (mut sink, mut source) = ws.split();
    let (me, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            sink.feed(Message::Binary(b)).await?;
            while let Ok(b) = rx.try_recv() {
                sink.feed(Message::Binary(b)).await?;
            }
            sink.flush().await?;
        }
        Ok::<_, anyhow::Error>(())
    });
    let read = async {
        while let Some(m) = source.next().await {
            if let Message::Binary(b) = m? {
                on_message(&b, &me, &rooms)?;
            }
        }
        Ok(())
    };
    let r = read.await;
    left(&me, &rooms, &writer);
    r
}

/// A member's reader ended: it leaves its room and its writer stops (the
/// socket closes once both halves are gone).
fn left<T>(me: &Outbox, rooms: &Rooms<Outbox>, writer: &tokio::task::JoinHandle<T>) {
    rooms.leave(|m| m.same_channel(me));
    writer.abort();
}

async fn fastwebsockets(mut s: TcpStream, rooms: Arc<Rooms<Outbox>>) -> Result<()> {
    use fastwebsockets::{Frame as FwFrame, OpCode, Payload, Role, WebSocket as FwSocket};
    handshake(&mut s).await?;
    let ws = FwSocket::after_handshake(s, Role::Server);
    let (mut read, mut write) = ws.split(|s| {
        let (r, w) = s.into_split();
        (r, tokio::io::BufWriter::new(w))
    });
    let (me, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            write.write_frame(FwFrame::binary(Payload::Borrowed(&b))).await?;
            while let Ok(b) = rx.try_recv() {
                write.write_frame(FwFrame::binary(Payload::Borrowed(&b))).await?;
            }
            write.flush().await?;
        }
        Ok::<_, anyhow::Error>(())
    });
    // Pongs and closes are not answered (the load sends none).
    let mut no_reply = |_: FwFrame<'_>| async { Ok::<_, std::io::Error>(()) };
    let r = async {
        loop {
            let frame = read.read_frame(&mut no_reply).await?;
            match frame.opcode {
                OpCode::Binary => on_message(&frame.payload, &me, &rooms)?,
                OpCode::Close => return Ok(()),
                _ => {}
            }
        }
    }
    .await;
    left(&me, &rooms, &writer);
    r
}

fn main() -> Result<()> {
    let args = Args::parse();
    plaza_net::runtime(1)?.block_on(async move {
        match args.layer {
            Impl::Plaza => plaza(args.bind).await,
            Impl::Tungstenite => accept_loop(args.bind, tungstenite).await,
            Impl::Fastwebsockets => accept_loop(args.bind, fastwebsockets).await,
        }
    })
}
