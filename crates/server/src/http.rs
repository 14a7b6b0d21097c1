//! The operators' HTTP endpoint: Prometheus metrics and health checks.
//!
//! - `GET /metrics`: the Prometheus text format (`text/plain;
//!   version=0.0.4`), or OpenMetrics when the scraper asks for it in
//!   `Accept`; built from the same snapshot as `plaza-ctl status`, plus the
//!   store latency histogram.
//! - `GET /livez`: 200 while the logic task has beaten within the last 10 s
//!   (read from its heartbeat, with no round trip to it), else 503.
//! - `GET /readyz`: 200 when the server should get traffic: the account
//!   store is up, the cluster bus (in cluster mode) is up, and the server is
//!   not draining; else 503 with the reason.
//!
//! Served by hyper (HTTP/1.1, keep-alive): a connection that takes more than
//! 5 s to send a request's head, or sits idle that long between requests,
//! is closed; heads are capped at 16 KiB; at most 1,024 connections at once
//! (more are closed at accept), so idle clients cannot starve the health
//! checks.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::control::{Command, ControlMsg, Status};

/// Time a client has to send a request head, and to send the next one on
/// a kept-alive connection.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 1024;
/// A logic task silent this long is not alive.
const LIVENESS: Duration = Duration::from_secs(10);

/// Metrics kept between scrapes (the rest is read at scrape time).
#[derive(Clone)]
pub(crate) struct Metrics {
    /// Seconds per account store call (login, resume, register).
    pub(crate) store_latency: Histogram,
    /// Cluster mode: seconds from another node's publish to its arrival.
    pub(crate) bus_delivery: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            // 100 µs to ~3 s.
            store_latency: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            // 25 µs to ~0.8 s.
            bus_delivery: Histogram::new(exponential_buckets(0.000_025, 2.0, 16)),
        }
    }
}

/// The logic task's heartbeat: when it last went round its loop.
#[derive(Clone)]
pub(crate) struct Heartbeat {
    since: Instant,
    /// Milliseconds after `since` of the last beat.
    last: Arc<AtomicU64>,
}

impl Heartbeat {
    pub(crate) fn new() -> Self {
        Self {
            since: Instant::now(),
            last: Arc::default(),
        }
    }

    pub(crate) fn beat(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        self.since
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

#[derive(Clone)]
struct Http {
    ctl: mpsc::Sender<ControlMsg>,
    metrics: Metrics,
    heartbeat: Heartbeat,
}

/// Binds and serves until the runtime stops.
pub(crate) async fn start(
    bind: SocketAddr,
    ctl: mpsc::Sender<ControlMsg>,
    metrics: Metrics,
    heartbeat: Heartbeat,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let http = Http {
        ctl,
        metrics,
        heartbeat,
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors or buffers: wait for some to free.
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "metrics listener full: connection closed");
                continue;
            };
            let http = http.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let http = http.clone();
                    async move { Ok::<_, Infallible>(http.answer(&req).await) }
                });
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .max_buf_size(16 * 1024)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "metrics connection ended");
                }
                drop(slot);
            });
        }
    });
    Ok(addr)
}

type Answer = Response<Full<Bytes>>;

fn text(status: StatusCode, body: impl Into<String>) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn unavailable(why: &str) -> Answer {
    text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"))
}

impl Http {
    async fn answer(&self, req: &Request<Incoming>) -> Answer {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        match req.uri().path() {
            "/livez" => {
                let silent = self.heartbeat.silent_for();
                if silent <= LIVENESS {
                    text(StatusCode::OK, "ok\n")
                } else {
                    unavailable(&format!(
                        "the logic task has been silent for {}s",
                        silent.as_secs()
                    ))
                }
            }
            "/readyz" => match status(&self.ctl).await {
                Some(s) => match s.not_ready() {
                    None => text(StatusCode::OK, "ok\n"),
                    Some(why) => unavailable(&why),
                },
                None => unavailable("the logic task did not answer"),
            },
            "/metrics" => {
                let Some(s) = status(&self.ctl).await else {
                    return unavailable("the logic task did not answer");
                };
                let openmetrics = req
                    .headers()
                    .get_all(header::ACCEPT)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .any(|v| v.contains("application/openmetrics-text"));
                let body = render(&s, &self.metrics);
                let (body, kind) = if openmetrics {
                    (body, "application/openmetrics-text; version=1.0.0; charset=utf-8")
                } else {
                    (prometheus_text(&body), "text/plain; version=0.0.4; charset=utf-8")
                };
                let mut r = text(StatusCode::OK, body);
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
                r
            }
            _ => text(StatusCode::NOT_FOUND, "try /metrics, /livez or /readyz\n"),
        }
    }
}

