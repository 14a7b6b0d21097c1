//! `plaza bench connect`: connections and logins per second, with
//! passwords, then again with resume tokens.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use plaza_load::Conn;
use plaza_load::Endpoint;
use plaza_proto::{Event, Request, ResultCode};
use serde_json::{Value, json};

use super::*;

pub(super) async fn connect(c: &Connect) -> Result<Value> {
    check_fds(c.connections)?;
    let before = server_proc(c.common.server_pid);
    let (conns, tokens, fails, setup) = connect_all(c, None).await?;
    let held = conns.len();
    let with_conns = server_proc(c.common.server_pid);
    drop(conns);
    // Reconnect with the tokens: what a restart or a network blip causes.
    let (again, _, resume_fails, resume_time) = connect_all(c, Some(tokens)).await?;
    let resumed = again.len();
    drop(again);
    let per_conn = before
        .zip(with_conns)
        .map(|(b, a)| (a.rss_kib.saturating_sub(b.rss_kib)) as f64 / held.max(1) as f64);
    let report = json!({
        "scenario": "connect", "connections": c.connections, "concurrency": c.concurrency,
        "logged_in": held, "password_logins_per_sec": held as f64 / setup.as_secs_f64(),
        "failures": fails,
        "resumed": resumed, "resume_logins_per_sec": resumed as f64 / resume_time.as_secs_f64(),
        "resume_failures": resume_fails,
        "server_rss_kib_per_connection": per_conn,
    });
    if !c.common.json {
        println!(
            "connect: {} connections, {} in flight",
            c.connections, c.concurrency
        );
        println!(
            "password: {held} logged in, {:.0}/s, failures {fails:?}",
            held as f64 / setup.as_secs_f64()
        );
        println!(
            "resume tokens: {resumed} logged in, {:.0}/s, failures {resume_fails:?}",
            resumed as f64 / resume_time.as_secs_f64()
        );
        if let Some(k) = per_conn {
            println!("server RSS per logged-in connection: {k:.2} KiB");
        }
    }
    Ok(report)
}

type Connected = (Vec<Conn>, Vec<Option<String>>, BTreeMap<String, u64>, Duration);

/// Logs every user in (with a password, or with its token); keeps the
/// connections open.
async fn connect_all(c: &Connect, tokens: Option<Vec<Option<String>>>) -> Result<Connected> {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(c.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let pb = bar(&c.common, c.connections as f64 / 10.0, "connect");
    let t = Instant::now();
    let target = c.common.target()?;
    for i in 0..c.connections {
        let (sem, server) = (sem.clone(), target.clone());
        let from = source(&c.common, c.connections, i);
        let name = format!("{}c{i}", c.common.prefix);
        let token = tokens.as_ref().and_then(|t| t[i].clone());
        let pb = pb.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await?;
            pb.inc(1);
            let mut conn = match &token {
                None => match login(&server, from, &name).await? {
                    Ok(conn) => conn,
                    Err(code) => return Ok::<_, anyhow::Error>((i, Err(code))),
                },
                // As a client should: retry while the server has not yet
                // processed the old connection's close (31).
                Some(token) => match reconnect(&server, from, &name, Some(token.clone())).await? {
                    (Some(conn), _) => conn,
                    (None, code) => return Ok((i, Err(code))),
                },
            };
            let next = match conn.next().await? {
                Event::ResumeToken { token, .. } => Some(token),
                _ => None,
            };
            Ok((i, Ok((conn, next))))
        });
    }
    let mut conns = Vec::new();
    let mut next_tokens = vec![None; c.connections];
    let mut fails = BTreeMap::<String, u64>::new();
    while let Some(r) = tasks.join_next().await {
        match r? {
            Ok((i, Ok((conn, token)))) => {
                conns.push(conn);
                next_tokens[i] = token;
            }
            Ok((_, Err(code))) => *fails.entry(code.name().into()).or_default() += 1,
            Err(e) => *fails.entry(format!("error: {e}")).or_default() += 1,
        }
    }
    pb.finish_and_clear();
    Ok((conns, next_tokens, fails, t.elapsed()))
}

/// Reconnects as a client should: resume with the token (or log in with the
/// password), retrying while the server still holds the old session (31:
/// it has not processed the close yet; the token is kept for the retry).
pub(super) async fn reconnect(
    server: &Endpoint,
    from: Option<IpAddr>,
    name: &str,
    token: Option<String>,
) -> Result<(Option<Conn>, ResultCode)> {
    for _ in 0..50 {
        let mut c = server.connect(from).await?;
        c.hello().await?;
        let request = match &token {
            Some(t) => Request::Resume {
                name: name.into(),
                token: t.clone(),
            },
            None => Request::Login {
                name: name.into(),
                password: PASSWORD.into(),
            },
        };
        let code = plaza_client::PlazaClient::result_of(&c.call(request).await?);
        match code {
            ResultCode::OK => return Ok((Some(c), code)),
            ResultCode::LOGIN_ALREADY => tokio::time::sleep(Duration::from_millis(10)).await,
            other => return Ok((None, other)),
        }
    }
    Ok((None, ResultCode::LOGIN_ALREADY))
}
