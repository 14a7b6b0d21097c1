//! Subscriptions to shard channels on a Redis Cluster, held by Plaza: one
//! plain connection to each master that owns a followed channel's slot, as
//! CLUSTER SLOTS said when the subscription started.
//!
//! Why not redis-rs's cluster connection: it reconnects and resubscribes on
//! its own. An acknowledgement counts the subscriptions a publish reached,
//! one a node, so every subscription must be one this node reads; in a
//! master failover test redis-rs's acknowledged publishes whose messages
//! never reached the node. Here nothing is redone behind the subscriber's
//! back: a lost connection, an error, or a channel the server unsubscribed
//! (its slot moved) ends the subscription, and the subscriber starts over
//! as after any cut, from the slots as they are then.
//!
//! Each connection first logs in (AUTH, when the URL has a password) and
//! names itself `plaza-node-<id>` (CLIENT SETNAME). The wire is RESP2 in
//! subscribe mode, whose replies are flat arrays; the reader checks every
//! length before it allocates.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;

use redis::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

use super::pubsub::Message;
use crate::primary::{Conn, Seeds, hash_tag};

/// The longest message taken (Plaza's bus messages are a few KiB at most).
const MAX_BULK: usize = 8 << 20;
/// The longest array (subscribe-mode replies have three elements).
const MAX_ARRAY: usize = 8;
/// The longest line (a length, an integer, a status or an error).
const MAX_LINE: u64 = 4096;

/// What a master's reader reports.
#[derive(Debug)]
enum Event {
    Message {
        channel: Vec<u8>,
        payload: Vec<u8>,
    },
    Subscribed(Vec<u8>),
    Unsubscribed(Vec<u8>),
    Pong,
    /// An error reply, or the connection ended.
    Failed(String),
}

/// This node's shard channel subscriptions; see the module docs.
pub(super) struct Shards {
    /// (first slot, last slot, master's `host:port`), from CLUSTER SLOTS.
    slots: Vec<(u16, u16, String)>,
    /// Each master's connection (write half; its reader is a task).
    conns: HashMap<String, OwnedWriteHalf>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    /// Messages read while waiting for confirmations, in order.
    pending: VecDeque<Message>,
    /// Channels this node unsubscribed and whose confirmation is due.
    leaving: HashSet<Vec<u8>>,
    /// What each new connection says first: AUTH if the servers want a
    /// password, and CLIENT SETNAME (so CLIENT LIST shows whose it is).
    hello: Vec<u8>,
    /// How many replies `hello` gets.
    hellos: usize,
}

