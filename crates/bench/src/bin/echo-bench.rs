//! Echo benchmark for plaza-net against a naive baseline, in one run.
//!
//! N connections each keep W small packets in flight (pipelined); every
//! echoed packet carries its send timestamp, so each one yields a latency
//! sample. The same workload runs against:
//! - plaza-net's echo server (1-send gathered writes, in-place framing);
//! - a naive echo server: one task per connection that reads one packet into
//!   a fresh buffer and writes it back, with no gathering.
//!
//! The server runs on its own runtime (`--server-threads`, default 1) and the
//! load on another single thread, so on a 2-core machine each has a core.
//! Reported: packets/s, latency p50/p99/max, server CPU time per packet,
//! server allocations per received packet, and write system calls per packet
//! (plaza only), plus the plaza/naive ratio.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use plaza_bench::{alloc, cpu};
use plaza_net::{Handle, Handler, Server, ServerConfig, SessionId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

#[derive(Parser, Debug)]
#[command(about = "Echo benchmark: plaza-net vs a naive one-task-per-connection echo server")]
struct Args {
    /// Concurrent connections.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Packets in flight per connection.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Packet size in bytes, header included (at least 13).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Measured seconds per server.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Warm-up seconds before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Worker threads of the server runtime.
    #[arg(long, default_value_t = 1)]
    server_threads: usize,
    /// Which servers to run.
    #[arg(long, value_enum, default_value_t = Which::Both)]
    servers: Which,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Which {
    Both,
    Plaza,
    Naive,
}

struct Report {
    name: &'static str,
    packets: u64,
    secs: f64,
    hist: Histogram<u64>,
    cpu: Option<Duration>,
    allocs: u64,
    writes: Option<u64>,
}

impl Report {
    fn rate(&self) -> f64 {
        self.packets as f64 / self.secs
    }
    fn print(&self) {
        let per = |x: f64| x / self.packets.max(1) as f64;
        println!(
            "{:<6} {:>12.0} pkt/s  p50 {:>7.0} us  p99 {:>7.0} us  max {:>7.0} us  cpu/pkt {:>6}  allocs/pkt {:.6} ({} allocs)  writes/pkt {}",
            self.name,
            self.rate(),
            self.hist.value_at_quantile(0.5) as f64 / 1e3,
            self.hist.value_at_quantile(0.99) as f64 / 1e3,
            self.hist.max() as f64 / 1e3,
            self.cpu
                .map_or("n/a".into(), |c| format!("{:.2} us", per(c.as_secs_f64() * 1e6))),
            per(self.allocs as f64),
            self.allocs,
            self.writes
                .map_or("n/a".into(), |w| format!("{:.4}", per(w as f64))),
        );
    }
}

const SERVER_THREAD: &str = "echo-srv";

fn server_runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(SERVER_THREAD)
        .on_thread_start(alloc::count_this_thread)
        .enable_all()
        .build()?)
}

struct Echo(Handle);

impl Handler for Echo {
    async fn on_recv(&self, id: SessionId, frame: &[u8]) {
        let _ = self.0.send_slice(id, frame);
    }
}

async fn naive_server(listener: TcpListener, max: usize) {
    while let Ok((mut s, _)) = listener.accept().await {
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let mut header = [0u8; 5];
            loop {
                if s.read_exact(&mut header).await.is_err() {
                    return;
                }
                let len = usize::from(u16::from_le_bytes([header[0], header[1]]));
                if !(5..=max).contains(&len) {
                    return;
                }
                let mut packet = vec![0u8; len];
                packet[..5].copy_from_slice(&header);
                if s.read_exact(&mut packet[5..]).await.is_err() || s.write_all(&packet).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn put_packet(out: &mut Vec<u8>, size: usize, t0: Instant) {
    let start = out.len();
    out.extend_from_slice(&(size as u16).to_le_bytes());
    out.extend_from_slice(&7u16.to_le_bytes());
    out.push(0);
    out.extend_from_slice(&(t0.elapsed().as_nanos() as u64).to_le_bytes());
    out.resize(start + size, 0x5A);
}

/// One connection of load: keeps `window` packets in flight until `end`.
async fn load_conn(
    addr: SocketAddr,
    args: Arc<Args>,
    t0: Instant,
    measure_from: Instant,
    end: Instant,
) -> Result<(u64, Histogram<u64>)> {
    let mut hist = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3)?;
    let mut s = TcpStream::connect(addr).await.context("connect")?;
    s.set_nodelay(true)?;
    let size = args.size;
    let mut out = Vec::with_capacity(args.window * size);
    for _ in 0..args.window {
        put_packet(&mut out, size, t0);
    }
    s.write_all(&out).await?;
    out.clear();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut have, mut count) = (0usize, 0u64);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let n = match tokio::time::timeout(end - now, s.read(&mut buf[have..])).await {
            Ok(Ok(0)) => anyhow::bail!("server closed the connection"),
            Ok(r) => r?,
            Err(_) => break,
        };
        have += n;
        let now_ns = t0.elapsed().as_nanos() as u64;
        let measuring = Instant::now() >= measure_from;
        let mut at = 0;
        while have - at >= size {
            let ts = u64::from_le_bytes(buf[at + 5..at + 13].try_into()?);
            if measuring {
                count += 1;
                hist.record(now_ns.saturating_sub(ts).max(1_000))?;
            }
            put_packet(&mut out, size, t0);
            at += size;
        }
        buf.copy_within(at..have, 0);
        have -= at;
        s.write_all(&out).await?;
        out.clear();
    }
    Ok((count, hist))
}

