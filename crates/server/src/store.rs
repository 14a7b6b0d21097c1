//! The embedded account store: accounts in a redb database in the data
//! directory, passwords as Argon2id hashes (PHC strings).
//!
//! Every call that touches the disk or hashes a password runs on tokio's
//! blocking pool, behind a semaphore of one permit per core, so a login flood
//! queues here instead of starving the network threads or exhausting memory
//! (each Argon2 hash holds its memory cost while it runs).

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use plaza_core::{AuthOutcome, RegisterOutcome};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

const ACCOUNTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("accounts");

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
    #[error("corrupt account record for {0}")]
    Corrupt(String),
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

/// An account as stored (JSON in the `accounts` table, keyed by name).
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
    fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }
}

/// The embedded account store.
pub struct Accounts {
    db: Database,
    argon: Argon2<'static>,
    /// Hash of a random password, verified against when the name is unknown
    /// so that unknown and known names take the same time.
    decoy: String,
    hashing: Semaphore,
}

impl Accounts {
    /// Opens (or creates) the database in `dir`.
    ///
    /// # Errors
    /// If the directory or database cannot be created or opened, for
    /// example because another process has it open.
    pub fn open(dir: &Path, cost: HashCost) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(format!("{}: {e}", dir.display())))?;
        let db = Database::create(dir.join("accounts.redb"))?;
        {
            let tx = db.begin_write()?;
            tx.open_table(ACCOUNTS)?;
            tx.commit()?;
        }
        let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
            .map_err(|e| StoreError::Hash(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let decoy = hash(&argon, "decoy password never used")?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            db,
            argon,
            decoy,
            hashing: Semaphore::new(cores),
        })
    }

    fn get(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(ACCOUNTS)?;
        let Some(v) = table.get(name)? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|_| StoreError::Corrupt(name.to_owned()))
    }

    /// Checks a password (blocking).
    ///
    /// # Errors
    /// If the database cannot be read.
    pub fn verify_blocking(&self, name: &str, password: &str) -> Result<Option<Account>, StoreError> {
        let account = self.get(name)?;
        let stored = account.as_ref().map_or(self.decoy.as_str(), |a| a.hash.as_str());
        let parsed = PasswordHash::new(stored).map_err(|_| StoreError::Corrupt(name.to_owned()))?;
        let ok = self.argon.verify_password(password.as_bytes(), &parsed).is_ok();
        Ok(account.filter(|_| ok))
    }

    /// Creates an account (blocking). Returns `false` if the name is taken.
    ///
    /// # Errors
    /// If hashing or the database fails.
    pub fn create_blocking(&self, name: &str, password: &str) -> Result<bool, StoreError> {
        let record = Account {
            hash: hash(&self.argon, password)?,
            roles: Vec::new(),
            created_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let bytes = serde_json::to_vec(&record).expect("account serialises");
        let tx = self.db.begin_write()?;
        let created = {
            let mut table = tx.open_table(ACCOUNTS)?;
            // Check and insert in one write transaction: redb serialises
            // writers, so two racing registrations cannot both succeed.
            if table.get(name)?.is_some() {
                false
            } else {
                table.insert(name, bytes.as_slice())?;
                true
            }
        };
        tx.commit()?;
        Ok(created)
    }

    /// Grants or revokes the admin role (blocking). Returns `false` if the
    /// account does not exist.
    ///
    /// # Errors
    /// If the database fails.
    pub fn set_admin(&self, name: &str, admin: bool) -> Result<bool, StoreError> {
        let tx = self.db.begin_write()?;
        let found = {
            let mut table = tx.open_table(ACCOUNTS)?;
            let current = match table.get(name)? {
                Some(v) => serde_json::from_slice::<Account>(v.value())
                    .map_err(|_| StoreError::Corrupt(name.to_owned()))?,
                None => return Ok(false),
            };
            let mut account = current;
            account.roles.retain(|r| r != "admin");
            if admin {
                account.roles.push("admin".into());
            }
            let bytes = serde_json::to_vec(&account).expect("account serialises");
            table.insert(name, bytes.as_slice())?;
            true
        };
        tx.commit()?;
        Ok(found)
    }

    /// Whether the database answers a read.
    ///
    /// # Errors
    /// The database's error.
    pub fn health(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_read()?;
        tx.open_table(ACCOUNTS)?;
        Ok(())
    }

    /// Checks credentials off the async threads.
    pub async fn verify(self: &Arc<Self>, name: String, password: String) -> AuthOutcome {
        let Ok(_permit) = self.hashing.acquire().await else {
            return AuthOutcome::Unavailable;
        };
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.verify_blocking(&name, &password)).await {
            Ok(Ok(Some(account))) => AuthOutcome::Valid {
                admin: account.is_admin(),
            },
            Ok(Ok(None)) => AuthOutcome::Invalid,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "account store failed a credential check");
                AuthOutcome::Unavailable
            }
            Err(e) => {
                tracing::error!(error = %e, "credential check task failed");
                AuthOutcome::Unavailable
            }
        }
    }

    /// Creates an account off the async threads.
    pub async fn register(self: &Arc<Self>, name: String, password: String) -> RegisterOutcome {
        let Ok(_permit) = self.hashing.acquire().await else {
            return RegisterOutcome::Unavailable;
        };
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.create_blocking(&name, &password)).await {
            Ok(Ok(true)) => RegisterOutcome::Created,
            Ok(Ok(false)) => RegisterOutcome::NameTaken,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "account store failed a registration");
                RegisterOutcome::Unavailable
            }
            Err(e) => {
                tracing::error!(error = %e, "registration task failed");
                RegisterOutcome::Unavailable
            }
        }
    }
}

fn hash(argon: &Argon2<'_>, password: &str) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut OsRng);
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Hash(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashCost = HashCost {
        memory_kib: 64,
        iterations: 1,
    };

    #[test]
    fn accounts_survive_reopening_and_hashes_are_argon2id() {
        let dir = tempfile::tempdir().unwrap();
        {
            let a = Accounts::open(dir.path(), CHEAP).unwrap();
            assert!(a.create_blocking("amy", "pw1").unwrap());
            assert!(!a.create_blocking("amy", "other").unwrap(), "name taken");
            assert!(a.set_admin("amy", true).unwrap());
            assert!(!a.set_admin("nobody", true).unwrap());
        }
        let a = Accounts::open(dir.path(), CHEAP).unwrap();
        let acc = a.verify_blocking("amy", "pw1").unwrap().expect("valid");
        assert!(acc.hash.starts_with("$argon2id$"));
        assert!(acc.is_admin());
        assert!(a.verify_blocking("amy", "wrong").unwrap().is_none());
        assert!(a.verify_blocking("nobody", "pw1").unwrap().is_none());
    }
}