impl Shards {
    /// Reads the slots' masters through `conn`; connections will log in
    /// as `seeds` say and call themselves `name`.
    pub(super) async fn open(conn: &mut Conn, seeds: &Seeds, name: &str) -> anyhow::Result<Self> {
        let v: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
        let slots = slot_map(v)?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let mut hello = Vec::new();
        let mut hellos = 0;
        if let Some(password) = &seeds.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = &seeds.user {
                auth.arg(user);
            }
            hello.extend(auth.arg(password).get_packed_command());
            hellos += 1;
        }
        hello.extend(redis::cmd("CLIENT").arg("SETNAME").arg(name).get_packed_command());
        hellos += 1;
        Ok(Self {
            hello,
            hellos,
            slots,
            conns: HashMap::new(),
            readers: Vec::new(),
            events_tx,
            events,
            pending: VecDeque::new(),
            leaving: HashSet::new(),
        })
    }

    fn master(&self, channel: &str) -> anyhow::Result<String> {
        let slot = slot(channel);
        self.slots
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .map(|(_, _, addr)| addr.clone())
            .ok_or_else(|| anyhow::anyhow!("no master owns slot {slot} ({channel})"))
    }

    /// The connection to `addr`, opened (and its reader started) if none.
    async fn conn(&mut self, addr: &str) -> anyhow::Result<&mut OwnedWriteHalf> {
        if !self.conns.contains_key(addr) {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            write.write_all(&self.hello).await?;
            for _ in 0..self.hellos {
                match read_reply(&mut read).await? {
                    Reply::Status(_) => {}
                    Reply::Error(e) => anyhow::bail!("{addr}: {e}"),
                    other => anyhow::bail!("{addr}: unexpected reply {other:?}"),
                }
            }
            let tx = self.events_tx.clone();
            let who = addr.to_owned();
            self.readers.push(tokio::spawn(async move {
                loop {
                    let event = match read_reply(&mut read).await {
                        Ok(reply) => event(reply),
                        Err(e) => Event::Failed(format!("{who}: {e}")),
                    };
                    let end = matches!(event, Event::Failed(_));
                    if tx.send(event).is_err() || end {
                        return;
                    }
                }
            }));
            self.conns.insert(addr.to_owned(), write);
        }
        Ok(self.conns.get_mut(addr).expect("just opened"))
    }

    /// Sends `command` for each of `channels` (one each: a multi-channel
    /// SSUBSCRIBE must stay in one slot), one write per master.
    async fn send(&mut self, command: &str, channels: &[String]) -> anyhow::Result<()> {
        let mut by_master: HashMap<String, Vec<u8>> = HashMap::new();
        for ch in channels {
            let packed = redis::cmd(command).arg(ch).get_packed_command();
            by_master.entry(self.master(ch)?).or_default().extend(packed);
        }
        for (addr, bytes) in by_master {
            self.conn(&addr).await?.write_all(&bytes).await?;
        }
        Ok(())
    }

    /// Subscribes to `channels` and waits until every master confirmed.
    pub(super) async fn subscribe(&mut self, channels: Vec<String>) -> anyhow::Result<()> {
        self.send("SSUBSCRIBE", &channels).await?;
        let mut due: HashSet<Vec<u8>> = channels.into_iter().map(String::into_bytes).collect();
        while !due.is_empty() {
            if let Event::Subscribed(ch) = self.wait().await? {
                due.remove(&ch);
            }
        }
        Ok(())
    }

    /// Unsubscribes from `channels` and waits for the confirmations.
    pub(super) async fn unsubscribe(&mut self, channels: Vec<String>) -> anyhow::Result<()> {
        self.send("SUNSUBSCRIBE", &channels).await?;
        self.leaving.extend(channels.into_iter().map(String::into_bytes));
        while !self.leaving.is_empty() {
            self.wait().await?;
        }
        Ok(())
    }

    /// Checks that every master this node is subscribed on answers.
    pub(super) async fn ping(&mut self) -> anyhow::Result<()> {
        let ping = redis::cmd("PING").get_packed_command();
        for w in self.conns.values_mut() {
            w.write_all(&ping).await?;
        }
        let mut due = self.conns.len();
        while due > 0 {
            if let Event::Pong = self.wait().await? {
                due -= 1;
            }
        }
        Ok(())
    }

    /// The next event that is not a message (messages are kept for
    /// [`next`](Self::next)); an error ends the subscription.
    async fn wait(&mut self) -> anyhow::Result<Event> {
        loop {
            let e = self
                .events
                .recv()
                .await
                .ok_or_else(|| anyhow::anyhow!("readers gone"))?;
            if let Some(e) = self.sort(e)? {
                return Ok(e);
            }
        }
    }

    /// Keeps a message for [`next`](Self::next); returns any other event,
    /// a confirmed unsubscription too (the caller waiting for it must get
    /// to look: nothing else may come for a while). Errors end the
    /// subscription.
    fn sort(&mut self, e: Event) -> anyhow::Result<Option<Event>> {
        match e {
            Event::Message { channel, payload } => {
                self.pending.push_back(Message::Pushed { channel, payload })
            }
            Event::Unsubscribed(ch) if self.leaving.remove(&ch) => return Ok(Some(Event::Unsubscribed(ch))),
            Event::Unsubscribed(ch) => anyhow::bail!(
                "Redis dropped the subscription to {} (its slot moved)",
                String::from_utf8_lossy(&ch)
            ),
            Event::Failed(why) => anyhow::bail!(why),
            other => return Ok(Some(other)),
        }
        Ok(None)
    }

    /// The next message; `None` when a connection ended, a master answered
    /// an error, or a slot moved: the caller starts over, as after any cut.
    /// Cancel-safe (it waits only in `recv`).
    pub(super) async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Some(m);
            }
            let e = self.events.recv().await?;
            if let Err(e) = self.sort(e) {
                tracing::info!(error = %e, "a Redis Cluster subscription ended");
                return None;
            }
        }
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

