//! Scenario d (`--scenario idle`): idle members, the setup and comeback
//! rates and the server's memory per connection; with `--missed`, the
//! reconnect storm with replay.

use super::*;

/// `missed` messages into every room, from one member that goes from
/// room to room (Plaza).
async fn post(args: &Args, missed: u64) -> Result<()> {
    let endpoint = plaza_load::Endpoint {
        target: args.addr.into(),
        websocket: args.ws,
    };
    let mut c = endpoint.connect(None).await?;
    let name = format!("{}poster", args.prefix);
    let login = c.register_and_login(&name, "pw").await?;
    anyhow::ensure!(
        login == plaza_proto::Event::LoginResult(plaza_proto::ResultCode::OK),
        "poster login: {login:?}"
    );
    for room in 0..args.rooms {
        c.send(plaza_proto::Request::RoomEnter { room: room as i32 })
            .await?;
        for i in 0..missed {
            let mut message = format!("missed {i} in room {room} ");
            let pad = args.size.saturating_sub(message.len()).min(256 - message.len());
            message.extend(std::iter::repeat_n('x', pad));
            c.send(plaza_proto::Request::RoomChat { message }).await?;
        }
        c.send(plaza_proto::Request::RoomLeave).await?;
        // Its answers (and its own copies, the room's news) up to the leave's.
        while !matches!(c.next().await?, plaza_proto::Event::RoomLeaveResult(_)) {}
    }
    Ok(())
}

/// Idle members: the setup rate and the server's memory per connection.
pub(crate) async fn idle(args: &Args) -> Result<()> {
    let n = args.connections;
    let rss = || args.server_pid.and_then(|p| plaza_bench::child::rss_kib(p).ok());
    let before = rss();
    let t = Instant::now();
    let history = args.missed > 0;
    anyhow::ensure!(!history || args.peer == Peer::Plaza, "--missed is Plaza's");
    let mut members = connect_many(args, &args.prefix, n, false, None, history.then_some((0, 0))).await?;
    // Messages each room has had so far (the last sequence number).
    let mut posted = 0;
    let setup = t.elapsed();
    let mut line = format!(
        "idle: {n} connections in {} rooms, set up at {:.0}/s ({} at a time)",
        args.rooms,
        n as f64 / setup.as_secs_f64(),
        args.concurrency
    );
    // What a restart or a network blip costs: every member comes back,
    // into a server that has seen these connections before.
    for round in 1..=args.resume_rounds {
        let tokens: Vec<Option<String>> = members.iter().map(|(_, _, t)| t.clone()).collect();
        drop(members);
        let (prefix, how) = match args.peer {
            Peer::Plaza => (args.prefix.clone(), " with resume tokens"),
            _ => (format!("{}a{round}", args.prefix), ""),
        };
        let missed = if history && round > 1 && round == args.resume_rounds {
            args.missed
        } else {
            0
        };
        if missed > 0 {
            let before = rss();
            post(args, missed).await?;
            if let (Some(b), Some(a)) = (before, rss()) {
                let kept = missed * args.rooms as u64;
                println!(
                    "posted {missed} messages of {} B into each of {} rooms: server RSS {b} KiB -> {a} KiB, {:.0} B per message",
                    args.size,
                    args.rooms,
                    a.saturating_sub(b) as f64 * 1024.0 / kept as f64
                );
            }
        }
        let rejoin = history.then_some((posted, missed));
        posted += missed;
        let replayed = wire::REPLAYED.load(Ordering::Relaxed);
        let (t, server) = (Instant::now(), cpu(args.server_pid));
        members = connect_many(args, &prefix, n, false, Some(tokens), rejoin).await?;
        let took = t.elapsed().as_secs_f64();
        line += &format!("; again{how} at {:.0}/s", n as f64 / took);
        if let (Some(a), Some(b)) = (server, cpu(args.server_pid)) {
            // The server's own cost, apart from how fast the load came.
            let per = (b.0 + b.1 - a.0 - a.1).as_secs_f64() * 1e6 / n as f64;
            line += &format!(" [server CPU {per:.1} us each]");
        }
        if history {
            let replayed = wire::REPLAYED.load(Ordering::Relaxed) - replayed;
            line += &format!(
                " (rejoined, {replayed} messages replayed: {:.0}/s)",
                replayed as f64 / took
            );
        }
    }
    let retried = RETRIED.load(Ordering::Relaxed);
    if retried > 0 {
        line += &format!(" ({retried} answers 112 or 113 retried)");
    }
    println!("{line}");
    // Let the server settle (its allocator, the last replies) before
    // reading its memory.
    tokio::time::sleep(Duration::from_secs(3)).await;
    if let (Some(b), Some(a)) = (before, rss()) {
        println!(
            "server RSS {b} KiB -> {a} KiB: {:.2} KiB per idle connection",
            a.saturating_sub(b) as f64 / n as f64
        );
    }
    if args.hold > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    }
    drop(members);
    Ok(())
}