/// OpenMetrics text as the classic Prometheus text format (0.0.4): a
/// counter's HELP and TYPE lines name its `_total` sample, and the `# EOF`
/// and `# UNIT` lines go (a 0.0.4 parser does not know them).
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = if counters.contains(name) && !name.ends_with("_total") {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{total} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

async fn status(ctl: &mpsc::Sender<ControlMsg>) -> Option<Status> {
    let (tx, rx) = oneshot::channel();
    ctl.send((Command::Status, tx)).await.ok()?;
    let reply = tokio::time::timeout(Duration::from_secs(2), rx)
        .await
        .ok()?
        .ok()?;
    if !reply.ok {
        return None;
    }
    serde_json::from_value(reply.data)
        .inspect_err(|e| tracing::error!(error = %e, "the status does not read as a Status"))
        .ok()
}

/// Gauges and counters from a status snapshot (see `Logic::control`).
fn render(s: &Status, metrics: &Metrics) -> String {
    let mut r = Registry::with_prefix("plaza");
    let gauge = |r: &mut Registry, name: &str, help: &str, v: f64| {
        let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        g.set(v);
        r.register(name, help, g);
    };
    let counter = |r: &mut Registry, name: &str, help: &str, v: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        r.register(name, help, c);
    };
    gauge(
        &mut r,
        "sessions",
        "connections open (TCP and WebSocket)",
        s.sessions as f64,
    );
    gauge(
        &mut r,
        "websocket_sessions",
        "WebSocket connections open (also in plaza_sessions)",
        s.websocket.as_ref().map_or(0, |w| w.sessions) as f64,
    );
    gauge(
        &mut r,
        "users_online",
        "users logged in on this node",
        s.users_online as f64,
    );
    gauge(
        &mut r,
        "rooms_in_use",
        "rooms with a member on this node",
        s.rooms_in_use as f64,
    );
    gauge(
        &mut r,
        "users_away",
        "users who dropped and whose room seat and whispers are kept (the resume window)",
        s.users_away as f64,
    );
    gauge(
        &mut r,
        "history_bytes",
        "bytes of room history held (each message: its packet and 64 bytes)",
        s.history_bytes as f64,
    );
    gauge(
        &mut r,
        "logic_queue_depth",
        "inputs waiting for the logic task",
        s.logic_queue_depth as f64,
    );
    gauge(
        &mut r,
        "send_queue_bytes",
        "bytes queued for clients, not yet written",
        s.send_queue_bytes as f64,
    );
    gauge(
        &mut r,
        "uptime_seconds",
        "seconds since start",
        s.uptime_secs as f64,
    );
    counter(
        &mut r,
        "connections_accepted",
        "connections accepted",
        s.accepted_total,
    );
    counter(
        &mut r,
        "tls_handshakes",
        "TLS handshakes completed",
        s.tls.as_ref().map_or(0, |t| t.handshakes_total),
    );
    counter(&mut r, "requests", "requests processed", s.requests_total);
    counter(
        &mut r,
        "packets_out",
        "packets handed to the network",
        s.packets_out_total,
    );
    counter(
        &mut r,
        "deliveries",
        "shared fan-out frames handed to sessions (room chat, broadcast, notices)",
        s.deliveries_total,
    );
    counter(&mut r, "frames_in", "frames received", s.frames_in_total);
    counter(&mut r, "bytes_in", "bytes received", s.bytes_in_total);
    counter(&mut r, "bytes_out", "bytes written", s.bytes_out_total);
    counter(&mut r, "writes", "write system calls", s.writes_total);
    counter(
        &mut r,
        "writes_held",
        "writes held for the next tick while the CPU is short (--gather-ms)",
        s.writes_held_total,
    );
    gauge(
        &mut r,
        "writes_gathering",
        "1 while writes are gathered (the network threads are busy), else 0",
        f64::from(u8::from(s.writes_gathering)),
    );
    counter(
        &mut r,
        "room_messages_dropped",
        "room messages dropped for slow readers (drop-oldest policy)",
        s.room_messages_dropped,
    );

    if let Some(c) = &s.cluster {
        let b = &c.bus_stats;
        counter(
            &mut r,
            "bus_published",
            "cluster bus messages published",
            b.published_messages,
        );
        counter(
            &mut r,
            "bus_published_bytes",
            "cluster bus payload bytes published",
            b.published_bytes,
        );
        counter(
            &mut r,
            "bus_received",
            "cluster bus messages received from other nodes",
            b.received_messages,
        );
        counter(
            &mut r,
            "bus_received_bytes",
            "cluster bus payload bytes received from other nodes",
            b.received_bytes,
        );
        counter(
            &mut r,
            "bus_gaps",
            "times another node's messages were found missed (this node's bus link was cut)",
            b.gaps,
        );
        counter(
            &mut r,
            "bus_missed",
            "messages of other nodes missed, at most (see plaza_bus_gaps)",
            b.missed,
        );
        counter(
            &mut r,
            "directory_lookups",
            "reads of the directory in Redis: a user's node (whisper, kick, mute), a page of users",
            b.directory_lookups,
        );
        gauge(
            &mut r,
            "bus_channels",
            "cluster bus channels subscribed",
            c.channels as f64,
        );
        gauge(
            &mut r,
            "bus_peers",
            "other live cluster nodes known",
            c.peers as f64,
        );
        r.register(
            "bus_delivery_seconds",
            "time from another node's publish to its arrival here (clocks of both)",
            metrics.bus_delivery.clone(),
        );
    }

    let logins = Family::<Vec<(String, String)>, Counter>::default();
    for (result, n) in &s.logins {
        logins
            .get_or_create(&vec![("result".to_owned(), result.clone())])
            .inc_by(*n);
    }
    logins
        .get_or_create(&vec![("result".to_owned(), "RATE_LIMITED_EARLY".to_owned())])
        .inc_by(s.logins_rate_limited);
    r.register("logins", "login and resume answers by result", logins);

    let drops = Family::<Vec<(String, String)>, Counter>::default();
    for (reason, n) in [
        ("max_sessions", s.refused_connections),
        ("per_ip", s.refused_connections_per_ip),
        ("login_rate", s.logins_rate_limited),
        ("chat_rate", s.chat_rate_limited),
        ("login_timeout", s.login_timeouts),
        ("queue_overflow", s.queue_overflows),
        ("bad_frame", s.bad_frames),
        ("slow_consumer", s.slow_consumer_disconnects),
        ("idle_timeout", s.idle_timeouts),
        ("write_timeout", s.write_timeouts),
        ("tls_handshake", s.tls_handshake_failures),
    ] {
        drops
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc_by(n);
    }
    r.register("drops", "refusals and disconnects by reason", drops);

    let health = Family::<Vec<(String, String)>, Gauge>::default();
    health
        .get_or_create(&vec![("part".to_owned(), "store".to_owned())])
        .set(i64::from(s.store == "ok"));
    if let Some(c) = &s.cluster {
        health
            .get_or_create(&vec![("part".to_owned(), "cluster_bus".to_owned())])
            .set(i64::from(c.bus == "ok"));
    }
    health
        .get_or_create(&vec![("part".to_owned(), "accepting_logins".to_owned())])
        .set(i64::from(!s.draining));
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
