//! The floor: a room fan-out server that does nothing but read, look up the
//! room and write, so that `peer-bench --peer floor` measures what the
//! kernel alone charges a server per delivery on this machine. No server
//! that writes the same way can spend less; issue #5's CPU targets are read
//! against it in `docs/BENCHMARKS.md`.
//!
//! One thread, one `mio` poll, no queue but a socket's unsent rest, no
//! allocation per message once its buffers have grown. Its protocol, in frames of a 4-byte big-endian
//! length and that many bytes:
//! - client to server: a 4-byte big-endian room number, then a message. An
//!   empty message joins the room and is answered with an empty frame once
//!   the join is in; any other is delivered to every member of the room,
//!   its sender too, as a frame holding the message alone;
//! - room [`STATS`] with an empty message is answered with the server's
//!   write calls so far (8 bytes, big-endian), for `peer-bench` to count;
//! - a frame over 64 KiB, or a message before a join, closes the connection.
//!
//! `--mode now` writes every delivery at once, one write call each (as a
//! server with a p99 of a millisecond must when a member hears at most a
//! message a millisecond); `--mode turn` appends to each member's unsent
//! bytes and writes them once per event-loop turn, after every ready socket
//! was read (Redis's way). `--nagle` leaves Nagle's algorithm on
//! (InspIRCd's and Mosquitto's way), so the kernel holds small writes back
//! while one is unacknowledged.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

/// The largest frame either way.
const MAX_FRAME: usize = 64 * 1024;
const LISTENER: Token = Token(usize::MAX);
/// The room that asks for the write count instead of a join.
const STATS: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// One write call per delivery, at once.
    Now,
    /// One write call per member per event-loop turn.
    Turn,
}

#[derive(Parser, Debug)]
#[command(
    about = "A fan-out server that does nothing but the writes: the floor any server's CPU per delivery stands on"
)]
struct Args {
    /// Where to listen (port 0: a free one; the first line printed says which).
    #[arg(long, default_value = "127.0.0.1:7790")]
    bind: SocketAddr,
    /// When a delivery is written.
    #[arg(long, value_enum, default_value_t = Mode::Now)]
    mode: Mode,
    /// Leave Nagle's algorithm on.
    #[arg(long)]
    nagle: bool,
    /// A member with more unsent bytes than this is closed (a slow reader).
    #[arg(long, default_value_t = 32 << 20)]
    max_unsent: usize,
}

struct Conn {
    stream: TcpStream,
    room: Option<u32>,
    /// Received bytes not yet a whole frame.
    input: Vec<u8>,
    /// Bytes the socket has not taken yet.
    unsent: Vec<u8>,
}

struct Floor {
    args: Args,
    poll: Poll,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    rooms: HashMap<u32, Vec<usize>>,
    /// `--mode turn`: members with unsent bytes to write at the turn's end.
    dirty: Vec<usize>,
    /// One delivery frame, encoded once per message and written to each member.
    frame: Vec<u8>,
    /// Write calls so far.
    writes: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut listener = TcpListener::bind(args.bind).with_context(|| format!("binding {}", args.bind))?;
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    // The address taken (`--bind 127.0.0.1:0` picks a free port), for whoever started it.
    println!("floor-server listening on {}", listener.local_addr()?);
    let mut floor = Floor {
        args,
        poll,
        conns: Vec::new(),
        free: Vec::new(),
        rooms: HashMap::new(),
        dirty: Vec::new(),
        frame: Vec::with_capacity(MAX_FRAME),
        writes: 0,
    };
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; MAX_FRAME];
    loop {
        if let Err(e) = floor.poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        for ev in &events {
            if ev.token() == LISTENER {
                floor.accept(&mut listener)?;
                continue;
            }
            let i = ev.token().0;
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                floor.read(i, &mut scratch);
            }
            if ev.is_writable() {
                floor.flush(i);
            }
        }
        while let Some(i) = floor.dirty.pop() {
            floor.flush(i);
        }
    }
}

