//! `plaza bench mixed`: joins, leaves, chat, whispers, user lists and
//! reconnects, for soak runs.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;
use plaza_load::Endpoint;
use plaza_proto::{Event, Request, ResultCode};
use serde_json::{Value, json};

use super::*;

#[derive(Default)]
struct MixedTally {
    actions: BTreeMap<&'static str, u64>,
    results: BTreeMap<String, u64>,
    errors: u64,
}

pub(super) async fn mixed(m: &Mixed) -> Result<Value> {
    check_fds(m.users)?;
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(m.seconds);
    let hist = std::sync::Arc::new(std::sync::Mutex::new(Histogram::<u64>::new_with_bounds(
        1_000,
        60_000_000_000,
        3,
    )?));
    let mut tasks = tokio::task::JoinSet::new();
    let target = m.common.target()?;
    for i in 0..m.users {
        let (server, from) = (target.clone(), source(&m.common, m.users, i));
        let (name, users, rooms, rate) = (format!("{}x{i}", m.common.prefix), m.users, m.rooms, m.rate);
        let (prefix, hist) = (m.common.prefix.clone(), hist.clone());
        tasks.spawn(async move {
            let mut t = MixedTally::default();
            if let Err(e) = mixed_user(
                &server, from, &name, &prefix, users, rooms, rate, end, &hist, &mut t,
            )
            .await
            {
                tracing_error(&e);
                t.errors += 1;
            }
            t
        });
    }
    // Sample the server's RSS every second, through the run and the linger.
    let mut samples = Vec::new();
    let pb = bar(&m.common, m.seconds + m.linger, "mixed");
    let linger_end = end + Duration::from_secs_f64(m.linger);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut all = MixedTally::default();
    loop {
        tick.tick().await;
        pb.set_position((t0.elapsed().as_secs_f64() * 10.0) as u64);
        if let Some(p) = server_proc(m.common.server_pid) {
            samples.push(json!([t0.elapsed().as_secs(), p.rss_kib]));
        }
        if Instant::now() >= end && !tasks.is_empty() {
            while let Some(r) = tasks.join_next().await {
                let t = r?;
                for (k, v) in t.actions {
                    *all.actions.entry(k).or_default() += v;
                }
                for (k, v) in t.results {
                    *all.results.entry(k).or_default() += v;
                }
                all.errors += t.errors;
            }
        }
        if Instant::now() >= linger_end && tasks.is_empty() {
            break;
        }
    }
    pb.finish_and_clear();
    let h = hist.lock().unwrap_or_else(|p| p.into_inner());
    let total: u64 = all.actions.values().sum();
    let rss: Vec<u64> = samples.iter().filter_map(|s| s[1].as_u64()).collect();
    let report = json!({
        "scenario": "mixed", "users": m.users, "rooms": m.rooms, "rate": m.rate,
        "seconds": m.seconds, "linger": m.linger,
        "actions": all.actions, "results": all.results, "user_errors": all.errors,
        "actions_per_sec": total as f64 / m.seconds,
        "latency_ms": latency_json(&h),
        "server_rss_kib": { "min": rss.iter().min(), "max": rss.iter().max(), "last": rss.last() },
        "rss_samples": samples,
    });
    if !m.common.json {
        println!(
            "mixed: {} users in {} rooms, {}/s each, {} s (+{} s linger)",
            m.users, m.rooms, m.rate, m.seconds, m.linger
        );
        println!(
            "actions {total} ({:.0}/s): {:?}",
            total as f64 / m.seconds,
            all.actions
        );
        println!("results: {:?}  user errors: {}", all.results, all.errors);
        println!(
            "response latency ms p50 {:.3}  p99 {:.3}  max {:.3}",
            ms(&h, 0.5),
            ms(&h, 0.99),
            h.max() as f64 / 1e6
        );
        if let (Some(lo), Some(hi), Some(last)) = (rss.iter().min(), rss.iter().max(), rss.last()) {
            println!("server RSS KiB: min {lo}, max {hi}, last {last}");
        }
    }
    Ok(report)
}

fn tracing_error(e: &anyhow::Error) {
    eprintln!("mixed user stopped: {e:#}");
}

/// One user: logs in, then picks an action at random `rate` times a second
/// until `end`; reconnects now and then with its resume token.
#[allow(clippy::too_many_arguments)]
async fn mixed_user(
    server: &Endpoint,
    from: Option<IpAddr>,
    name: &str,
    prefix: &str,
    users: usize,
    rooms: usize,
    rate: f64,
    end: Instant,
    hist: &std::sync::Mutex<Histogram<u64>>,
    t: &mut MixedTally,
) -> Result<()> {
    let mut c = match login(server, from, name).await? {
        Ok(c) => c,
        Err(code) => {
            *t.results.entry(format!("login {}", code.name())).or_default() += 1;
            return Ok(());
        }
    };
    let mut token = match c.next().await? {
        Event::ResumeToken { token, .. } => Some(token),
        _ => None,
    };
    let mut rng = name.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    });
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut at = Instant::now() + interval.mul_f64((next() % 1000) as f64 / 1000.0);
    let mut in_room = false;
    while at < end {
        tokio::time::sleep_until(at.into()).await;
        at += interval;
        let roll = next() % 100;
        let (action, request): (&'static str, Request) = match roll {
            0..=14 if !in_room => (
                "enter",
                Request::RoomEnter {
                    room: (next() % rooms as u64) as i32,
                },
            ),
            0..=49 if in_room => (
                "chat",
                Request::RoomChat {
                    message: "hello from the soak".into(),
                },
            ),
            50..=59 if in_room => ("leave", Request::RoomLeave),
            60..=74 => (
                "whisper",
                Request::Whisper {
                    to: format!("{prefix}x{}", next() % users as u64),
                    message: "psst".into(),
                },
            ),
            75..=84 => ("users", Request::UserList { after: String::new() }),
            85..=89 => ("reconnect", Request::Logout),
            _ => ("ping", Request::Ping { nonce: next() }),
        };
        *t.actions.entry(action).or_default() += 1;
        let sent = Instant::now();
        if action == "reconnect" {
            // Drop the connection and come back with the resume token.
            drop(c);
            let (conn, code) = reconnect(server, from, name, token.take()).await?;
            *t.results.entry(format!("reconnect {}", code.name())).or_default() += 1;
            let Some(mut conn) = conn else { return Ok(()) };
            token = match conn.next().await? {
                Event::ResumeToken { token, .. } => Some(token),
                _ => None,
            };
            c = conn;
            in_room = false;
            continue;
        }
        c.send(request).await?;
        let answer = until(&mut c, Event::is_response).await?;
        let code = plaza_client::PlazaClient::result_of(&answer);
        let _ = hist
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(sent.elapsed().as_nanos().max(1_000) as u64);
        if action == "enter" {
            // Room enter sends the member list first; `until` skipped it.
            in_room = code == ResultCode::OK;
        }
        if action == "leave" && code == ResultCode::OK {
            in_room = false;
        }
        *t.results.entry(code.name().to_owned()).or_default() += 1;
    }
    Ok(())
}
