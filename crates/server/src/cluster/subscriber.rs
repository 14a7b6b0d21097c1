//! The subscriber: one pub/sub connection, subscribed to the bus and to
//! the channels of the rooms this node follows. It forwards the other
//! nodes' messages to the logic task in order, checks their stamps, and on
//! every (re)subscription has this node rewrite its own state and takes a
//! snapshot of the others'.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use plaza_core::Input;
use plaza_proto::bus;
use tokio::sync::mpsc;

use super::pubsub::Sub;
use super::received::{self, After, members, on_message, peers};
use super::{Channel, Follow, Shared, Signal, lock};

/// What the subscriber keeps across resubscriptions.
struct Follower {
    /// The rooms followed.
    rooms: BTreeSet<u32>,
    /// The last stamp seen from each other node on each channel: what went
    /// by while the link was down shows as a jump.
    last: HashMap<(u64, Channel), u64>,
    follow: mpsc::UnboundedReceiver<Follow>,
    /// A subscription was up before (so the next one follows a cut).
    was_up: bool,
}

impl Follower {
    /// Takes `f` while no connection is up: the next subscription includes
    /// the rooms.
    fn offline(&mut self, f: Follow) {
        match f {
            Follow::Start(rooms, done) => {
                self.start(&rooms);
                let _ = done.send(());
            }
            Follow::Stop(rooms) => self.stop(&rooms),
        }
    }

    fn start(&mut self, rooms: &[u32]) {
        for r in rooms {
            // A room followed anew starts with no stamps: what it carried
            // while not followed concerns nobody here.
            if self.rooms.insert(*r) {
                self.last.retain(|(_, c), _| *c != Channel::Room(*r));
            }
        }
    }

    fn stop(&mut self, rooms: &[u32]) {
        for r in rooms {
            self.rooms.remove(r);
            self.last.retain(|(_, c), _| *c != Channel::Room(*r));
        }
    }

    fn names(shared: &Shared, rooms: &[u32]) -> Vec<String> {
        rooms
            .iter()
            .map(|r| Channel::Room(*r).name(&shared.keys))
            .collect()
    }
}

/// Runs for the life of the node, resubscribing after every failure.
pub(super) async fn run(shared: Arc<Shared>, follow: mpsc::UnboundedReceiver<Follow>) {
    let backoff = plaza_net::Backoff {
        initial: Duration::from_millis(100),
        // A node is one subscriber: retrying twice a second costs Redis
        // nothing and finds a promoted replica soon after the promotion.
        max: Duration::from_millis(500),
    };
    let mut attempt = 0;
    let mut f = Follower {
        rooms: BTreeSet::new(),
        last: HashMap::new(),
        follow,
        was_up: false,
    };
    loop {
        let error = match subscribe(&shared, &mut f).await {
            Ok(()) => "subscription closed".to_owned(),
            Err(e) => e.to_string(),
        };
        if lock(&shared.link).up {
            attempt = 0;
        }
        shared.link_down(error).await;
        let pause = tokio::time::sleep(backoff.delay(attempt, shared.node.wrapping_add(u64::from(attempt))));
        tokio::pin!(pause);
        loop {
            tokio::select! {
                () = &mut pause => break,
                Some(msg) = f.follow.recv() => f.offline(msg),
            }
        }
        attempt += 1;
    }
}

async fn subscribe(shared: &Shared, f: &mut Follower) -> anyhow::Result<()> {
    let timeout = shared.config.timeout;
    // Behind Sentinel, the primary as of now.
    let mut sink = Sub::open(&shared.primary, &format!("plaza-node-{}", shared.node)).await?;
    let rooms: Vec<u32> = f.rooms.iter().copied().collect();
    let mut channels = Follower::names(shared, &rooms);
    channels.push(Channel::Bus.name(&shared.keys));
    channels.push(Channel::Node(shared.node).name(&shared.keys));
    let count = channels.len();
    tokio::time::timeout(timeout, sink.subscribe(channels))
        .await
        .map_err(|_| anyhow::anyhow!("subscribe timed out"))??;
    {
        let mut l = lock(&shared.link);
        l.up = true;
        l.error.clear();
        l.channels = count;
    }
    tracing::info!(node = shared.node, channels = count, "cluster bus link up");
    // Our own state first (the others re-read it when told), then theirs.
    let _ = shared.signals.send(Signal::Resync).await;
    let nodes = peers(shared).await?;
    lock(&shared.link).peers = nodes.iter().copied().collect();
    f.last.retain(|(id, _), _| nodes.contains(id));
    let rooms = received::rooms(shared, f.rooms.iter().copied()).await?;
    // After a cut, the followed rooms may have carried messages meanwhile.
    let cut = std::mem::replace(&mut f.was_up, true);
    shared.input(Input::Snapshot { rooms, cut }).await;
    let mut ping = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            msg = sink.next() => {
                let Some(msg) = msg else { return Ok(()) };
                let payload = msg.payload();
                let channel = Channel::parse(&shared.keys, msg.channel());
                if let Some((node, missed, room)) = check_stamp(shared, &mut f.last, channel, payload) {
                    let members = match room {
                        Some(r) => following(shared, f, &mut sink, members(shared, r)).await??,
                        None => Vec::new(),
                    };
                    shared.input(Input::BusGap { node, missed, room, members }).await;
                }
                match on_message(shared, &mut f.last, payload).await? {
                    After::Nothing => {}
                    After::Reread => {
                        let followed: Vec<u32> = f.rooms.iter().copied().collect();
                        let read = received::rooms(shared, followed);
                        let rooms = following(shared, f, &mut sink, read).await??;
                        shared.input(Input::Snapshot { rooms, cut: false }).await;
                    }
                    After::Buried => {
                        let followed: Vec<u32> = f.rooms.iter().copied().collect();
                        for (room, members) in following(shared, f, &mut sink, received::rooms(shared, followed)).await?? {
                            let node = shared.node;
                            shared.input(Input::BusGap { node, missed: 0, room: Some(room), members }).await;
                        }
                    }
                }
            }
            Some(follow) = f.follow.recv() => follow_now(shared, f, &mut sink, follow).await?,
            _ = ping.tick() => {
                tokio::time::timeout(timeout, sink.ping())
                    .await
                    .map_err(|_| anyhow::anyhow!("ping timed out"))??;
            }
        }
    }
}

