//! An echo server on a framing of its own (the seeds' five-byte chat
//! header): every frame comes straight back. The framing is the part a
//! library user writes: say how long a frame is from its header.
//!
//! ```sh
//! cargo run -p plaza-net --example echo_server -- 127.0.0.1:7777
//! ```

use std::time::Duration;

use plaza_net::{FrameError, Framing, Handle, Handler, Server, ServerConfig, SessionId};

/// Total length u16 LE (header included), an id u16 LE, flags that must be 0.
#[derive(Debug)]
struct Chat;

impl Framing for Chat {
    fn header_len(&self) -> usize {
        5
    }
    fn max_frame(&self) -> usize {
        usize::from(u16::MAX)
    }
    fn frame_len(&self, header: &[u8]) -> Result<usize, FrameError> {
        if header[4] != 0 {
            return Err(FrameError::BadFlags(header[4]));
        }
        Ok(usize::from(u16::from_le_bytes([header[0], header[1]])))
    }
}

struct Echo(Handle);

impl Handler for Echo {
    async fn on_join(&self, id: SessionId, peer: std::net::SocketAddr) {
        tracing::info!(%id, %peer, "joined");
    }
    async fn on_leave(&self, id: SessionId) {
        tracing::info!(%id, "left");
    }
    async fn on_recv(&self, id: SessionId, frame: &[u8]) {
        // Copied into the session's outbox: no allocation per packet.
        let _ = self.0.send_slice(id, frame);
    }
    fn on_error(&self, id: Option<SessionId>, error: &plaza_net::NetError) {
        tracing::warn!(?id, %error, "session error");
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:7777".into());
    plaza_net::runtime(0)?.block_on(async {
        let server = Server::bind(ServerConfig::new(addr.parse()?, Chat)).await?;
        tracing::info!(addr = %server.local_addr(), "echo server listening; Ctrl-C stops");
        let handle = server.handle();
        server.start(Echo(handle.clone()));
        tokio::signal::ctrl_c().await?;
        handle.stop(Duration::from_secs(5)).await;
        tracing::info!("stopped");
        Ok(())
    })
}
