//! A LAN server and a LAN client talking to it (seed 003's CLanServer and
//! CLanClient): the client sends numbered requests, the server answers each
//! with its payload reversed, and the client reconnects if the link drops.
//!
//! ```sh
//! cargo run -p plaza-net --example lan_link
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use plaza_net::{
    Backoff, Client, ClientConfig, ClientHandler, Framing, Handle, Handler, Server, ServerConfig, SessionId,
    put_lan_frame,
};
use tokio::sync::mpsc;

struct Reverser(Handle);

impl Handler for Reverser {
    fn on_connection_request(&self, peer: std::net::SocketAddr) -> bool {
        // An internal link: only loopback peers.
        peer.ip().is_loopback()
    }
    async fn on_recv(&self, id: SessionId, frame: &[u8]) {
        let mut reply: Vec<u8> = Framing::Lan.payload(frame).to_vec();
        reply.reverse();
        let _ = self.0.send_with(id, |b| put_lan_frame(b, &reply));
    }
}

struct Replies(mpsc::UnboundedSender<String>);

impl ClientHandler for Replies {
    async fn on_connect(&self) {
        println!("client: connected");
    }
    async fn on_disconnect(&self) {
        println!("client: disconnected");
    }
    async fn on_recv(&self, frame: &[u8]) {
        let _ = self
            .0
            .send(String::from_utf8_lossy(Framing::Lan.payload(frame)).into_owned());
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = Server::bind(ServerConfig::new("127.0.0.1:0".parse()?, Framing::Lan)).await?;
    let addr = server.local_addr();
    let handle = server.handle();
    server.start(Reverser(handle.clone()));
    println!("server: listening on {addr}");

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut config = ClientConfig::new(addr, Framing::Lan);
    config.reconnect = Some(Backoff::default());
    let client = Arc::new(Client::connect(config, Replies(tx)).await?);
    for i in 0..3 {
        let mut frame = BytesMut::new();
        put_lan_frame(&mut frame, format!("request {i}").as_bytes());
        client.send(frame.freeze())?;
        let reply = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await?;
        println!("client: got {reply:?}");
    }
    client.disconnect().await;
    handle.stop(Duration::from_secs(1)).await;
    println!("server: stopped with {} sessions", handle.session_count());
    Ok(())
}
