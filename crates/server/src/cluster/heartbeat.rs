//! The heartbeat: keeps this node alive in Redis and buries dead nodes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::scripts::Scripts;
use super::{Shared, Signal, rewrite};
use crate::primary::Conn;

/// Keeps this node in the live set and buries the dead, every third of the
/// node TTL.
///
/// A node buries others only once its own beats have gone through for a
/// whole TTL. After an outage (of Redis, or of the master that holds the
/// cluster's bookkeeping) every node's beats failed alike; the first to
/// reach Redis again would otherwise bury all the others, alive, and their
/// users would miss what was said meanwhile. So each gets a TTL to beat
/// again first.
pub(super) async fn run(shared: Arc<Shared>) {
    let scripts = Scripts::new(shared.publish);
    let mut tick = tokio::time::interval((shared.config.node_ttl / 3).max(Duration::from_millis(200)));
    let mut registered = false;
    // Since when every beat has gone through.
    let mut beating_since: Option<Instant> = None;
    loop {
        tick.tick().await;
        let mut c = match shared.primary.conn().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "cluster heartbeat: no primary");
                beating_since = None;
                continue;
            }
        };
        let may_bury = beating_since.is_some_and(|t| t.elapsed() >= shared.config.node_ttl);
        let r = tokio::time::timeout(
            shared.config.timeout,
            beat(&shared, &mut c.conn, &scripts, may_bury),
        )
        .await;
        match r {
            Ok(Ok(added)) => {
                beating_since.get_or_insert_with(Instant::now);
                if added && registered {
                    tracing::warn!("this node's heartbeat had lapsed; rewriting its state");
                    let _ = shared.signals.send(Signal::Resync).await;
                }
                registered = true;
            }
            Ok(Err(e)) => {
                beating_since = None;
                shared.primary.failed(&c, &e);
                tracing::debug!(error = %e, "cluster heartbeat failed");
            }
            Err(_) => {
                beating_since = None;
                shared.primary.timed_out(&c);
                tracing::debug!("cluster heartbeat timed out");
            }
        }
    }
}

/// One beat: true if this node was not registered (it was buried, or is
/// new). With `may_bury`, buries the nodes whose time has passed.
async fn beat(s: &Shared, c: &mut Conn, scripts: &Scripts, may_bury: bool) -> redis::RedisResult<bool> {
    // By hash; loaded again when Redis does not have it.
    let r: Vec<u64> = scripts
        .beat
        .key(s.keys.nodes())
        .arg(s.node)
        .arg(s.config.node_ttl.as_millis() as u64)
        .invoke_async(c)
        .await?;
    let Some((added, dead)) = r.split_first() else {
        return Ok(false);
    };
    for id in dead.iter().filter(|id| may_bury && **id != s.node) {
        tracing::info!(node = id, "burying a cluster node whose heartbeat lapsed");
        rewrite::bury(s, c, scripts, *id).await?;
    }
    Ok(*added == 1)
}
