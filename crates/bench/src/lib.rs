//! Plaza's benchmark tools: shared measurement helpers.
//!
//! - [`alloc`]: a global allocator that counts allocations made on threads
//!   marked as server threads, so a benchmark can report allocations per
//!   packet for the server side alone.
//! - [`cpu`]: CPU time consumed by the threads whose name starts with a
//!   prefix, read from `/proc` (Linux), for CPU time per operation.

pub mod alloc {
    //! Counting allocator. Install it in a benchmark binary with
    //! `#[global_allocator] static A: plaza_bench::alloc::Counting = plaza_bench::alloc::Counting;`.

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};

    static ALLOCS: AtomicU64 = AtomicU64::new(0);

    thread_local! {
        static COUNTED: Cell<bool> = const { Cell::new(false) };
    }

    /// Counts allocations (and reallocations) on marked threads.
    pub struct Counting;

    fn note() {
        if COUNTED.try_with(Cell::get).unwrap_or(false) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[allow(unsafe_code)]
    // SAFETY: every method forwards to the system allocator with the caller's
    // arguments unchanged; the only addition is a counter increment, which
    // neither allocates nor touches the memory.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note();
            // SAFETY: forwarded unchanged (see the impl's comment).
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note();
            // SAFETY: forwarded unchanged.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note();
            // SAFETY: forwarded unchanged.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded unchanged.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    /// Marks the calling thread as one whose allocations are counted.
    pub fn count_this_thread() {
        COUNTED.with(|c| c.set(true));
    }

    /// Allocations counted so far.
    pub fn count() -> u64 {
        ALLOCS.load(Ordering::Relaxed)
    }
}

pub mod cpu {
    //! Per-thread CPU time from `/proc/self/task/*/stat`.

    use std::time::Duration;

    /// Total user+system CPU time of this process's threads whose name starts
    /// with `prefix`. `None` where `/proc` is unavailable.
    pub fn threads_named(prefix: &str) -> Option<Duration> {
        let ticks_per_sec = 100u64; // USER_HZ on Linux
        let mut ticks = 0u64;
        for task in std::fs::read_dir("/proc/self/task").ok()? {
            let path = task.ok()?.path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            if !comm.trim_end().starts_with(prefix) {
                continue;
            }
            let stat = std::fs::read_to_string(path.join("stat")).ok()?;
            // Fields after the parenthesised name: state is field 3; utime
            // and stime are fields 14 and 15.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            ticks += fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        }
        Some(Duration::from_millis(ticks * 1000 / ticks_per_sec))
    }

    /// Total user+system CPU time of process `pid`.
    pub fn process(pid: u32) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_millis(ticks * 10))
    }
}

pub mod conn {
    //! A minimal protocol connection for load tools: send requests, read
    //! events, nothing hidden.

    use bytes::BytesMut;
    use plaza_proto::{Event, Request};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// One TCP connection speaking the chat protocol.
    pub struct FrameConn {
        /// The socket.
        pub stream: TcpStream,
        /// Bytes read and not yet decoded.
        pub buf: BytesMut,
    }

    impl FrameConn {
        /// Connects with Nagle off.
        ///
        /// # Errors
        /// If the connection fails.
        pub async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
            Self::connect_from(addr, None).await
        }

        /// Connects from a chosen source address (127.0.0.x spreads a load
        /// over addresses, for per-address limits and ephemeral ports).
        ///
        /// # Errors
        /// If the bind or the connection fails.
        pub async fn connect_from(
            addr: std::net::SocketAddr,
            from: Option<std::net::IpAddr>,
        ) -> anyhow::Result<Self> {
            let stream = match from {
                None => TcpStream::connect(addr).await?,
                Some(ip) => {
                    let socket = tokio::net::TcpSocket::new_v4()?;
                    socket.bind(std::net::SocketAddr::new(ip, 0))?;
                    socket.connect(addr).await?
                }
            };
            stream.set_nodelay(true)?;
            Ok(Self {
                stream,
                buf: BytesMut::new(),
            })
        }

        /// Sends one request.
        ///
        /// # Errors
        /// If the write fails.
        pub async fn send(&mut self, r: Request) -> anyhow::Result<()> {
            let mut b = BytesMut::new();
            r.encode(&mut b);
            Ok(self.stream.write_all(&b).await?)
        }

        /// The next event.
        ///
        /// # Errors
        /// If the server closes the connection or sends an undecodable frame.
        pub async fn next(&mut self) -> anyhow::Result<Event> {
            loop {
                if self.buf.len() >= 2 {
                    let len = usize::from(u16::from_le_bytes([self.buf[0], self.buf[1]]));
                    if self.buf.len() >= len {
                        let f = self.buf.split_to(len);
                        return Ok(Event::decode(&f)?);
                    }
                }
                self.buf.reserve(4096);
                anyhow::ensure!(
                    self.stream.read_buf(&mut self.buf).await? > 0,
                    "server closed the connection"
                );
            }
        }

