//! The WebSocket listener's HTTP: the web client at `/` (page, script and
//! style built into the binary) and the upgrade to WebSocket at `/ws`.
//!
//! Served by hyper as the connection's preamble (`plaza_net::Preamble`):
//! once a request is upgraded, the stream goes back to plaza-net and
//! carries WebSocket frames. An upgrade needs `Sec-WebSocket-Version: 13`,
//! the subprotocol `plaza.v1`, and an allowed `Origin` (by default the
//! page's own: the `Host` the request was sent to); requests without an
//! `Origin` come from programs, not pages, and are let in. Credentials
//! never travel in the URL: login is the protocol's own packet.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use plaza_net::{Preamble, PreambleFuture, Stream};

use super::SUBPROTOCOL;

/// The web client, built in: nothing is fetched at run time.
const PAGES: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../../web/index.html"),
    ),
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_str!("../../../web/index.html"),
    ),
    (
        "/plaza.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/plaza.js"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../../../web/style.css"),
    ),
];

/// Time to send a request's head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Which pages may open a WebSocket here.
#[derive(Clone, Debug)]
pub(crate) enum Origins {
    /// Only the page's own origin (`Origin` names the `Host` asked).
    Same,
    /// Any origin (`*`).
    Any,
    /// The same origin, or one of these (`scheme://host[:port]`, lower case).
    List(Vec<String>),
}

impl Origins {
    /// From `--ws-allowed-origins`: empty for the same origin only, `*`
    /// for any, or a list.
    pub(crate) fn parse(list: &[String]) -> Self {
        if list.iter().any(|o| o == "*") {
            return Self::Any;
        }
        match list.is_empty() {
            true => Self::Same,
            false => Self::List(
                list.iter()
                    .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                    .collect(),
            ),
        }
    }

    /// Whether a page from `origin` may connect to `host`.
    fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.to_ascii_lowercase();
        let same = || {
            let authority = origin.split_once("://").map_or("", |(_, a)| a);
            host.is_some_and(|h| h.eq_ignore_ascii_case(authority))
        };
        match self {
            Self::Any => true,
            Self::Same => same(),
            Self::List(list) => same() || list.contains(&origin),
        }
    }
}

/// The preamble of every connection to the WebSocket listener.
#[derive(Clone, Debug)]
pub(crate) struct Web {
    pub(crate) origins: Arc<Origins>,
}

impl Preamble for Web {
    fn run(&self, stream: Stream, peer: SocketAddr) -> PreambleFuture {
        Box::pin(serve(self.clone(), stream, peer))
    }
}

/// Serves requests until one is upgraded (the stream goes back for its
/// WebSocket session) or the connection ends (`None`).
async fn serve(web: Web, stream: Stream, peer: SocketAddr) -> Option<Stream> {
    let upgrade: Arc<Mutex<Option<OnUpgrade>>> = Arc::default();
    let slot = upgrade.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let answer = web.answer(&mut req, peer);
        if answer.status() == StatusCode::SWITCHING_PROTOCOLS {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(hyper::upgrade::on(req));
        }
        async move { Ok::<_, Infallible>(answer) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "web connection ended");
    }
    let pending = upgrade.lock().unwrap_or_else(|p| p.into_inner()).take()?;
    let parts = pending.await.ok()?.downcast::<TokioIo<Stream>>().ok()?;
    if !parts.read_buf.is_empty() {
        // RFC 6455 §4.1: a client waits for the answer before it sends.
        tracing::info!(%peer, "websocket refused: frames sent before the upgrade was answered");
        return None;
    }
    Some(parts.io.into_inner())
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn refuse(status: StatusCode, why: &'static str, peer: SocketAddr) -> Answer {
    tracing::info!(%peer, status = status.as_u16(), reason = why, "websocket upgrade refused");
    answer(status, "text/plain; charset=utf-8", format!("{why}\n"))
}

/// Whether a comma-separated header holds `token` (case-insensitively).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl Web {
    fn answer(&self, req: &mut Request<Incoming>, peer: SocketAddr) -> Answer {
        if req.uri().path() == "/ws" {
            return self.upgrade(req, peer);
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return answer(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
        }
        match PAGES.iter().find(|(path, ..)| *path == req.uri().path()) {
            Some((_, kind, body)) => {
                let mut r = answer(StatusCode::OK, kind, *body);
                let h = r.headers_mut();
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                h.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'",
                    ),
                );
                r
            }
            None => answer(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    }

    fn upgrade(&self, req: &Request<Incoming>, peer: SocketAddr) -> Answer {
        let h = req.headers();
        if req.method() != Method::GET
            || !has_token(h, header::UPGRADE, "websocket")
            || !has_token(h, header::CONNECTION, "upgrade")
        {
            return refuse(
                StatusCode::BAD_REQUEST,
                "a WebSocket upgrade (GET, Upgrade: websocket) expected",
                peer,
            );
        }
        if h.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
            let mut r = refuse(
                StatusCode::UPGRADE_REQUIRED,
                "Sec-WebSocket-Version 13 expected",
                peer,
            );
            r.headers_mut()
                .insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            return r;
        }
        let Some(key) = h.get(header::SEC_WEBSOCKET_KEY).and_then(|k| k.to_str().ok()) else {
            return refuse(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key missing", peer);
        };
        if let Some(origin) = h.get(header::ORIGIN) {
            let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
            if !origin.to_str().is_ok_and(|o| self.origins.allows(o, host)) {
                return refuse(StatusCode::FORBIDDEN, "this page's origin may not connect", peer);
            }
        }
        if !has_token(h, header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL) {
            return refuse(StatusCode::BAD_REQUEST, "subprotocol plaza.v1 expected", peer);
        }
        let accept = plaza_net::ws::accept_key(key);
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let out = r.headers_mut();
        out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        out.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        out.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
        if let Ok(v) = HeaderValue::from_str(&accept) {
            out.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_same_listed_and_any() {
        let host = Some("127.0.0.1:7780");
        let same = Origins::parse(&[]);
        assert!(same.allows("http://127.0.0.1:7780", host));
        assert!(same.allows("HTTPS://127.0.0.1:7780", host));
        assert!(!same.allows("http://evil.example", host));
        assert!(!same.allows("null", host));
        assert!(!same.allows("http://127.0.0.1:7780", None));
        let listed = Origins::parse(&["https://chat.example.com/".into()]);
        assert!(listed.allows("https://chat.example.com", host));
        assert!(listed.allows("http://127.0.0.1:7780", host));
        assert!(!listed.allows("http://chat.example.com", host));
        assert!(Origins::parse(&["*".into()]).allows("http://anything", None));
    }
}
