//! Account stores: the embedded one (redb in the data directory, the
//! default) and Redis (`--store redis://...`), behind one [`Store`].
//!
//! Both keep accounts (Argon2id hash, roles, created-at), mutes with expiry
//! (a mute survives reconnects and restarts), and resume tokens (stored as a
//! digest, with a TTL). Redis also keeps a logged-in marker per user with a
//! TTL refreshed while the session lives, so duplicate login (31) holds
//! across nodes sharing one Redis.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use plaza_core::{AuthOutcome, Credential, RegisterOutcome};
use redb::{Database, Durability, ReadableTable, Table, TableDefinition};
use serde::{Deserialize, Serialize};
use std::sync::mpsc;
use tokio::sync::oneshot;

use crate::hasher::{Hasher, new_token, token_digest};
use crate::redis_store::RedisStore;

const ACCOUNTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("accounts");
/// Muted account name → end of the mute in Unix seconds (0: indefinite).
const MUTES: TableDefinition<'_, &str, u64> = TableDefinition::new("mutes");
/// Token digest → (account name, expiry in Unix seconds) as JSON.
const TOKENS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("tokens");

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

/// The embedded account store.
pub struct Accounts {
    db: Arc<Database>,
    pub(crate) hasher: Arc<Hasher>,
    /// The token writer's queue; `None` once dropped, which stops it.
    tokens: Option<mpsc::Sender<TokenJob>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// Token writes reach the disk within about this long (and at a clean stop).
const TOKEN_SYNC: Duration = Duration::from_secs(1);

/// At most this many token writes share one transaction.
const TOKEN_BATCH: usize = 1024;

/// The embedded store's page cache. Pages it does not hold are read again
/// from the file, which the kernel's page cache serves: 4 MiB against 16
/// took 0.4 KiB off each of 19,000 idle connections, with setups and
/// logins per second unchanged (docs/BENCHMARKS.md, "jemalloc").
const DB_CACHE_BYTES: usize = 4 << 20;

impl Accounts {
    /// Opens (or creates) the database in `dir`.
    ///
    /// # Errors
    /// If the directory or database cannot be created or opened, for
    /// example because another process has it open.
    pub fn open(dir: &Path, cost: HashCost) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(format!("{}: {e}", dir.display())))?;
        // redb's page cache defaults to 1 GiB; accounts are small and hot
        // entries few, so bound it (RSS stays flat under login churn).
        let db = Database::builder()
            .set_cache_size(DB_CACHE_BYTES)
            .create(dir.join("accounts.redb"))?;
        let tx = db.begin_write()?;
        tx.open_table(ACCOUNTS)?;
        tx.open_table(MUTES)?;
        tx.open_table(TOKENS)?;
        tx.commit()?;
        let db = Arc::new(db);
        let (tokens, jobs) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("plaza-tokens".into())
            .spawn({
                let db = db.clone();
                move || write_tokens(&db, &jobs)
            })
            .map_err(|e| StoreError::Db(format!("token writer thread: {e}")))?;
        Ok(Self {
            db,
            hasher: Hasher::new(cost)?,
            tokens: Some(tokens),
            writer: Some(writer),
        })
    }

    fn get(&self, name: &str) -> Result<Option<Account>, StoreError> {
        account_in(&self.db.begin_read()?.open_table(ACCOUNTS)?, name)
    }

    /// Checks a password (blocking).
    ///
    /// # Errors
    /// If the database cannot be read.
    pub fn verify_blocking(&self, name: &str, password: &str) -> Result<Option<Account>, StoreError> {
        let account = self.get(name)?;
        let ok = self
            .hasher
            .verify_blocking(password, account.as_ref().map(|a| a.hash.as_str()));
        Ok(account.filter(|_| ok))
    }

    /// Creates an account (blocking). Returns `false` if the name is taken.
    ///
    /// # Errors
    /// If hashing or the database fails.
    pub fn create_blocking(&self, name: &str, password: &str) -> Result<bool, StoreError> {
        let hash = self.hasher.hash_blocking(password)?;
        self.insert_new(name, hash)
    }

    fn insert_new(&self, name: &str, hash: String) -> Result<bool, StoreError> {
        let record = Account {
            hash,
            roles: Vec::new(),
            created_at: unix_now(),
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
        {
            let mut table = tx.open_table(ACCOUNTS)?;
            let mut account = match table.get(name)? {
                Some(v) => serde_json::from_slice::<Account>(v.value())
                    .map_err(|_| StoreError::Corrupt(name.to_owned()))?,
                None => return Ok(false),
            };
            account.roles.retain(|r| r != "admin");
            if admin {
                account.roles.push("admin".into());
            }
            let bytes = serde_json::to_vec(&account).expect("account serialises");
            table.insert(name, bytes.as_slice())?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// The account's mute: `None` not muted, `Some(None)` indefinitely.
    #[cfg(test)]
    fn mute_of(&self, name: &str) -> Result<Option<Option<Duration>>, StoreError> {
        mute_in(&self.db.begin_read()?.open_table(MUTES)?, name)
    }

    fn set_mute(&self, name: &str, seconds: u32) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(MUTES)?;
            match seconds {
                0 => {
                    t.remove(name)?;
                }
                u32::MAX => {
                    t.insert(name, 0)?;
                }
                s => {
                    t.insert(name, unix_now() + u64::from(s))?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Hands a login to the token writer: `Some(token)` a resume, `None` a
    /// password login already checked.
    fn token_job(
        &self,
        name: String,
        token: Option<String>,
        ttl: u32,
    ) -> oneshot::Receiver<Result<AuthOutcome, StoreError>> {
        let (reply, answer) = oneshot::channel();
        if let Some(tokens) = &self.tokens {
            // A send fails only if the writer is gone; then `answer` reports it.
            let _ = tokens.send(TokenJob {
                name,
                token,
                ttl,
                reply,
            });
        }
        answer
    }

    /// A resume, waiting for the token writer without holding a thread.
    async fn resume(&self, name: String, token: String, ttl: u32) -> Result<AuthOutcome, StoreError> {
        writer_answer(self.token_job(name, Some(token), ttl).await)
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

    fn login_blocking(
        &self,
        name: &str,
        credential: &Credential,
        token_ttl: u32,
    ) -> Result<AuthOutcome, StoreError> {
        let token = match credential {
            Credential::Password(p) => {
                if self.verify_blocking(name, p)?.is_none() {
                    return Ok(AuthOutcome::Invalid);
                }
                None
            }
            Credential::Token(t) => Some(t.clone()),
        };
        writer_answer(self.token_job(name.to_owned(), token, token_ttl).blocking_recv())
    }
}

/// A login for the token writer to finish: swap a resume's token for a new
/// one, or give a password login its first; then read the account's roles
/// and mute, in the same transaction.
struct TokenJob {
    name: String,
    /// The token presented; `None`: a password login, checked already.
    token: Option<String>,
    ttl: u32,
    reply: oneshot::Sender<Result<AuthOutcome, StoreError>>,
}

fn writer_answer(
    answer: Result<Result<AuthOutcome, StoreError>, oneshot::error::RecvError>,
) -> Result<AuthOutcome, StoreError> {
    answer.unwrap_or_else(|_| Err(StoreError::Db("the token writer has stopped".into())))
}

/// The token writer: one thread that owns the token table's writes and
/// commits every job waiting in one transaction (group commit). redb runs
/// one write transaction at a time, so a transaction per resume made a
/// reconnect storm queue on commits; this pays one commit per batch.
///
/// Commits are in memory (redb's `Durability::None`); they reach the disk
/// with a durable commit at most [`TOKEN_SYNC`] after the first of them
/// (or when the store closes). A crash (or `kill -9`) may so lose the
/// tokens of the last second: those clients log in with their password. An
/// fsync per token is what would otherwise bound a reconnect storm.
fn write_tokens(db: &Database, jobs: &mpsc::Receiver<TokenJob>) {
    // When the oldest commit not yet on disk was made.
    let mut unsynced: Option<Instant> = None;
    loop {
        let first = match unsynced {
            None => jobs.recv().ok(),
            Some(since) => match jobs.recv_timeout(TOKEN_SYNC.saturating_sub(since.elapsed())) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    sync(db);
                    unsynced = None;
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            },
        };
        let Some(first) = first else { break };
        let batch: Vec<TokenJob> = std::iter::once(first)
            .chain(jobs.try_iter().take(TOKEN_BATCH - 1))
            .collect();
        let durable = unsynced.is_some_and(|since| since.elapsed() >= TOKEN_SYNC);
        match commit_tokens(db, &batch, durable) {
            Ok(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    // A requester that has gone away no longer needs its answer.
                    let _ = job.reply.send(Ok(outcome));
                }
                unsynced = if durable {
                    None
                } else {
                    unsynced.or_else(|| Some(Instant::now()))
                };
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "account store: token writes failed");
                for job in batch {
                    let _ = job.reply.send(Err(StoreError::Db(e.to_string())));
                }
            }
        }
    }
    if unsynced.is_some() {
        sync(db);
    }
}

/// Applies `batch` in one write transaction; one outcome per job, in order.
fn commit_tokens(db: &Database, batch: &[TokenJob], durable: bool) -> Result<Vec<AuthOutcome>, StoreError> {
    let mut tx = db.begin_write()?;
    tx.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    });
    let outcomes = {
        let mut tokens = tx.open_table(TOKENS)?;
        let accounts = tx.open_table(ACCOUNTS)?;
        let mutes = tx.open_table(MUTES)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for job in batch {
            let valid = match &job.token {
                Some(t) => take_token(&mut tokens, &job.name, t)?,
                None => true,
            };
            let account = if valid {
                account_in(&accounts, &job.name)?
            } else {
                None
            };
            outcomes.push(match account {
                None => AuthOutcome::Invalid,
                Some(account) => AuthOutcome::Valid {
                    admin: account.is_admin(),
                    mute: mute_in(&mutes, &job.name)?,
                    token: Some((insert_token(&mut tokens, &job.name, job.ttl)?, job.ttl)),
                },
            });
        }
        outcomes
    };
    tx.commit()?;
    Ok(outcomes)
}

