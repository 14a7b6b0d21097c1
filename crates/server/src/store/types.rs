//! What both stores and the hasher share: errors, the hash cost, the
//! account record, the clock.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or used.
    #[error("database: {0}")]
    Db(String),
    /// Password hashing failed.
    #[error("password hashing: {0}")]
    Hash(String),
    /// A stored record could not be read.
    #[error("corrupt record for {0}")]
    Corrupt(String),
    /// Redis failed or did not answer in time.
    #[error("redis: {0}")]
    Redis(String),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(impl From<$t> for StoreError {
        fn from(e: $t) -> Self { Self::Db(e.to_string()) }
    })*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug)]
pub struct HashCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
}

impl Default for HashCost {
    /// OWASP's minimum for Argon2id: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
        }
    }
}

/// An account as the embedded store keeps it (JSON, keyed by name).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Account {
    /// Argon2id PHC string.
    pub hash: String,
    /// Roles granted by operators ("admin").
    #[serde(default)]
    pub roles: Vec<String>,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

impl Account {
    pub(crate) fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
