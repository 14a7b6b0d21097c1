//! The operators' HTTP endpoint: Prometheus metrics and health checks.
//!
//! - `GET /metrics`: Prometheus text format (prometheus-client), built from
//!   the same snapshot as `plaza-ctl status`, plus the store latency
//!   histogram.
//! - `GET /livez`: 200 while the logic task answers within 2 s, else 503.
//! - `GET /readyz`: 200 when the server should get traffic: the account
//!   store is up, the cluster bus (in cluster mode) is up, and the server is
//!   not draining; else 503 with the reason.
//!
//! Three GET routes do not justify an HTTP stack in the dependency tree: this
//! is a small HTTP/1.1 responder (one request per connection, `Connection:
//! close`), bounded in header size, time and concurrent connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::control::{Command, ControlMsg};

/// Metrics kept between scrapes (the rest is read at scrape time).
#[derive(Clone)]
pub(crate) struct Metrics {
    /// Seconds per account store call (login, resume, register).
    pub(crate) store_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            // 100 µs to ~3 s.
            store_latency: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        }
    }
}

/// Binds and serves until the runtime stops.
pub(crate) async fn start(
    bind: SocketAddr,
    ctl: mpsc::Sender<ControlMsg>,
    metrics: Metrics,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let limit = Arc::new(Semaphore::new(16));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            // At most 16 scrapes at once; more wait in the backlog.
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let (ctl, metrics) = (ctl.clone(), metrics.clone());
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), serve(stream, &ctl, &metrics)).await;
                drop(permit);
            });
        }
    });
    Ok(addr)
}

