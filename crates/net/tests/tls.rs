//! TLS listeners and connections over real sockets on 127.0.0.1, with
//! certificates generated here. Every wait is for an event, with a generous
//! timeout; nothing sleeps to synchronise.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::BytesMut;
use plaza_net::tls::{TlsAcceptor, TlsConnector};
use plaza_net::{
    Client, ClientConfig, ClientHandler, Handle, Handler, Lan, NetError, Server, ServerConfig, SessionId,
    TlsListener, put_lan_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Writes a fresh self-signed certificate for 127.0.0.1 and localhost to
/// `dir` as cert.pem and key.pem; returns the certificate's path (it is
/// also the CA a client trusts).
fn self_signed(dir: &Path) -> PathBuf {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = dir.join("cert.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    cert
}

/// Echoes every frame back.
struct Echo(Handle);

impl Handler for Echo {
    async fn on_recv(&self, id: SessionId, frame: &[u8]) {
        let _ = self.0.send_slice(id, frame);
    }
}

/// Forwards every frame received.
struct Collect(mpsc::UnboundedSender<Vec<u8>>);

impl ClientHandler for Collect {
    async fn on_recv(&self, frame: &[u8]) {
        let _ = self.0.send(frame.to_vec());
    }
}

async fn echo_server(acceptor: TlsAcceptor) -> Handle {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), Lan);
    config.tls = Some(TlsListener {
        bind: "127.0.0.1:0".parse().unwrap(),
        acceptor,
    });
    config.handshake_timeout = Duration::from_millis(500);
    config.max_send_queue = 8 << 20;
    let server = Server::bind(config).await.unwrap();
    let handle = server.handle();
    server.start(Echo(handle.clone()))
}

/// An echo server presenting a fresh self-signed certificate; returns the
/// certificate's directory (kept while it lives), the CA file and the server.
async fn tls_echo() -> (tempfile::TempDir, PathBuf, Handle) {
    let dir = tempfile::tempdir().unwrap();
    let ca = self_signed(dir.path());
    let acceptor = TlsAcceptor::from_pem_files(&ca, dir.path().join("key.pem")).unwrap();
    let handle = echo_server(acceptor).await;
    (dir, ca, handle)
}

