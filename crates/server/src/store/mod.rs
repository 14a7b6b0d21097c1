//! Account stores: the embedded one (redb in the data directory, the
//! default) and Redis (`--store redis://...`), behind one [`Store`].
//!
//! Both keep accounts (Argon2id hash, roles, created-at), mutes with expiry
//! (a mute survives reconnects and restarts), and resume tokens (stored as a
//! digest, with a TTL). Redis also keeps a logged-in marker per user with a
//! TTL refreshed while the session lives, so duplicate login (31) holds
//! across nodes sharing one Redis.
//!
//! `embedded` and `redis` are the two stores; `hasher` is the password
//! hashing both use; `types` what all three share. Nothing here imports
//! back up: the front ([`Store`]) uses the stores, the stores use the
//! hasher and the types.

mod embedded;
pub(crate) mod hasher;
mod redis;
mod types;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use plaza_core::{AuthOutcome, Credential, RegisterOutcome};

use hasher::Hasher;

pub use embedded::Accounts;
pub use redis::{RedisConfig, RedisStore};
pub use types::{Account, HashCost, StoreError};

/// Who holds a login in a shared store: the node and the session.
pub(crate) fn owner(node: &str, conn: plaza_core::Conn) -> String {
    match conn {
        plaza_core::AWAY => format!("{node}:away"),
        conn => format!("{node}:{conn}"),
    }
}

/// Which store, and its settings.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// redb in the data directory.
    Embedded,
    /// Redis.
    Redis(RedisConfig),
}

/// The account store the server uses.
#[derive(Clone)]
pub enum Store {
    /// Embedded redb.
    Embedded(Arc<Accounts>, u32),
    /// Redis.
    Redis(Arc<RedisStore>),
}

impl Store {
    /// Opens the configured store. Redis is connected lazily: a server can
    /// start while Redis is down, and logins answer 112 until it is back.
    ///
    /// # Errors
    /// If the embedded database cannot be opened or the Redis URL is bad.
    pub fn open(
        config: &StoreConfig,
        data_dir: &Path,
        cost: HashCost,
        token_ttl: u32,
    ) -> Result<Self, StoreError> {
        Ok(match config {
            StoreConfig::Embedded => Self::Embedded(Arc::new(Accounts::open(data_dir, cost)?), token_ttl),
            StoreConfig::Redis(r) => Self::Redis(Arc::new(RedisStore::new(
                r.clone(),
                Hasher::new(cost)?,
                token_ttl,
            )?)),
        })
    }

    /// Checks a password or token and, if valid, marks the name logged in
    /// for `owner`, reads the mute and issues a new resume token.
    pub async fn login(&self, name: String, credential: Credential, owner: String) -> AuthOutcome {
        match self {
            Self::Embedded(a, ttl) => {
                let r = match credential {
                    // A resume skips Argon2 and waits on the token writer.
                    Credential::Token(token) => a.resume(name, token, *ttl).await,
                    // A guest's name must be no account's.
                    Credential::Guest => {
                        let a = a.clone();
                        tokio::task::spawn_blocking(move || a.get(&name))
                            .await
                            .unwrap_or_else(|e| Err(StoreError::Db(format!("guest login task: {e}"))))
                            .map(|account| match account {
                                Some(_) => AuthOutcome::Invalid,
                                None => AuthOutcome::Valid {
                                    admin: false,
                                    mute: None,
                                    token: None,
                                },
                            })
                    }
                    Credential::Password(_) => {
                        let (a, ttl, hasher) = (a.clone(), *ttl, a.hasher.clone());
                        let permit = hasher.permit().await;
                        let r =
                            tokio::task::spawn_blocking(move || a.login_blocking(&name, &credential, ttl))
                                .await
                                .unwrap_or_else(|e| Err(StoreError::Db(format!("login task: {e}"))));
                        drop(permit);
                        r
                    }
                };
                r.unwrap_or_else(|e| {
                    tracing::error!(error = %e, "account store failed a login");
                    AuthOutcome::Unavailable
                })
            }
            Self::Redis(r) => r.login(name, credential, owner).await,
        }
    }

