//! The heartbeat: keeps this node alive in Redis and buries dead nodes.

use std::sync::Arc;
use std::time::Duration;

use super::{Shared, Signal, scripts};

/// Keeps this node in `nodes` and buries the dead, every third of the
/// node TTL.
pub(super) async fn run(shared: Arc<Shared>) {
    let beat = scripts::beat();
    let mut tick = tokio::time::interval((shared.config.node_ttl / 3).max(Duration::from_millis(200)));
    let mut registered = false;
    loop {
        tick.tick().await;
        let mut c = match shared.primary.conn().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "cluster heartbeat: no primary");
                continue;
            }
        };
        let r: Result<redis::RedisResult<i64>, _> = tokio::time::timeout(
            shared.config.timeout,
            // By hash; loaded again when Redis does not have it.
            beat.arg(&shared.config.prefix)
                .arg(shared.node)
                .arg(shared.config.node_ttl.as_millis() as u64)
                .invoke_async(&mut c.conn),
        )
        .await;
        match r {
            Ok(Ok(added)) => {
                if added == 1 && registered {
                    tracing::warn!("this node's heartbeat had lapsed; rewriting its state");
                    let _ = shared.signals.send(Signal::Resync).await;
                }
                registered = true;
            }
            Ok(Err(e)) => {
                shared.primary.failed(&c, &e);
                tracing::debug!(error = %e, "cluster heartbeat failed");
            }
            Err(_) => {
                shared.primary.timed_out(&c);
                tracing::debug!("cluster heartbeat timed out");
            }
        }
    }
}