async fn tls_client(
    handle: &Handle,
    ca: &Path,
    name: &str,
) -> Result<(Client, mpsc::UnboundedReceiver<Vec<u8>>), NetError> {
    let mut config = ClientConfig::new(handle.tls_addr().unwrap(), Lan);
    config.tls = Some(TlsConnector::from_ca_file(ca, name).unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    Ok((Client::connect(config, Collect(tx)).await?, rx))
}

fn frame(i: u32, size: usize) -> bytes::Bytes {
    let mut payload = vec![(i % 251) as u8; size];
    payload[..4].copy_from_slice(&i.to_le_bytes());
    let mut b = BytesMut::new();
    put_lan_frame(&mut b, &payload);
    b.freeze()
}

/// Sends `n` frames and checks they all come back, in order and intact.
async fn round_trip(client: &Client, rx: &mut mpsc::UnboundedReceiver<Vec<u8>>, n: u32, size: usize) {
    for i in 0..n {
        client.send(frame(i, size)).unwrap();
    }
    for i in 0..n {
        let got = within("an echoed frame", rx.recv()).await.unwrap();
        assert_eq!(got, frame(i, size), "frame {i} came back changed or out of order");
    }
}

#[tokio::test]
async fn frames_cross_tls_intact_and_in_order_beside_plain_tcp() {
    let (_dir, ca, handle) = tls_echo().await;

    // 3 MB each way: many TLS records, partial writes and flushes.
    let (client, mut rx) = tls_client(&handle, &ca, "127.0.0.1").await.unwrap();
    round_trip(&client, &mut rx, 1500, 2000).await;
    // The name form of the certificate works too.
    let (by_name, mut rx2) = tls_client(&handle, &ca, "localhost").await.unwrap();
    round_trip(&by_name, &mut rx2, 10, 100).await;

    // The plain listener of the same server still speaks plain TCP.
    let (tx, mut plain_rx) = mpsc::unbounded_channel();
    let plain = Client::connect(ClientConfig::new(handle.local_addr(), Lan), Collect(tx))
        .await
        .unwrap();
    round_trip(&plain, &mut plain_rx, 10, 100).await;

    let stats = handle.stats();
    assert_eq!(stats.tls_accepted, 2);
    assert_eq!(stats.sessions, 3);
    client.disconnect().await;
    by_name.disconnect().await;
    plain.disconnect().await;
    within("the server to stop", handle.stop(Duration::from_secs(5))).await;
}

#[tokio::test]
async fn a_reloaded_certificate_serves_new_connections_and_keeps_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = dir.path().join("old.pem");
    std::fs::copy(self_signed(dir.path()), &old_ca).unwrap();
    let acceptor =
        TlsAcceptor::from_pem_files(dir.path().join("cert.pem"), dir.path().join("key.pem")).unwrap();
    let handle = echo_server(acceptor.clone()).await;
    let (before, mut before_rx) = tls_client(&handle, &old_ca, "127.0.0.1").await.unwrap();
    round_trip(&before, &mut before_rx, 5, 64).await;

    // A broken file is refused and the current certificate stays.
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    assert!(acceptor.reload().is_err());
    let (still, mut still_rx) = tls_client(&handle, &old_ca, "127.0.0.1").await.unwrap();
    round_trip(&still, &mut still_rx, 1, 64).await;

    let new_ca = self_signed(dir.path());
    acceptor.reload().unwrap();

    // The session from before the reload is still up.
    round_trip(&before, &mut before_rx, 5, 64).await;
    // New connections get the new certificate: trusted by the new CA only.
    let (after, mut after_rx) = tls_client(&handle, &new_ca, "127.0.0.1").await.unwrap();
    round_trip(&after, &mut after_rx, 5, 64).await;
    let refused = tls_client(&handle, &old_ca, "127.0.0.1").await;
    assert!(
        refused.is_err(),
        "a client trusting only the old certificate connected"
    );
    within("the refused handshake to end", async {
        while handle.stats().tls_handshake_failures == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(handle.stats().sessions, 3, "a reload dropped sessions");
    within("the server to stop", handle.stop(Duration::from_secs(5))).await;
}

#[tokio::test]
async fn bad_handshakes_are_dropped_and_counted() {
    let (_dir, ca, handle) = tls_echo().await;
    let tls_addr = handle.tls_addr().unwrap();

    // A client expecting another name refuses the certificate.
    assert!(tls_client(&handle, &ca, "example.com").await.is_err());

    // Plain bytes at the TLS port: closed.
    let mut raw = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    raw.write_all(b"\x05\x00hello plain text").await.unwrap();
    let mut sink = Vec::new();
    within("the server to close a plain client", raw.read_to_end(&mut sink))
        .await
        .ok();

    // A client that never starts its handshake: closed at the timeout.
    let mut silent = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    let n = within("the server to close a silent client", silent.read(&mut [0; 64])).await;
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

    let failures = within("the failures to be counted", async {
        loop {
            let s = handle.stats();
            if s.tls_handshake_failures >= 3 && s.sessions == 0 {
                return s.tls_handshake_failures;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(failures, 3);
    assert_eq!(handle.stats().tls_accepted, 0);

    // And the listener is fine afterwards.
    let (ok, mut ok_rx) = tls_client(&handle, &ca, "127.0.0.1").await.unwrap();
    round_trip(&ok, &mut ok_rx, 3, 64).await;
    within("the server to stop", handle.stop(Duration::from_secs(5))).await;
}

#[tokio::test]
async fn a_peer_that_closes_without_close_notify_is_answered_then_closed() {
    let (_dir, ca, handle) = tls_echo().await;
    let tcp = tokio::net::TcpStream::connect(handle.tls_addr().unwrap())
        .await
        .unwrap();
    let mut tls = TlsConnector::from_ca_file(&ca, "127.0.0.1")
        .unwrap()
        .connect(tcp)
        .await
        .unwrap();
    let mut out = BytesMut::new();
    for i in 0..50 {
        out.extend_from_slice(&frame(i, 100));
    }
    tls.write_all(&out).await.unwrap();
    tls.flush().await.unwrap();
    // Shut the TCP connection's sending side under TLS: no close_notify.
    let plaza_net::Stream::Tls(inner) = &tls else {
        panic!("a TLS stream")
    };
    socket2::SockRef::from(inner.get_ref().0)
        .shutdown(std::net::Shutdown::Write)
        .unwrap();
    let mut got = Vec::new();
    let _ = within("the echoes and the close", tls.read_to_end(&mut got)).await;
    assert_eq!(got, out.to_vec(), "every frame sent before the close is answered");
    within("the server to stop", handle.stop(Duration::from_secs(5))).await;
}
