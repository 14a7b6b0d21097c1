//! A server-to-server link (seed 003's CLanServer/CLanClient) with
//! request/response correlation, timeouts and reconnect.
//!
//! Two processes:
//! ```sh
//! cargo run -p plaza-net --example lan_link -- server 127.0.0.1:7100
//! cargo run -p plaza-net --example lan_link -- client 127.0.0.1:7100
//! ```
//! With no arguments, both ends run in one process.
//!
//! The server answers each request with its payload reversed; the client
//! sends numbered requests once a second and keeps going across server
//! restarts (requests fail while the link is down, then succeed again).

use std::net::SocketAddr;
use std::time::Duration;

use plaza_net::link::{LinkClient, LinkHandler, Response, serve};
use plaza_net::{Backoff, ClientConfig, Lan, Server, ServerConfig, SessionId};

struct Reverser;

impl LinkHandler for Reverser {
    fn on_connection_request(&self, peer: SocketAddr) -> bool {
        // An internal link: loopback peers only.
        peer.ip().is_loopback()
    }
    async fn on_request(&self, _id: SessionId, body: &[u8]) -> Response {
        body.iter().rev().copied().collect::<Vec<u8>>().into()
    }
}

async fn run_server(addr: SocketAddr) -> anyhow::Result<plaza_net::Handle> {
    let server = Server::bind(ServerConfig::new(addr, Lan)).await?;
    println!("server: listening on {}", server.local_addr());
    Ok(serve(server, Reverser))
}

async fn run_client(addr: SocketAddr, requests: usize) -> anyhow::Result<()> {
    let mut config = ClientConfig::new(addr, Lan);
    config.reconnect = Some(Backoff::default());
    let link = LinkClient::connect(config).await?;
    for i in 0..requests {
        match link
            .request(format!("request {i}").as_bytes(), Duration::from_secs(2))
            .await
        {
            Ok(reply) => println!("client: {}", String::from_utf8_lossy(&reply)),
            Err(e) => println!("client: request {i} failed: {e}"),
        }
        if requests > 3 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    link.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = |i: usize| -> anyhow::Result<SocketAddr> {
        Ok(args.get(i).map_or("127.0.0.1:7100", String::as_str).parse()?)
    };
    match args.first().map(String::as_str) {
        Some("server") => {
            let handle = run_server(addr(1)?).await?;
            tokio::signal::ctrl_c().await?;
            handle.stop(Duration::from_secs(1)).await;
        }
        Some("client") => run_client(addr(1)?, 60).await?,
        _ => {
            let handle = run_server("127.0.0.1:0".parse()?).await?;
            run_client(handle.local_addr(), 3).await?;
            handle.stop(Duration::from_secs(1)).await;
        }
    }
    Ok(())
}
