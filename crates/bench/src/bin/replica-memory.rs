//! What a cluster node's memory costs per remote member of a room it
//! follows (docs/BENCHMARKS.md, "Issue #31": an input of the 100-node
//! model). A hub in cluster mode, driven directly (no sockets): one local
//! member in each of `--rooms` rooms, then `--remote` members of another
//! node enter each of them. Reported: the process's RSS before and after
//! the remote members, per remote member.

use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use plaza_core::{AuthOutcome, BusMsg, Config, Conn, Effect, Hub, Input, Recipient, SeatOutcome, Sink};
use plaza_proto::{Event, Request, Roster};

#[derive(Parser, Debug)]
#[command(about = "Memory per remote member of a followed room (cluster mode)")]
struct Args {
    /// Rooms followed (one local member each).
    #[arg(long, default_value_t = 2000)]
    rooms: u32,
    /// Remote members per room.
    #[arg(long, default_value_t = 49)]
    remote: u64,
}

/// Keeps the effects (a seat claim, a login check), drops the rest.
#[derive(Default)]
struct Effects(Vec<Effect>);

impl Sink for Effects {
    fn send(&mut self, _: Conn, _: &Event) {}
    fn send_members(&mut self, _: Conn, _: &Roster) {}
    fn fanout(&mut self, _: &[Event], _: impl IntoIterator<Item = Recipient>) {}
    fn fanout_packet(&mut self, _: &Bytes, _: std::time::Instant, _: impl IntoIterator<Item = Recipient>) {}
    fn send_packets<'a>(&mut self, _: Conn, _: impl IntoIterator<Item = (&'a Bytes, std::time::Instant)>) {}
    fn disconnect(&mut self, _: Conn) {}
    fn effect(&mut self, effect: Effect) {
        self.0.push(effect);
    }
}

fn rss_bytes() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).context("statm")?.parse()?;
    Ok(pages * 4096)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut hub = Hub::new(Config {
        node_tag: 1,
        rooms: args.rooms,
        room_capacity: usize::try_from(args.remote)? + 1,
        max_users: usize::try_from(args.rooms)? + 1,
        epoch: 1,
        ..Config::default()
    });
    let now = Instant::now();
    let mut out = Effects::default();
    for room in 0..args.rooms {
        let conn = Conn::from(room) + 1;
        let name = format!("local{room}");
        hub.handle(Input::Connect { conn }, now, &mut out);
        let login = Request::Login {
            name: name.clone(),
            password: "pw".into(),
        };
        hub.handle(Input::Request { conn, request: login }, now, &mut out);
        let Some(Effect::Authenticate { ticket, .. }) = out.0.pop() else {
            anyhow::bail!("no login check");
        };
        let outcome = AuthOutcome::valid(false);
        hub.handle(
            Input::AuthDone {
                conn,
                ticket,
                outcome,
            },
            now,
            &mut out,
        );
        out.0.clear();
        let enter = Request::RoomEnter {
            room: i32::try_from(room)?,
        };
        hub.handle(Input::Request { conn, request: enter }, now, &mut out);
        let Some(Effect::ClaimSeat { uid, .. }) = out.0.pop() else {
            anyhow::bail!("no seat claim");
        };
        let seated = SeatOutcome::Seated(vec![(uid, 1, name.clone())]);
        let done = Input::SeatDone {
            conn,
            name,
            uid,
            room,
            outcome: seated,
        };
        hub.handle(done, now, &mut out);
        out.0.clear();
    }
    let before = rss_bytes()?;
    for room in 0..args.rooms {
        for m in 0..args.remote {
            let uid = (2 << 48) | (u64::from(room) * args.remote + m);
            let msg = BusMsg::Enter {
                name: format!("r{room}m{m}"),
                uid,
                room,
            };
            let msg = Box::new(msg);
            hub.handle(Input::Remote { node: 2, msg }, now, &mut out);
        }
    }
    let after = rss_bytes()?;
    let members = u64::from(args.rooms) * args.remote;
    anyhow::ensure!(
        hub.remote_users() as u64 == members,
        "the replica holds {}",
        hub.remote_users()
    );
    println!(
        "replica-memory: {} rooms x {} remote members = {members}: RSS +{} KiB, {:.0} B per remote member",
        args.rooms,
        args.remote,
        after.saturating_sub(before) / 1024,
        after.saturating_sub(before) as f64 / members as f64
    );
    Ok(())
}