    /// Creates an account.
    pub async fn register(&self, name: String, password: String) -> RegisterOutcome {
        let created = match self {
            Self::Embedded(a, _) => match a.hasher.hash(password).await {
                Ok(hash) => {
                    let a = a.clone();
                    tokio::task::spawn_blocking(move || a.insert_new(&name, hash))
                        .await
                        .map_err(|e| StoreError::Db(e.to_string()))
                        .and_then(|r| r)
                }
                Err(e) => Err(e),
            },
            Self::Redis(r) => r.register(name, password).await,
        };
        match created {
            Ok(true) => RegisterOutcome::Created,
            Ok(false) => RegisterOutcome::NameTaken,
            Err(e) => {
                tracing::error!(error = %e, "account store failed a registration");
                RegisterOutcome::Unavailable
            }
        }
    }

    /// Grants or revokes the admin role (operator command). Returns whether
    /// the account exists.
    ///
    /// # Errors
    /// If the store fails.
    pub async fn set_admin(&self, name: &str, admin: bool) -> Result<bool, StoreError> {
        match self {
            Self::Embedded(a, _) => a.set_admin(name, admin),
            Self::Redis(r) => r.set_admin(name, admin).await,
        }
    }

    /// Creates an account (operator command). Returns `false` if it exists.
    ///
    /// # Errors
    /// If the store fails.
    pub async fn create(&self, name: &str, password: &str) -> Result<bool, StoreError> {
        match self {
            Self::Embedded(a, _) => a.create_blocking(name, password),
            Self::Redis(r) => r.register(name.to_owned(), password.to_owned()).await,
        }
    }

    /// The node `name` is logged in on, from its mark in the shared store
    /// (`None` with the embedded store, which has no other nodes).
    ///
    /// # Errors
    /// If the store fails.
    pub async fn locate(&self, name: &str) -> Result<Option<u64>, StoreError> {
        match self {
            Self::Embedded(..) => Ok(None),
            Self::Redis(r) => r.locate(name).await,
        }
    }

    /// Passes `name`'s logged-in mark from `owner` to `away` (this node's
    /// mark for a user who is away), if `owner` holds it.
    pub async fn away(&self, name: String, owner: String, away: String) {
        if let Self::Redis(r) = self {
            r.away(&name, &owner, &away).await;
        }
    }

    /// Clears `name`'s logged-in mark if `owner` holds it.
    pub async fn release(&self, name: String, owner: String) {
        if let Self::Redis(r) = self {
            r.release(&name, &owner).await;
        }
    }

    /// Keeps alive the logged-in marks of these (name, session) pairs of
    /// `node`, those it still holds.
    pub async fn refresh(&self, node: &str, entries: Vec<(Arc<str>, u64)>) {
        if let Self::Redis(r) = self {
            r.refresh(node, entries).await;
        }
    }

    /// Persists a mute (`seconds` as in MUTE_REQUEST; 0 lifts it). The
    /// embedded store takes it before this returns, so the name's next
    /// login sees it; Redis is written in the background.
    pub fn set_mute(&self, name: String, seconds: u32) {
        let report = |e: StoreError| {
            tracing::error!(error = %e, "could not persist a mute (it holds on this node until restart)");
        };
        match self {
            Self::Embedded(a, _) => a.set_mute(&name, seconds).unwrap_or_else(report),
            Self::Redis(r) => {
                let r = r.clone();
                tokio::spawn(async move { r.set_mute(&name, seconds).await.unwrap_or_else(report) });
            }
        }
    }

    /// Store health as last seen (never waits on the store).
    pub fn health(&self) -> Result<(), String> {
        match self {
            Self::Embedded(a, _) => a.health().map_err(|e| e.to_string()),
            Self::Redis(r) => r.health(),
        }
    }

    /// How often logged-in marks must be refreshed, if at all.
    pub fn refresh_every(&self) -> Option<Duration> {
        match self {
            Self::Embedded(..) => None,
            Self::Redis(r) => Some(r.refresh_every()),
        }
    }

    /// Starts background upkeep (Redis health probing).
    pub fn spawn_upkeep(&self) {
        if let Self::Redis(r) = self {
            tokio::spawn(redis::probe_health(Arc::downgrade(r)));
        }
    }
}