/// Makes what earlier token commits left in memory durable.
fn sync(db: &Database) {
    let r = db.begin_write().map_err(StoreError::from).and_then(|mut tx| {
        tx.set_durability(Durability::Immediate);
        Ok(tx.commit()?)
    });
    if let Err(e) = r {
        tracing::warn!("account store: the last resume tokens were not written: {e}");
    }
}

fn account_in(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<Option<Account>, StoreError> {
    let Some(v) = t.get(name)? else {
        return Ok(None);
    };
    serde_json::from_slice(v.value())
        .map(Some)
        .map_err(|_| StoreError::Corrupt(name.to_owned()))
}

/// The account's mute: `None` not muted, `Some(None)` indefinitely.
fn mute_in(
    t: &impl ReadableTable<&'static str, u64>,
    name: &str,
) -> Result<Option<Option<Duration>>, StoreError> {
    let Some(until) = t.get(name)?.map(|v| v.value()) else {
        return Ok(None);
    };
    Ok(match until {
        0 => Some(None),
        t if t > unix_now() => Some(Some(Duration::from_secs(t - unix_now()))),
        _ => None,
    })
}

fn insert_token(t: &mut Table<'_, &str, &[u8]>, name: &str, ttl: u32) -> Result<String, StoreError> {
    let token = new_token();
    let record = serde_json::to_vec(&(name, unix_now() + u64::from(ttl))).expect("serialises");
    t.insert(token_digest(&token).as_str(), record.as_slice())?;
    Ok(token)
}

/// Removes `token`; whether it was `name`'s and unexpired.
fn take_token(t: &mut Table<'_, &str, &[u8]>, name: &str, token: &str) -> Result<bool, StoreError> {
    let removed = t.remove(token_digest(token).as_str())?;
    Ok(removed
        .and_then(|v| serde_json::from_slice::<(String, u64)>(v.value()).ok())
        .is_some_and(|(owner, expires)| owner == name && expires > unix_now()))
}

impl Drop for Accounts {
    /// Stops the token writer once it has committed (durably) what it was given.
    fn drop(&mut self) {
        self.tokens = None;
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("account store: the token writer panicked");
        }
    }
}

