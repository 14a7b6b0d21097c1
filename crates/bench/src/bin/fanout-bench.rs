//! Room fan-out through the whole chat server, in this process: the tool
//! that counts the server's allocations per delivery (its threads only,
//! with a counting allocator) and runs cluster nodes side by side.
//! `plaza bench fanout` is the same load against a server you run.
//!
//! R rooms × M members, all logged in to an in-process plaza-server; every
//! member chats at `--rate` messages/s with a `--size`-byte message carrying
//! its send time. Every member receives every message of its room (the
//! sender included), so deliveries = messages × M. Reported: offered
//! messages/s, deliveries/s, expected vs received (losses counted), latency
//! p50/p99/p99.9/max from send to delivery, server CPU time per delivery,
//! server allocations per delivery, and write system calls per delivery.
//!
//! With `--cluster`, a redis-server is started on a free loopback port and
//! `--nodes` plaza-server nodes share it in cluster mode. With `--placement
//! spread` members are dealt to the nodes in turn, so every room spans the
//! nodes; with `--placement local` room r lives on node r mod N, except the
//! first `--spanning` rooms, whose members alternate between two
//! neighbouring nodes. With `--redis-masters N` (N > 1) the nodes share a
//! Redis Cluster of N masters instead (sharded pub/sub). Redis's CPU time
//! (all masters') is reported beside the nodes', per delivery and per bus
//! message a node received, and each node's bus traffic (from its status)
//! after the run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use plaza_bench::room::{Tally, join, run_member};
use plaza_bench::{alloc, cpu};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

#[derive(Parser, Debug)]
#[command(about = "Room fan-out through plaza-server: R rooms x M members chatting at a rate")]
struct Args {
    /// Rooms.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Members per room.
    #[arg(long, default_value_t = 100)]
    members: usize,
    /// Messages per second per member.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Message size in bytes (at least 20, at most 256).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Server worker threads (per node).
    #[arg(long, default_value_t = 1)]
    server_threads: usize,
    /// Cluster mode: nodes share users and rooms through a redis-server
    /// started for the run.
    #[arg(long)]
    cluster: bool,
    /// Plaza nodes (cluster mode only).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Where members go (cluster mode).
    #[arg(long, value_enum, default_value_t = Placement::Spread)]
    placement: Placement,
    /// With `--placement local`: rooms that span two nodes.
    #[arg(long, default_value_t = 0)]
    spanning: usize,
    /// Cluster mode: one redis-server (1), or a Redis Cluster of this many
    /// masters.
    #[arg(long, default_value_t = 1)]
    redis_masters: usize,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// Members dealt to the nodes in turn: every room spans them.
    Spread,
    /// Each room on one node, but the first `--spanning` on two.
    Local,
}

/// The node member `m` of room `r` connects to.
fn node_of(args: &Args, r: usize, m: usize) -> usize {
    let n = args.nodes;
    match args.placement {
        Placement::Spread => (r * args.members + m) % n,
        Placement::Local if r < args.spanning => (r + m % 2) % n,
        Placement::Local => r % n,
    }
}

const SERVER_THREAD: &str = "plaza-srv";

fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    anyhow::ensure!((20..=256).contains(&args.size), "--size must be 20..=256");
    anyhow::ensure!(args.cluster || args.nodes == 1, "--nodes needs --cluster");
    let dir = tempfile::tempdir()?;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads * args.nodes)
        .thread_name(SERVER_THREAD)
        .on_thread_start(alloc::count_this_thread)
        .enable_all()
        .build()?;
    let redis = match (args.cluster, args.redis_masters) {
        (false, _) => None,
        (true, 0 | 1) => {
            let port = plaza_bench::child::free_port()?;
            let redis = server_rt.block_on(plaza_bench::child::start_redis(dir.path(), port))?;
            Some((vec![redis], format!("redis://127.0.0.1:{port}/0")))
        }
        (true, n) => Some(server_rt.block_on(plaza_bench::child::start_redis_cluster(dir.path(), n))?),
    };
    let mut nodes = Vec::new();
    for n in 0..args.nodes {
        let data = dir.path().join(format!("node{n}"));
        std::fs::create_dir_all(&data)?;
        let settings = plaza_server::Settings {
            bind: Some("127.0.0.1:0".parse()?),
            control_bind: Some("127.0.0.1:0".parse()?),
            data_dir: Some(data),
            rooms: Some(args.rooms as u32),
            room_capacity: Some(args.members),
            max_users: Some(args.rooms * args.members + 10),
            argon2_memory_kib: Some(64),
            argon2_iterations: Some(1),
            log: Some("warn".into()),
            // A load generator is one address sending far beyond a person's
            // rates: the abuse limits are off for it.
            max_connections_per_ip: Some(0),
            metrics_bind: Some("off".into()),
            login_rate_per_ip: Some(0),
            login_rate_per_account: Some(0),
            chat_rate: Some(0),
            store: redis.as_ref().map(|(_, url)| url.clone()),
            cluster: Some(args.cluster),
            ..Default::default()
        };
        nodes.push(server_rt.block_on(plaza_server::start(settings.resolve()?))?);
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(plaza_server::Running::local_addr).collect();
    let nets: Vec<_> = nodes.iter().map(|n| n.net().clone()).collect();
    let redis_pids: Vec<u32> = redis
        .iter()
        .flat_map(|(r, _)| r.iter().map(|r| r.0.id()))
        .collect();

    let load_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tally, before, after, secs) = load_rt.block_on(async {
        let mut members = Vec::new();
        for r in 0..args.rooms {
            for m in 0..args.members {
                let addr = addrs[node_of(&args, r, m)];
                members.push(
                    join(addr, None, format!("r{r}m{m}"), r as i32)
                        .await
                        .context("member setup")?,
                );
            }
        }
        let t0 = Instant::now();
        let start = t0 + Duration::from_millis(500);
        let end = start + Duration::from_secs_f64(args.seconds);
        let mut tasks = tokio::task::JoinSet::new();
        for m in members {
            tasks.spawn(run_member(m, args.rate, args.size, t0, start, end));
        }
        let snap = || {
            (
                cpu::threads_named(SERVER_THREAD),
                alloc::count(),
                nets.iter().map(|n| n.stats().writes).sum::<u64>(),
                redis_pids
                    .iter()
                    .map(|p| cpu::process(*p))
                    .collect::<Option<Vec<_>>>(),
            )
        };
        tokio::time::sleep_until(start.into()).await;
        let before = snap();
        tokio::time::sleep_until(end.into()).await;
        // Let deliveries in flight land before the end snapshot.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = snap();
        let mut total = Tally::new();
        while let Some(r) = tasks.join_next().await {
            total.add(r??);
        }
        Ok::<_, anyhow::Error>((total, before, after, args.seconds))
    })?;
    let expected = tally.sent * args.members as u64;
    let deliveries = tally.received;
    let cpu = after.0.zip(before.0).map(|(a, b)| a.saturating_sub(b));
    let q = |x: f64| tally.hist.value_at_quantile(x) as f64 / 1e6;
    println!(
        "fanout-bench: {} rooms x {} members x {}/s, {} B, {}s, server threads {}, {}",
        args.rooms,
        args.members,
        args.rate,
        args.size,
        secs,
        args.server_threads,
        if args.cluster {
            match args.redis_masters {
                0 | 1 => format!("cluster of {} node(s) on one redis-server", args.nodes),
                m => format!(
                    "cluster of {} node(s) on a Redis Cluster of {m} masters",
                    args.nodes
                ),
            }
        } else {
            "single node".to_owned()
        }
    );
    println!(
        "offered {:.0} msg/s  deliveries {:.0}/s  expected {}  received {}  lost {}",
        tally.sent as f64 / secs,
        deliveries as f64 / secs,
        expected,
        deliveries,
        expected.saturating_sub(deliveries)
    );
    println!(
        "latency ms p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        tally.hist.max() as f64 / 1e6
    );
    println!(
        "server cpu/delivery {}  allocs/delivery {:.4}  writes/delivery {:.4}",
        cpu.map_or("n/a".into(), |c| format!(
            "{:.2} us",
            c.as_secs_f64() * 1e6 / deliveries.max(1) as f64
        )),
        (after.1 - before.1) as f64 / deliveries.max(1) as f64,
        (after.2 - before.2) as f64 / deliveries.max(1) as f64,
    );
    let redis_cpu: Vec<Duration> = match (&after.3, &before.3) {
        (Some(a), Some(b)) => a.iter().zip(b).map(|(a, b)| a.saturating_sub(*b)).collect(),
        _ => Vec::new(),
    };
    let redis_total: Duration = redis_cpu.iter().sum();
    if !redis_cpu.is_empty() {
        let each: Vec<String> = redis_cpu
            .iter()
            .map(|c| format!("{:.1}%", c.as_secs_f64() * 100.0 / secs))
            .collect();
        println!(
            "redis cpu/delivery {:.2} us  redis busy (each master, of one core) {}",
            redis_total.as_secs_f64() * 1e6 / deliveries.max(1) as f64,
            each.join(" ")
        );
    }
    if args.cluster {
        let mut bus_received = 0;
        for (i, n) in nodes.iter().enumerate() {
            let dir = dir.path().join(format!("node{i}"));
            let status = server_rt.block_on(async {
                plaza_bench::control::Control::connect(n.control_addr(), &dir)
                    .await?
                    .status()
                    .await
            })?;
            let c = status.cluster.context("a cluster node without cluster status")?;
            let b = c.bus_stats;
            bus_received += b.received_messages;
            println!(
                "node {i}: channels {}  bus published {} msgs {} B  received {} msgs {} B, of which room channels {} msgs {} B",
                c.channels,
                b.published_messages,
                b.published_bytes,
                b.received_messages,
                b.received_bytes,
                b.received_room_messages,
                b.received_room_bytes
            );
        }
        // Each is one delivery by Redis to a node: the unit its cost grows
        // with.
        println!(
            "redis cpu per bus message received by a node {:.2} us",
            redis_total.as_secs_f64() * 1e6 / bus_received.max(1) as f64
        );
    }
    for n in &nodes {
        server_rt.block_on(n.shutdown());
    }
    drop(redis);
    Ok(())
}
