//! The subscriber's connection: one pub/sub connection to one Redis, or on
//! a Redis Cluster one connection to each master that owns a followed shard
//! channel's slot (`shards`), the messages of all arriving on one queue.
//!
//! On one Redis every channel's messages come in the order they were
//! published; on a Redis Cluster that holds within each channel.

use futures_util::StreamExt;
use redis::Value;
use redis::aio::{PubSubSink, PubSubStream};

use super::shards::Shards;
use crate::primary::{Primary, Target};

pub(super) enum Sub {
    One { sink: PubSubSink, stream: PubSubStream },
    Cluster(Shards),
}

impl Sub {
    /// Connects (behind Sentinel, to the primary as of now); on a Redis
    /// Cluster the connections call themselves `name`.
    pub(super) async fn open(primary: &Primary, name: &str) -> anyhow::Result<Self> {
        let timeout = primary.timeout();
        if let Target::Cluster(seeds) = primary.target() {
            let mut c = primary.conn().await?;
            let shards = tokio::time::timeout(timeout, Shards::open(&mut c.conn, seeds, name))
                .await
                .map_err(|_| anyhow::anyhow!("CLUSTER SLOTS timed out"))??;
            return Ok(Self::Cluster(shards));
        }
        let client = primary.client().await?;
        let pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
            .await
            .map_err(|_| anyhow::anyhow!("connect timed out"))??;
        let (sink, stream) = pubsub.split();
        Ok(Self::One { sink, stream })
    }

    /// Subscribes to `channels`, confirmed.
    pub(super) async fn subscribe(&mut self, channels: Vec<String>) -> anyhow::Result<()> {
        match self {
            Self::One { sink, .. } => Ok(sink.subscribe(channels).await?),
            Self::Cluster(shards) => shards.subscribe(channels).await,
        }
    }

    /// Unsubscribes from `channels` (never empty: that would be all).
    pub(super) async fn unsubscribe(&mut self, channels: Vec<String>) -> anyhow::Result<()> {
        match self {
            Self::One { sink, .. } => Ok(sink.unsubscribe(channels).await?),
            Self::Cluster(shards) => shards.unsubscribe(channels).await,
        }
    }

    /// Checks that the connection (every master's, on a Redis Cluster)
    /// answers.
    pub(super) async fn ping(&mut self) -> anyhow::Result<()> {
        match self {
            Self::One { sink, .. } => Ok(sink.ping::<Value>().await.map(|_| ())?),
            Self::Cluster(shards) => shards.ping().await,
        }
    }

    /// The next message; `None` when the connection (any master's, on a
    /// Redis Cluster) was lost: the caller starts over, as after any cut.
    pub(super) async fn next(&mut self) -> Option<Message> {
        match self {
            Self::One { stream, .. } => stream.next().await.map(Message::One),
            Self::Cluster(shards) => shards.next().await,
        }
    }
}

/// A message as it came, not copied.
pub(super) enum Message {
    One(redis::Msg),
    Pushed { channel: Vec<u8>, payload: Vec<u8> },
}

impl Message {
    pub(super) fn channel(&self) -> &str {
        match self {
            Self::One(m) => m.get_channel_name(),
            Self::Pushed { channel, .. } => std::str::from_utf8(channel).unwrap_or_default(),
        }
    }

    pub(super) fn payload(&self) -> &[u8] {
        match self {
            Self::One(m) => m.get_payload_bytes(),
            Self::Pushed { payload, .. } => payload,
        }
    }
}
