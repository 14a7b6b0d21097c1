//! The request/response link over real sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use plaza_net::link::{LinkClient, LinkError, LinkHandler, Response, serve};
use plaza_net::{Backoff, ClientConfig, Handle, Lan, Server, ServerConfig, SessionId};
use tokio::sync::{Notify, mpsc};

const WAIT: Duration = Duration::from_secs(20);

/// Answers "echo:X" with X, never answers "hang", and reports joins.
struct Service {
    seen: mpsc::UnboundedSender<SessionId>,
    never: Arc<Notify>,
}

impl LinkHandler for Service {
    async fn on_request(&self, id: SessionId, body: &[u8]) -> Response {
        let _ = self.seen.send(id);
        if body == b"hang" {
            self.never.notified().await;
        }
        body.strip_prefix(b"echo:").unwrap_or(b"").to_vec().into()
    }
}

async fn start() -> (SocketAddr, Handle, mpsc::UnboundedReceiver<SessionId>) {
    let server = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap(), Lan))
        .await
        .unwrap();
    let addr = server.local_addr();
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = serve(
        server,
        Service {
            seen: tx,
            never: Arc::new(Notify::new()),
        },
    );
    (addr, handle, rx)
}

#[tokio::test]
async fn concurrent_requests_get_their_own_responses() {
    let (addr, _h, _rx) = start().await;
    let link = Arc::new(LinkClient::connect(ClientConfig::new(addr, Lan)).await.unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let link = link.clone();
        tasks.spawn(async move {
            let body = format!("echo:{i}");
            let reply = link.request(body.as_bytes(), WAIT).await.unwrap();
            assert_eq!(reply, i.to_string().as_bytes());
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

#[tokio::test]
async fn an_unanswered_request_times_out() {
    let (addr, _h, _rx) = start().await;
    let link = LinkClient::connect(ClientConfig::new(addr, Lan)).await.unwrap();
    let r = link.request(b"hang", Duration::from_millis(100)).await;
    assert!(matches!(r, Err(LinkError::Timeout(_))), "{r:?}");
}

#[tokio::test]
async fn a_dropped_link_fails_pending_requests_then_reconnects() {
    let (addr, handle, mut seen) = start().await;
    let mut config = ClientConfig::new(addr, Lan);
    config.reconnect = Some(Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
    });
    let link = Arc::new(LinkClient::connect(config).await.unwrap());
    let pending = {
        let link = link.clone();
        tokio::spawn(async move { link.request(b"hang", WAIT).await })
    };
    let first = tokio::time::timeout(WAIT, seen.recv()).await.unwrap().unwrap();
    handle.disconnect(first).unwrap();
    let r = tokio::time::timeout(WAIT, pending).await.unwrap().unwrap();
    assert!(matches!(r, Err(LinkError::Disconnected)), "{r:?}");
    // The client reconnects by itself; retry until the new link answers.
    let reply = tokio::time::timeout(WAIT, async {
        loop {
            match link.request(b"echo:back", WAIT).await {
                Ok(r) => break r,
                Err(LinkError::Send(_) | LinkError::Disconnected) => tokio::task::yield_now().await,
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(reply, b"back");
    let second = tokio::time::timeout(WAIT, seen.recv()).await.unwrap().unwrap();
    assert_ne!(first, second);
    link.close().await;
}