async fn serve(
    mut stream: TcpStream,
    ctl: &mpsc::Sender<ControlMsg>,
    metrics: &Metrics,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() + n > 8192 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let (status, content_type, body) = if method != b"GET" {
        ("405 Method Not Allowed", "text/plain", "GET only\n".to_owned())
    } else {
        match path {
            b"/metrics" => match status_json(ctl).await {
                Some(s) => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    render(&s, metrics),
                ),
                None => unavailable("the logic task did not answer"),
            },
            b"/livez" => match status_json(ctl).await {
                Some(_) => ("200 OK", "text/plain", "ok\n".to_owned()),
                None => unavailable("the logic task did not answer"),
            },
            b"/readyz" => match status_json(ctl).await {
                Some(s) => match not_ready(&s) {
                    None => ("200 OK", "text/plain", "ok\n".to_owned()),
                    Some(why) => unavailable(&why),
                },
                None => unavailable("the logic task did not answer"),
            },
            _ => (
                "404 Not Found",
                "text/plain",
                "try /metrics, /livez or /readyz\n".to_owned(),
            ),
        }
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

fn unavailable(why: &str) -> (&'static str, &'static str, String) {
    ("503 Service Unavailable", "text/plain", format!("{why}\n"))
}

async fn status_json(ctl: &mpsc::Sender<ControlMsg>) -> Option<Value> {
    let (tx, rx) = oneshot::channel();
    ctl.send((Command::Status, tx)).await.ok()?;
    let reply = tokio::time::timeout(Duration::from_secs(2), rx)
        .await
        .ok()?
        .ok()?;
    reply.ok.then_some(reply.data)
}

/// Why the server should not get traffic now, if it should not.
fn not_ready(s: &Value) -> Option<String> {
    if s["draining"] == true {
        return Some("draining".into());
    }
    if s["store"] != "ok" {
        return Some(format!(
            "account store {}",
            s["store"].as_str().unwrap_or("unknown")
        ));
    }
    if let Some(bus) = s["cluster"]["bus"].as_str().filter(|b| *b != "ok") {
        return Some(format!("cluster bus {bus}"));
    }
    None
}

/// Gauges and counters from a status snapshot (see `Logic::control`).
fn render(s: &Value, metrics: &Metrics) -> String {
    let mut r = Registry::with_prefix("plaza");
    let n = |key: &str| s[key].as_f64().unwrap_or(0.0);
    let gauge = |r: &mut Registry, name: &str, help: &str, v: f64| {
        let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        g.set(v);
        r.register(name, help, g);
    };
    let counter = |r: &mut Registry, name: &str, help: &str, v: f64| {
        let c = Counter::<u64>::default();
        c.inc_by(v as u64);
        r.register(name, help, c);
    };
    gauge(&mut r, "sessions", "TCP connections open", n("sessions"));
    gauge(
        &mut r,
        "users_online",
        "users logged in on this node",
        n("users_online"),
    );
    gauge(
        &mut r,
        "rooms_in_use",
        "rooms with a member on this node",
        n("rooms_in_use"),
    );
    gauge(
        &mut r,
        "logic_queue_depth",
        "inputs waiting for the logic task",
        n("logic_queue_depth"),
    );
    gauge(
        &mut r,
        "send_queue_bytes",
        "bytes queued for clients, not yet written",
        n("send_queue_bytes"),
    );
    gauge(&mut r, "uptime_seconds", "seconds since start", n("uptime_secs"));
    counter(
        &mut r,
        "connections_accepted",
        "connections accepted",
        n("accepted_total"),
    );
    counter(
        &mut r,
        "tls_handshakes",
        "TLS handshakes completed",
        s["tls"]["handshakes_total"].as_f64().unwrap_or(0.0),
    );
    counter(&mut r, "requests", "requests processed", n("requests_total"));
    counter(
        &mut r,
        "packets_out",
        "packets handed to the network",
        n("packets_out_total"),
    );
    counter(
        &mut r,
        "deliveries",
        "shared fan-out frames handed to sessions (room chat, broadcast, notices)",
        n("deliveries_total"),
    );
    counter(&mut r, "frames_in", "frames received", n("frames_in_total"));
    counter(&mut r, "bytes_in", "bytes received", n("bytes_in_total"));
    counter(&mut r, "bytes_out", "bytes written", n("bytes_out_total"));
    counter(&mut r, "writes", "write system calls", n("writes_total"));
    counter(
        &mut r,
        "writes_held",
        "writes held for the next tick while the CPU is short (--gather-ms)",
        n("writes_held_total"),
    );
    gauge(
        &mut r,
        "writes_gathering",
        "1 while writes are gathered (the network threads are busy), else 0",
        f64::from(u8::from(s["writes_gathering"].as_bool() == Some(true))),
    );
    counter(
        &mut r,
        "room_messages_dropped",
        "room messages dropped for slow readers (drop-oldest policy)",
        n("room_messages_dropped"),
    );

    let logins = Family::<Vec<(String, String)>, Counter>::default();
    if let Some(map) = s["logins"].as_object() {
        for (result, v) in map {
            logins
                .get_or_create(&vec![("result".to_owned(), result.clone())])
                .inc_by(v.as_u64().unwrap_or(0));
        }
    }
    logins
        .get_or_create(&vec![("result".to_owned(), "RATE_LIMITED_EARLY".to_owned())])
        .inc_by(n("logins_rate_limited") as u64);
    r.register("logins", "login and resume answers by result", logins);

    let drops = Family::<Vec<(String, String)>, Counter>::default();
    for (reason, key) in [
        ("max_sessions", "refused_connections"),
        ("per_ip", "refused_connections_per_ip"),
        ("login_rate", "logins_rate_limited"),
        ("chat_rate", "chat_rate_limited"),
        ("login_timeout", "login_timeouts"),
        ("queue_overflow", "queue_overflows"),
        ("bad_frame", "bad_frames"),
        ("slow_consumer", "slow_consumer_disconnects"),
        ("idle_timeout", "idle_timeouts"),
        ("write_timeout", "write_timeouts"),
        ("tls_handshake", "tls_handshake_failures"),
    ] {
        drops
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc_by(n(key) as u64);
    }
    r.register("drops", "refusals and disconnects by reason", drops);

    let health = Family::<Vec<(String, String)>, Gauge>::default();
    health
        .get_or_create(&vec![("part".to_owned(), "store".to_owned())])
        .set(i64::from(s["store"] == "ok"));
    if let Some(bus) = s["cluster"]["bus"].as_str() {
        health
            .get_or_create(&vec![("part".to_owned(), "cluster_bus".to_owned())])
            .set(i64::from(bus == "ok"));
    }
    health
        .get_or_create(&vec![("part".to_owned(), "accepting_logins".to_owned())])
        .set(i64::from(s["draining"] != true));
    r.register("up", "1 when the part works", health);
    r.register(
        "store_latency_seconds",
        "account store call time (login, resume, register)",
        metrics.store_latency.clone(),
    );
    let mut out = String::new();
    let _ = encode(&mut out, &r);
    out
}
