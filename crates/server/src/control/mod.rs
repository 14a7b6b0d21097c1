//! The operators' control link: a LAN-framed request/response listener,
//! separate from the user listener and its limits (bound to 127.0.0.1 by
//! default), that takes JSON commands after a shared-secret check.
//!
//! Requests and responses are JSON objects in link messages
//! ([`plaza_net::link`]). The first request of a connection must be
//! `{"cmd":"auth","secret":"..."}`; anything else, or a wrong secret, gets
//! an error and the connection is closed. docs/OPERATIONS.md lists every
//! command.

mod status;

pub use status::{BusCounts, ClusterStatus, SlowRoom, Status, TlsStatus, WsStatus};

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use plaza_net::link::{LinkHandler, Response};
use plaza_net::{Handle, SessionId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// A control command.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Command {
    /// Authenticate the connection (must come first).
    Auth {
        /// The shared secret.
        secret: String,
    },
    /// Uptime, sessions, users, rooms, rates, queue depths, store health.
    Status,
    /// Logged-in users.
    Users,
    /// Rooms in use with their members.
    Rooms,
    /// One user: room, address, send-queue bytes, mute.
    User {
        /// Account name.
        name: String,
    },
    /// Disconnect a user (it is told; its room sees it leave).
    Kick {
        /// Account name.
        name: String,
    },
    /// Mute a user for `seconds` (`4294967295`: indefinitely).
    Mute {
        /// Account name.
        name: String,
        /// Duration.
        seconds: u32,
    },
    /// Slow mode: members of `room` may send one message per `seconds`
    /// (0 turns it off). Per node.
    Slow {
        /// Room number.
        room: u32,
        /// Interval.
        seconds: u64,
    },
    /// Lift a mute.
    Unmute {
        /// Account name.
        name: String,
    },
    /// Send a server notice to everyone, or to one room.
    Notice {
        /// Room number; absent for everyone.
        #[serde(default)]
        room: Option<u32>,
        /// Text (at most 1024 bytes).
        message: String,
        /// Only this node's users (in cluster mode a notice reaches every
        /// node's).
        #[serde(default)]
        local: bool,
    },
    /// Refuse new logins, count down with notices, then shut down.
    Drain {
        /// Seconds before the shutdown.
        seconds: u64,
        /// Every node of the cluster, not just this one.
        #[serde(default)]
        cluster: bool,
    },
    /// Shut down gracefully now.
    Shutdown,
    /// Read the TLS certificate and key files again (as SIGHUP does).
    ReloadTls,
}

/// A control response: `{"ok":true,"data":...}` or `{"ok":false,"error":"..."}`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Reply {
    /// Whether the command succeeded.
    pub ok: bool,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The command's result.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

impl Reply {
    /// Success with `data`.
    pub fn ok(data: Value) -> Self {
        Self {
            ok: true,
            error: None,
            data,
        }
    }
    /// Failure.
    pub fn err(error: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(error.into()),
            data: Value::Null,
        }
    }
}

/// A command on its way to the logic task, with where to answer.
pub(crate) type ControlMsg = (Command, oneshot::Sender<Reply>);

/// The control listener's request handler.
pub(crate) struct Control {
    pub(crate) tx: mpsc::Sender<ControlMsg>,
    pub(crate) secret: String,
    pub(crate) authed: Mutex<HashSet<SessionId>>,
    pub(crate) handle: Handle,
}

impl Control {
    /// The reply, and whether to close the link after it.
    async fn answer(&self, id: SessionId, body: &[u8]) -> (Reply, bool) {
        let command: Command = match serde_json::from_slice(body) {
            Ok(c) => c,
            Err(e) => return (Reply::err(format!("bad command: {e}")), false),
        };
        let authed = self
            .authed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id);
        if let Command::Auth { secret } = &command {
            if plaza_core::constant_time_eq(secret.as_bytes(), self.secret.as_bytes()) {
                self.authed.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
                return (Reply::ok(json!("authenticated")), false);
            }
            tracing::warn!(session = %id, peer = ?self.handle.peer_addr(id), "control: wrong secret");
            return (Reply::err("authentication failed"), true);
        }
        if !authed {
            return (Reply::err("authenticate first"), true);
        }
        let (tx, rx) = oneshot::channel();
        if self.tx.send((command, tx)).await.is_err() {
            return (Reply::err("server is stopping"), false);
        }
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(r)) => (r, false),
            _ => (Reply::err("no answer from the server logic"), false),
        }
    }
}

impl LinkHandler for Control {
    async fn on_request(&self, id: SessionId, body: &[u8]) -> Response {
        let (reply, close) = self.answer(id, body).await;
        Response {
            body: serde_json::to_vec(&reply).expect("reply serialises"),
            close,
        }
    }
    async fn on_leave(&self, id: SessionId) {
        self.authed.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
    fn on_connection_request(&self, peer: SocketAddr) -> bool {
        tracing::debug!(%peer, "control connection");
        true
    }
}

/// Reads the control secret from `file`, or from `PLAZA_CONTROL_SECRET`, or
/// else from `data_dir/control.secret`, creating that file (mode 0600) with
/// a random secret the first time.
///
/// # Errors
/// If a file cannot be read or created.
pub fn load_secret(file: Option<&std::path::Path>, data_dir: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context;
    if let Some(f) = file {
        let s = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        return Ok(s.trim().to_owned());
    }
    if let Ok(s) = std::env::var("PLAZA_CONTROL_SECRET") {
        if !s.is_empty() {
            return Ok(s);
        }
    }
    let path = data_dir.join("control.secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        return Ok(s.trim().to_owned());
    }
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut raw = [0u8; 24];
    OsRng.fill_bytes(&mut raw);
    let secret = crate::store::hasher::hex(&raw);
    std::fs::create_dir_all(data_dir)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    use std::io::Write;
    opts.open(&path)
        .and_then(|mut f| f.write_all(format!("{secret}\n").as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated the control secret");
    Ok(secret)
}