fn run_load(addr: SocketAddr, args: &Arc<Args>) -> Result<(u64, f64, Histogram<u64>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let t0 = Instant::now();
        // Connect everyone before the clock starts.
        let ready = t0 + Duration::from_secs(2);
        let measure_from = ready + Duration::from_secs_f64(args.warmup);
        let end = measure_from + Duration::from_secs_f64(args.seconds);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..args.connections {
            let args = args.clone();
            tasks.spawn(async move {
                tokio::time::sleep_until(ready.into()).await;
                load_conn(addr, args, t0, measure_from, end).await
            });
        }
        let mut total = 0;
        let mut hist = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3)?;
        while let Some(r) = tasks.join_next().await {
            let (n, h) = r??;
            total += n;
            hist.add(h)?;
        }
        Ok((total, args.seconds, hist))
    })
}

/// Runs the load against a server started by `start`, measuring the server
/// threads' CPU and allocations over the measured window (approximately:
/// warm-up is excluded by subtracting a snapshot taken when it ends).
fn measure(
    name: &'static str,
    args: &Arc<Args>,
    start: impl FnOnce(&tokio::runtime::Runtime) -> Result<(SocketAddr, Option<Handle>)>,
) -> Result<Report> {
    let rt = server_runtime(args.server_threads)?;
    let (addr, handle) = start(&rt)?;
    // Snapshot the server's CPU, allocations and writes when measuring
    // starts and just before it ends, while every connection is still open.
    type Snap = (Option<Duration>, u64, Option<u64>);
    let take = {
        let handle = handle.clone();
        move || -> Snap {
            (
                cpu::threads_named(SERVER_THREAD),
                alloc::count(),
                handle.as_ref().map(|h| h.stats().writes),
            )
        }
    };
    let t0 = Instant::now();
    let from = t0 + Duration::from_secs(2) + Duration::from_secs_f64(args.warmup);
    let to = from + Duration::from_secs_f64(args.seconds) - Duration::from_millis(20);
    let sampler = std::thread::spawn(move || {
        let at = |t: Instant| std::thread::sleep(t.saturating_duration_since(Instant::now()));
        at(from);
        let a = take();
        at(to);
        (a, take())
    });
    let (packets, secs, hist) = run_load(addr, args)?;
    let ((cpu_start, allocs_start, writes_start), (cpu_end, allocs_end, writes_end)) =
        sampler.join().expect("sampler thread");
    if let Some(h) = &handle {
        rt.block_on(h.stop(Duration::from_secs(2)));
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(Report {
        name,
        packets,
        secs,
        hist,
        cpu: cpu_end.zip(cpu_start).map(|(e, s)| e.saturating_sub(s)),
        allocs: allocs_end - allocs_start,
        writes: writes_end.zip(writes_start).map(|(e, s)| e - s),
    })
}

fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    anyhow::ensure!(args.size >= 13 && args.size <= 8192, "--size must be 13..=8192");
    println!(
        "echo-bench: {} connections x {} in flight, {} B packets, {}s measured after {}s warm-up, server threads {}",
        args.connections, args.window, args.size, args.seconds, args.warmup, args.server_threads
    );
    let mut reports = Vec::new();
    if args.servers != Which::Naive {
        reports.push(measure("plaza", &args, |rt| {
            rt.block_on(async {
                let mut config = ServerConfig::new("127.0.0.1:0".parse()?, plaza_proto::ChatFraming);
                config.max_sessions = args.connections + 16;
                let server = Server::bind(config).await?;
                let addr = server.local_addr();
                let handle = server.handle();
                server.start(Echo(handle.clone()));
                Ok((addr, Some(handle)))
            })
        })?);
        reports.last().unwrap().print();
    }
    if args.servers != Which::Plaza {
        reports.push(measure("naive", &args, |rt| {
            let listener = rt.block_on(TcpListener::bind("127.0.0.1:0"))?;
            let addr = listener.local_addr()?;
            rt.spawn(naive_server(listener, 8192));
            Ok((addr, None))
        })?);
        reports.last().unwrap().print();
    }
    if let [p, n] = &reports[..] {
        println!("ratio plaza/naive packets/s: {:.2}x", p.rate() / n.rate());
    }
    Ok(())
}
