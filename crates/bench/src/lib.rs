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
        process_split(pid).map(|(user, system)| user + system)
    }

    /// User and system CPU time of process `pid`, apart: what the process
    /// runs itself, and what the kernel runs for it (its system calls).
    pub fn process_split(pid: u32) -> Option<(Duration, Duration)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
        let ms = |t: u64| Duration::from_millis(t * 10);
        Some((ms(ticks(11)?), ms(ticks(12)?)))
    }
}

pub mod conn {
    //! A minimal protocol connection (it lives in plaza-client's load module).
    pub use plaza_load::Conn;
}

pub mod room {
    //! Room members for load tools (plaza-client's load module).
    pub use plaza_load::{Tally, join, run_member};
}

pub mod child {
    //! A server started as a child process, for tools that measure it apart
    //! from the load generator.

    use std::time::{Duration, Instant};

    use anyhow::{Context, Result};

    /// Stops a child process (by its PID) however the tool exits.
    pub struct Reap(pub std::process::Child);

    /// Starts the release `plaza-server` next to this tool on 127.0.0.1:`port`
    /// (control on `control`, data in `dir`) with `args`, and waits until it
    /// accepts connections.
    ///
    /// # Errors
    /// If the binary is missing or does not start listening.
    pub async fn start_server(dir: &std::path::Path, port: u16, control: u16, args: &[&str]) -> Result<Reap> {
        let exe = std::env::current_exe()?.with_file_name("plaza-server");
        let child = std::process::Command::new(&exe)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(["--control-bind", &format!("127.0.0.1:{control}")])
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (cargo build --release -p plaza-server)",
                    exe.display()
                )
            })?;
        let server = Reap(child);
        wait_for_port(port, "plaza-server").await?;
        Ok(server)
    }

    /// A `redis-server` of the run's own on 127.0.0.1:`port`, its files in
    /// `dir`, with no persistence; stopped (by its PID) when the handle
    /// drops. Waits until it accepts connections.
    ///
    /// # Errors
    /// If `redis-server` is not installed or does not start listening.
    pub async fn start_redis(dir: &std::path::Path, port: u16) -> Result<Reap> {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting redis-server (apt-get install redis-server)")?;
        let redis = Reap(child);
        wait_for_port(port, "redis-server").await?;
        Ok(redis)
    }

    /// A Redis Cluster of `masters` `redis-server`s of the run's own, on
    /// free loopback ports with their files under `dir`, joined by
    /// `redis-cli --cluster create`; waits until every master says ok.
    /// Returns them and the `redis+cluster://` URL.
    ///
    /// # Errors
    /// If `redis-server` or `redis-cli` is missing, or the cluster does not
    /// form within 30 s.
    pub async fn start_redis_cluster(dir: &std::path::Path, masters: usize) -> Result<(Vec<Reap>, String)> {
        let mut servers = Vec::new();
        let mut addrs = Vec::new();
        for i in 0..masters {
            let (port, bus) = (free_port()?, free_port()?);
            let d = dir.join(format!("redis{i}"));
            std::fs::create_dir_all(&d)?;
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
                .args(["--cluster-port", &bus.to_string()])
                .arg("--dir")
                .arg(&d)
                .stdout(std::process::Stdio::null())
                .spawn()
                .context("starting redis-server (apt-get install redis-server)")?;
            servers.push(Reap(child));
            wait_for_port(port, "redis-server").await?;
            addrs.push(format!("127.0.0.1:{port}"));
        }
        let out = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .context("redis-cli (apt-get install redis-tools)")?;
        anyhow::ensure!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        for a in &addrs {
            let port = a.rsplit(':').next().unwrap_or_default();
            loop {
                let info = std::process::Command::new("redis-cli")
                    .args(["-p", port, "CLUSTER", "INFO"])
                    .output()?;
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "the Redis Cluster did not form in 30 s"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        Ok((servers, format!("redis+cluster://{}", addrs.join(","))))
    }

    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The resident set size of process `pid`, in KiB.
    ///
    /// # Errors
    /// If `/proc/PID/status` cannot be read.
    pub fn rss_kib(pid: u32) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .context("no VmRSS")?;
        Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
    }

    /// A free TCP port on 127.0.0.1.
    ///
    /// # Errors
    /// If no port can be bound.
    pub fn free_port() -> Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
    }

    /// Waits (up to 20 s) until something listens on 127.0.0.1:`port`.
    ///
    /// # Errors
    /// If nothing does in time.
    pub async fn wait_for_port(port: u16, what: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "{what} did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

pub mod control {
    //! The operators' control link of a server a tool started, for its
    //! status.

    use std::net::SocketAddr;
    use std::path::Path;
    use std::time::Duration;

    use anyhow::Result;
    use plaza_net::link::LinkClient;
    use plaza_net::{ClientConfig, Lan};
    use plaza_server::control::{Command, Reply, Status};

    /// An authenticated control link.
    pub struct Control(LinkClient);

    impl Control {
        /// Connects to `addr` and authenticates with the secret the server
        /// generated in `data_dir`.
        ///
        /// # Errors
        /// If it cannot connect, read the secret, or is refused.
        pub async fn connect(addr: SocketAddr, data_dir: &Path) -> Result<Self> {
            let secret = std::fs::read_to_string(data_dir.join("control.secret"))?;
            let ctl = Self(LinkClient::connect(ClientConfig::new(addr, Lan)).await?);
            let auth = Command::Auth {
                secret: secret.trim().into(),
            };
            anyhow::ensure!(ctl.cmd(auth).await?.ok, "control auth refused");
            Ok(ctl)
        }

        /// Sends one command.
        ///
        /// # Errors
        /// If the link fails or the reply is not JSON.
        pub async fn cmd(&self, command: Command) -> Result<Reply> {
            let body = serde_json::to_vec(&command)?;
            let reply = self.0.request(&body, Duration::from_secs(10)).await?;
            Ok(serde_json::from_slice(&reply)?)
        }

        /// The server's status.
        ///
        /// # Errors
        /// As [`cmd`](Self::cmd), or if it does not read as a status.
        pub async fn status(&self) -> Result<Status> {
            Ok(serde_json::from_value(self.cmd(Command::Status).await?.data)?)
        }
    }
}