/// The slot of a key or shard channel (CRC16/XMODEM of its hash tag).
fn slot(key: &str) -> u16 {
    let mut crc: u16 = 0;
    for b in hash_tag(key).bytes() {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// CLUSTER SLOTS: [[first, last, [host, port, ...], replicas...], ...].
fn slot_map(v: Value) -> anyhow::Result<Vec<(u16, u16, String)>> {
    let ranges: Vec<Vec<Value>> = redis::from_redis_value(v)?;
    let mut out = Vec::with_capacity(ranges.len());
    for r in ranges {
        let [first, last, master, ..] = r.as_slice() else {
            anyhow::bail!("CLUSTER SLOTS: a short entry");
        };
        let (first, last): (u16, u16) = (
            redis::from_redis_value_ref(first)?,
            redis::from_redis_value_ref(last)?,
        );
        let master: Vec<Value> = redis::from_redis_value_ref(master)?;
        let [host, port, ..] = master.as_slice() else {
            anyhow::bail!("CLUSTER SLOTS: a master without an address");
        };
        let host: String = redis::from_redis_value_ref(host)?;
        let port: u16 = redis::from_redis_value_ref(port)?;
        out.push((first, last, format!("{host}:{port}")));
    }
    Ok(out)
}

/// One reply in subscribe mode.
#[derive(Debug, PartialEq)]
enum Reply {
    Bulk(Vec<u8>),
    Int(i64),
    Status(String),
    Error(String),
    Array(Vec<Reply>),
    Nil,
}

fn event(reply: Reply) -> Event {
    let Reply::Array(parts) = reply else {
        return match reply {
            Reply::Error(e) => Event::Failed(e),
            other => Event::Failed(format!("unexpected reply {other:?}")),
        };
    };
    let mut parts = parts.into_iter();
    let (Some(Reply::Bulk(kind)), Some(Reply::Bulk(channel))) = (parts.next(), parts.next()) else {
        return Event::Failed("unexpected subscribe-mode reply".into());
    };
    match (kind.as_slice(), parts.next()) {
        (b"smessage", Some(Reply::Bulk(payload))) => Event::Message { channel, payload },
        (b"ssubscribe", _) => Event::Subscribed(channel),
        (b"sunsubscribe", _) => Event::Unsubscribed(channel),
        (b"pong", _) => Event::Pong,
        _ => Event::Failed(format!("unexpected {:?} reply", String::from_utf8_lossy(&kind))),
    }
}

/// Reads one reply: a status, error or integer line, a bulk string, or an
/// array (of those, not nested) of at most [`MAX_ARRAY`].
async fn read_reply<R: AsyncRead + AsyncBufReadExt + Unpin>(r: &mut R) -> io::Result<Reply> {
    let line = read_line(r).await?;
    if let Some(n) = line.strip_prefix('*') {
        let n: i64 = n.parse().map_err(|_| bad("array length"))?;
        if n < 0 {
            return Ok(Reply::Nil);
        }
        let n = usize::try_from(n).map_err(|_| bad("array length"))?;
        if n > MAX_ARRAY {
            return Err(bad("array too long"));
        }
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            let line = read_line(r).await?;
            items.push(scalar(r, &line).await?);
        }
        return Ok(Reply::Array(items));
    }
    scalar(r, &line).await
}

async fn scalar<R: AsyncRead + AsyncBufReadExt + Unpin>(r: &mut R, line: &str) -> io::Result<Reply> {
    let (kind, rest) = line.split_at_checked(1).ok_or_else(|| bad("empty line"))?;
    Ok(match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(rest.parse().map_err(|_| bad("integer"))?),
        "$" => {
            let n: i64 = rest.parse().map_err(|_| bad("bulk length"))?;
            if n < 0 {
                return Ok(Reply::Nil);
            }
            let n = usize::try_from(n).map_err(|_| bad("bulk length"))?;
            if n > MAX_BULK {
                return Err(bad("bulk string too long"));
            }
            let mut body = vec![0; n + 2];
            r.read_exact(&mut body).await?;
            if !body.ends_with(b"\r\n") {
                return Err(bad("bulk string not ended by CRLF"));
            }
            body.truncate(n);
            Reply::Bulk(body)
        }
        _ => return Err(bad("unknown reply type")),
    })
}

/// One CRLF-ended line, at most [`MAX_LINE`] bytes.
async fn read_line<R: AsyncRead + AsyncBufReadExt + Unpin>(r: &mut R) -> io::Result<String> {
    let mut buf = Vec::new();
    let n = (&mut *r).take(MAX_LINE).read_until(b'\n', &mut buf).await?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    if !buf.ends_with(b"\r\n") {
        return Err(bad("line too long or not ended by CRLF"));
    }
    buf.truncate(buf.len() - 2);
    String::from_utf8(buf).map_err(|_| bad("line not UTF-8"))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad reply from Redis: {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_clusters() {
        // Redis Cluster's specification: CRC16/XMODEM("123456789") = 0x31C3.
        assert_eq!(slot("123456789"), 0x31C3);
        assert_eq!(slot("plaza:room:{7}"), slot("plaza:seats:{7}"));
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
    }

    async fn read(bytes: &[u8]) -> io::Result<Reply> {
        read_reply(&mut BufReader::new(bytes)).await
    }

    #[tokio::test]
    async fn subscribe_mode_replies_are_read_and_bad_ones_refused() {
        let msg = read(b"*3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$4\r\na\r\nb\r\n")
            .await
            .unwrap();
        assert!(
            matches!(event(msg), Event::Message { channel, payload } if channel == b"ch" && payload == b"a\r\nb")
        );
        let sub = read(b"*3\r\n$10\r\nssubscribe\r\n$2\r\nch\r\n:1\r\n")
            .await
            .unwrap();
        assert!(matches!(event(sub), Event::Subscribed(ch) if ch == b"ch"));
        let pong = read(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n").await.unwrap();
        assert!(matches!(event(pong), Event::Pong));
        let err = read(b"-MOVED 1 127.0.0.1:7000\r\n").await.unwrap();
        assert!(matches!(event(err), Event::Failed(e) if e.starts_with("MOVED")));
        for bad in [
            &b"*9\r\n"[..],
            b"$99999999999\r\n",
            b"$3\r\nabcd\r\n",
            b"%1\r\n",
            b"*1\r\n$3\r\nab",
            b":x\r\n",
        ] {
            assert!(read(bad).await.is_err(), "{bad:?} was taken");
        }
        let long = vec![b'+'; 5000];
        assert!(read(&long).await.is_err(), "an endless line was taken");
    }
}