/// Which store, and its settings.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// redb in the data directory.
    Embedded,
    /// Redis.
    Redis(crate::redis_store::RedisConfig),
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

    /// Clears `name`'s logged-in mark if `owner` holds it.
    pub async fn release(&self, name: String, owner: String) {
        if let Self::Redis(r) = self {
            r.release(&name, &owner).await;
        }
    }

    /// Keeps the logged-in marks of these (name, owner) pairs alive.
    pub async fn refresh(&self, node: &str, entries: Vec<(Arc<str>, u64)>) {
        if let Self::Redis(r) = self {
            r.refresh(node, entries).await;
        }
    }

    /// Persists a mute (`seconds` as in MUTE_REQUEST; 0 lifts it).
    pub async fn set_mute(&self, name: String, seconds: u32) {
        let r = match self {
            Self::Embedded(a, _) => {
                let a = a.clone();
                tokio::task::spawn_blocking(move || a.set_mute(&name, seconds))
                    .await
                    .map_err(|e| StoreError::Db(e.to_string()))
                    .and_then(|r| r)
            }
            Self::Redis(r) => r.set_mute(&name, seconds).await,
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "could not persist a mute (it holds on this node until restart)");
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
            tokio::spawn(crate::redis_store::probe_health(Arc::downgrade(r)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashCost = HashCost {
        memory_kib: 64,
        iterations: 1,
    };

    impl Accounts {
        /// A new token for `name`, as a password login gets.
        fn issue_token(&self, name: &str, ttl: u32) -> String {
            match writer_answer(self.token_job(name.into(), None, ttl).blocking_recv()).unwrap() {
                AuthOutcome::Valid {
                    token: Some((t, _)), ..
                } => t,
                other => panic!("no token for {name}: {other:?}"),
            }
        }

        /// Redeems (and so consumes) a token for `name`.
        fn redeem_token(&self, name: &str, token: &str) -> bool {
            let outcome = self.login_blocking(name, &Credential::Token(token.into()), 600);
            matches!(outcome.unwrap(), AuthOutcome::Valid { .. })
        }
    }

    #[test]
    fn accounts_mutes_and_tokens_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (token, kept) = {
            let a = Accounts::open(dir.path(), CHEAP).unwrap();
            assert!(a.create_blocking("amy", "pw1").unwrap());
            assert!(!a.create_blocking("amy", "other").unwrap(), "name taken");
            assert!(a.set_admin("amy", true).unwrap());
            assert!(!a.set_admin("nobody", true).unwrap());
            a.set_mute("amy", 3600).unwrap();
            (a.issue_token("amy", 600), a.issue_token("amy", 600))
        };
        let a = Accounts::open(dir.path(), CHEAP).unwrap();
        let acc = a.verify_blocking("amy", "pw1").unwrap().expect("valid");
        assert!(acc.hash.starts_with("$argon2id$"));
        assert!(acc.is_admin());
        assert!(a.verify_blocking("amy", "wrong").unwrap().is_none());
        assert!(a.verify_blocking("nobody", "pw1").unwrap().is_none());
        assert!(matches!(a.mute_of("amy").unwrap(), Some(Some(d)) if d.as_secs() > 3500));
        assert!(!a.redeem_token("bob", &token), "a token is bound to its name");
        assert!(!a.redeem_token("amy", &token), "and is used up by a wrong name");
        assert!(a.redeem_token("amy", &kept), "tokens outlive a clean stop");
        assert!(!a.redeem_token("amy", &kept), "a token is single-use");
        a.set_mute("amy", 0).unwrap();
        assert_eq!(a.mute_of("amy").unwrap(), None);
    }

    #[test]
    fn a_resume_storm_from_many_threads_swaps_each_token_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = Accounts::open(dir.path(), CHEAP).unwrap();
        let names: Vec<String> = (0..8).map(|i| format!("u{i}")).collect();
        let mut tokens = Vec::new();
        for name in &names {
            assert!(a.create_blocking(name, "pw").unwrap());
            for _ in 0..8 {
                tokens.push((name.clone(), a.issue_token(name, 600)));
            }
        }
        // Every token is presented twice, by two of 16 threads at once, so
        // the token writes queue behind each other's commits.
        let resume = |(name, token): &(String, String)| match a
            .login_blocking(name, &Credential::Token(token.clone()), 600)
            .unwrap()
        {
            AuthOutcome::Valid {
                token: Some((new, _)),
                ..
            } => Some((name.clone(), new)),
            AuthOutcome::Invalid => None,
            other => panic!("unexpected {other:?}"),
        };
        let results: Vec<Vec<Option<(String, String)>>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..16)
                .map(|w| {
                    let tokens = &tokens;
                    s.spawn(move || {
                        tokens
                            .iter()
                            .skip(w % 8)
                            .step_by(8)
                            .map(resume)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let fresh: Vec<(String, String)> = results.into_iter().flatten().flatten().collect();
        assert_eq!(
            fresh.len(),
            tokens.len(),
            "each token is swapped once, never twice"
        );
        let distinct: std::collections::HashSet<&String> = fresh.iter().map(|(_, t)| t).collect();
        assert_eq!(distinct.len(), fresh.len());
        // The old tokens are spent; the new ones resume their accounts.
        for old in &tokens {
            assert_eq!(resume(old), None);
        }
        for new in &fresh {
            assert!(resume(new).is_some(), "a fresh token resumes its account");
        }
    }
}
