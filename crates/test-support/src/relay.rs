//! A TCP relay in front of a server whose connections a test can cut: a
//! real dropped connection (both sockets closed under the client and the
//! server) while the server keeps running, as a network change does.

use std::net::SocketAddr;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Relays 127.0.0.1 connections to a server; see the module docs.
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    cuts: watch::Sender<u64>,
    /// While false, new connections are closed at once (the network is down).
    up: Arc<AtomicBool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts relaying to `server` from a free loopback port.
    pub async fn start(server: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a relay");
        let addr = listener.local_addr().expect("its address");
        let (cuts, _) = watch::channel(0);
        let watching = cuts.clone();
        let up = Arc::new(AtomicBool::new(true));
        let is_up = up.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !is_up.load(Ordering::SeqCst) {
                    continue;
                }
                let mut cut = watching.subscribe();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect(server).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = cut.changed() => {}
                    }
                    // Both sockets close here.
                });
            }
        });
        Self {
            addr,
            cuts,
            up,
            accept,
        }
    }

    /// Closes every connection relayed so far; later ones are relayed.
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// The network goes down: every connection is cut, and new ones are
    /// closed at once until [`Relay::restore`].
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut();
    }

    /// The network is back.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