impl Floor {
    fn accept(&mut self, listener: &mut TcpListener) -> Result<()> {
        loop {
            let (mut stream, _) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => {
                    eprintln!("floor-server: accept: {e}");
                    return Ok(());
                }
            };
            stream.set_nodelay(!self.args.nagle)?;
            let i = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            self.poll
                .registry()
                .register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
            self.conns[i] = Some(Conn {
                stream,
                room: None,
                input: Vec::new(),
                unsent: Vec::new(),
            });
        }
    }

    /// Reads what connection `i` has sent and handles every whole frame.
    fn read(&mut self, i: usize, scratch: &mut [u8]) {
        let mut input = match self.conns.get_mut(i).and_then(Option::as_mut) {
            Some(c) => std::mem::take(&mut c.input),
            None => return,
        };
        loop {
            // A read, then the frames it completed: `input` holds at most a
            // frame's start and one read.
            let Some(c) = self.conns[i].as_mut() else { return };
            let (n, eof) = match c.stream.read(scratch) {
                Ok(0) => (0, true),
                Ok(n) => (n, false),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => (0, true),
            };
            input.extend_from_slice(&scratch[..n]);
            let (taken, open) = self.frames(i, &input);
            if eof || !open {
                return self.close(i);
            }
            input.drain(..taken);
        }
        if let Some(c) = self.conns[i].as_mut() {
            c.input = input;
        }
    }

    /// Handles the whole frames at the start of `input` from `i`: the bytes
    /// they took, and whether `i` stays open.
    fn frames(&mut self, i: usize, input: &[u8]) -> (usize, bool) {
        let mut at = 0;
        while let Some(head) = input.get(at..at + 4) {
            let len = u32::from_be_bytes(head.try_into().expect("4 bytes")) as usize;
            if !(4..=MAX_FRAME).contains(&len) {
                return (at, false);
            }
            let Some(body) = input.get(at + 4..at + 4 + len) else {
                break;
            };
            let room = u32::from_be_bytes(body[..4].try_into().expect("4 bytes"));
            if !self.handle(i, room, &body[4..]) {
                return (at, false);
            }
            at += 4 + len;
        }
        (at, true)
    }

    /// One frame from `i`; false if it closes the connection.
    fn handle(&mut self, i: usize, room: u32, message: &[u8]) -> bool {
        let joined = self.conns[i].as_ref().and_then(|c| c.room);
        if room == STATS && message.is_empty() {
            let mut answer = 8u32.to_be_bytes().to_vec();
            answer.extend_from_slice(&self.writes.to_be_bytes());
            return self.deliver(i, &answer);
        }
        if message.is_empty() {
            if joined.is_some() {
                return false;
            }
            self.rooms.entry(room).or_default().push(i);
            if let Some(c) = self.conns[i].as_mut() {
                c.room = Some(room);
            }
            return self.deliver(i, &0u32.to_be_bytes());
        }
        if joined != Some(room) {
            return false;
        }
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(message);
        let members = self.rooms.remove(&room).unwrap_or_default();
        let gone: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&m| !self.deliver(m, &frame))
            .collect();
        self.rooms.insert(room, members);
        self.frame = frame;
        for &m in gone.iter().filter(|&&m| m != i) {
            self.close(m);
        }
        !gone.contains(&i)
    }

    /// Writes `frame` to `m` (or queues it behind what `m` has unsent);
    /// false if `m` is gone or must be closed.
    fn deliver(&mut self, m: usize, frame: &[u8]) -> bool {
        let Some(c) = self.conns.get_mut(m).and_then(Option::as_mut) else {
            return false;
        };
        if self.args.mode == Mode::Turn || !c.unsent.is_empty() {
            if c.unsent.is_empty() {
                self.dirty.push(m);
            }
            c.unsent.extend_from_slice(frame);
            return c.unsent.len() <= self.args.max_unsent;
        }
        self.writes += 1;
        match c.stream.write(frame) {
            Ok(n) if n == frame.len() => true,
            Ok(n) => {
                c.unsent.extend_from_slice(&frame[n..]);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.unsent.extend_from_slice(frame);
                true
            }
            Err(_) => false,
        }
    }

    /// Writes what `i` has unsent, as far as the socket takes it.
    fn flush(&mut self, i: usize) {
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        while !c.unsent.is_empty() {
            self.writes += 1;
            match c.stream.write(&c.unsent) {
                Ok(0) => return self.close(i),
                Ok(n) => {
                    c.unsent.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(i),
            }
        }
    }

    /// Closes connection `i` and takes it out of its room.
    fn close(&mut self, i: usize) {
        let Some(mut c) = self.conns.get_mut(i).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        if let Some(members) = c.room.and_then(|r| self.rooms.get_mut(&r)) {
            members.retain(|&m| m != i);
        }
        self.dirty.retain(|&d| d != i);
        self.free.push(i);
    }
}