/// Waits for `read` while still answering the writer's follow requests (a
/// writer waiting to subscribe a room must not wait for this read too).
/// No bus message is taken meanwhile: their order around the read holds.
async fn following<T>(
    shared: &Shared,
    f: &mut Follower,
    sink: &mut Sub,
    read: impl std::future::Future<Output = T>,
) -> anyhow::Result<T> {
    tokio::pin!(read);
    loop {
        tokio::select! {
            r = &mut read => return Ok(r),
            Some(follow) = f.follow.recv() => follow_now(shared, f, sink, follow).await?,
        }
    }
}

/// Subscribes or unsubscribes on the live connection.
async fn follow_now(shared: &Shared, f: &mut Follower, sink: &mut Sub, follow: Follow) -> anyhow::Result<()> {
    let timeout = shared.config.timeout;
    match follow {
        Follow::Start(rooms, done) => {
            let new: Vec<u32> = rooms.iter().copied().filter(|r| !f.rooms.contains(r)).collect();
            f.start(&rooms);
            if !new.is_empty() {
                // On failure the link is down, and the seat waiting for this
                // is answered as in any outage.
                let subscribed =
                    tokio::time::timeout(timeout, sink.subscribe(Follower::names(shared, &new))).await;
                let _ = done.send(());
                subscribed.map_err(|_| anyhow::anyhow!("subscribe timed out"))??;
            } else {
                let _ = done.send(());
            }
        }
        Follow::Stop(rooms) => {
            let old: Vec<u32> = rooms.iter().copied().filter(|r| f.rooms.contains(r)).collect();
            f.stop(&rooms);
            // Never empty: UNSUBSCRIBE with no channel leaves them all.
            if !old.is_empty() {
                tokio::time::timeout(timeout, sink.unsubscribe(Follower::names(shared, &old)))
                    .await
                    .map_err(|_| anyhow::anyhow!("unsubscribe timed out"))??;
            }
        }
    }
    // The rooms, the bus and this node's own.
    lock(&shared.link).channels = f.rooms.len() + 2;
    Ok(())
}

/// Reads another node's stamp: counts the message and times its delivery.
/// When numbers on its channel were skipped, returns (node, how many, the
/// room whose channel it is) for the caller to report the gap to the hub,
/// before the message itself is handled.
fn check_stamp(
    shared: &Shared,
    last: &mut HashMap<(u64, Channel), u64>,
    channel: Option<Channel>,
    payload: &[u8],
) -> Option<(u64, u64, Option<u32>)> {
    let (Some(o), Some(channel)) = (bus::origin(payload), channel) else {
        return None;
    };
    if o.node == shared.node || o.node == 0 {
        return None;
    }
    shared
        .counts
        .received(payload.len(), matches!(channel, Channel::Room(_)));
    if o.seq == 0 {
        return None;
    }
    if let Some(took) = super::unix_micros().checked_sub(o.sent_us) {
        shared.delivery.observe(took as f64 / 1e6);
    }
    if channel == Channel::Bus && !last.contains_key(&(o.node, channel)) {
        // A node this one did not know (new since the snapshot).
        lock(&shared.link).peers.insert(o.node);
    }
    let missed = match last.insert((o.node, channel), o.seq) {
        Some(b) if o.seq > b + 1 => o.seq - b - 1,
        _ => return None,
    };
    shared.counts.gap(missed);
    tracing::warn!(
        node = o.node,
        missed,
        ?channel,
        "missed cluster messages from a node while the bus link was cut"
    );
    let room = match channel {
        Channel::Room(r) => Some(r),
        Channel::Bus | Channel::Node(_) => None,
    };
    Some((o.node, missed, room))
}