        /// Sends a request and returns the next event.
        ///
        /// # Errors
        /// As [`send`](Self::send) and [`next`](Self::next).
        pub async fn call(&mut self, r: Request) -> anyhow::Result<Event> {
            self.send(r).await?;
            self.next().await
        }
    }
}

pub mod room {
    //! Room members for load tools: join a room, chat at a rate with the send
    //! time in each message, and measure the delivery latency of every room
    //! message received.

    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use anyhow::Result;
    use bytes::BytesMut;
    use hdrhistogram::Histogram;
    use plaza_proto::{Event, Request, ResultCode};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::conn::FrameConn;

    /// Registers `name` (password "pw"), logs in and enters `room`, from
    /// `from` (a 127.0.0.x source address) if given.
    ///
    /// # Errors
    /// If any step fails.
    pub async fn join(
        addr: SocketAddr,
        from: Option<std::net::IpAddr>,
        name: String,
        room: i32,
    ) -> Result<FrameConn> {
        let mut m = FrameConn::connect_from(addr, from).await?;
        let reg = m
            .call(Request::Register {
                name: name.clone(),
                password: "pw".into(),
            })
            .await?;
        anyhow::ensure!(reg == Event::RegisterResult(ResultCode::OK), "register: {reg:?}");
        let login = m
            .call(Request::Login {
                name,
                password: "pw".into(),
            })
            .await?;
        anyhow::ensure!(login == Event::LoginResult(ResultCode::OK), "login: {login:?}");
        m.send(Request::RoomEnter { room }).await?;
        loop {
            match m.next().await? {
                Event::RoomEnterResult(ResultCode::OK) => return Ok(m),
                Event::RoomEnterResult(c) => anyhow::bail!("enter: {c:?}"),
                _ => {}
            }
        }
    }

    /// What one member sent and received.
    pub struct Tally {
        /// Messages sent.
        pub sent: u64,
        /// Room messages received.
        pub received: u64,
        /// Send-to-delivery latency of each, in ns.
        pub hist: Histogram<u64>,
    }

    impl Tally {
        /// An empty tally.
        ///
        /// # Panics
        /// Never (the bounds are valid).
        pub fn new() -> Self {
            Self {
                sent: 0,
                received: 0,
                hist: Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid bounds"),
            }
        }

        /// Adds `other` to this.
        ///
        /// # Errors
        /// Never in practice (same bounds).
        pub fn add(&mut self, other: Tally) -> Result<()> {
            self.sent += other.sent;
            self.received += other.received;
            self.hist.add(other.hist)?;
            Ok(())
        }
    }

    impl Default for Tally {
        fn default() -> Self {
            Self::new()
        }
    }

    /// One member: sends `rate` room messages per second of `size` bytes (at
    /// least 20: the send time) from `start` until `end`, and counts what
    /// arrives until two seconds after `end`.
    ///
    /// # Errors
    /// If the connection fails or the server closes it.
    pub async fn run_member(
        m: FrameConn,
        rate: f64,
        size: usize,
        t0: Instant,
        start: Instant,
        end: Instant,
    ) -> Result<Tally> {
        let (mut rd, mut wr) = m.stream.into_split();
        let mut buf = m.buf;
        let interval = Duration::from_secs_f64(1.0 / rate);
        let sender = tokio::spawn(async move {
            // Spread members over the first interval so sends are not in lockstep.
            let mut next = start + interval.mul_f64(fraction());
            let mut sent = 0u64;
            let mut frame = BytesMut::new();
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                let mut message = format!("{:020}", t0.elapsed().as_nanos() as u64);
                message.extend(std::iter::repeat_n('x', size.saturating_sub(20)));
                frame.clear();
                Request::RoomChat { message }.encode(&mut frame);
                wr.write_all(&frame).await?;
                sent += 1;
                next += interval;
            }
            Ok::<_, anyhow::Error>((sent, wr))
        });
        let mut tally = Tally::new();
        let drain_end = end + Duration::from_secs(2);
        loop {
            while buf.len() >= 2 {
                let len = usize::from(u16::from_le_bytes([buf[0], buf[1]]));
                if buf.len() < len {
                    break;
                }
                let f = buf.split_to(len);
                if plaza_proto::packet_id(&f) == plaza_proto::id::ROOM_CHAT_NOTIFY {
                    let stamp: u64 = std::str::from_utf8(&f[5 + 33..5 + 33 + 20])?.parse()?;
                    tally.received += 1;
                    tally
                        .hist
                        .record((t0.elapsed().as_nanos() as u64).saturating_sub(stamp).max(1_000))?;
                }
            }
            buf.reserve(64 * 1024);
            let now = Instant::now();
            if now >= drain_end {
                break;
            }
            match tokio::time::timeout(drain_end - now, rd.read_buf(&mut buf)).await {
                Ok(Ok(0)) => anyhow::bail!("server closed"),
                Ok(r) => {
                    r?;
                }
                Err(_) => break,
            }
        }
        let (sent, _wr) = sender.await??;
        tally.sent = sent;
        Ok(tally)
    }

    /// A number in [0, 1) that differs between calls.
    fn fraction() -> f64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0);
        (h.finish() % 10_000) as f64 / 10_000.0
    }
}
