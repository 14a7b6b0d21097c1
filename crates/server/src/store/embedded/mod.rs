//! The embedded account store: redb in the data directory (the default).
//! Logins and resumes go through one token-writer thread that checks each
//! against a name's newest token and writes what waits in one transaction.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use plaza_core::{AuthOutcome, Credential};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

use super::hasher::{Hasher, new_token, token_digest};
use super::types::{Account, HashCost, StoreError, unix_now};

const ACCOUNTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("accounts");
/// An account name's key ([`plaza_proto::name_key`], its lower case) →
/// the name as registered, for names that are not their own key (`Amy`;
/// `amy` is found in [`ACCOUNTS`] under its key): no two accounts differ
/// only in case. Filled from the accounts at open when an older build's
/// database has none.
const FOLDED: TableDefinition<'_, &str, &str> = TableDefinition::new("folded");
/// Muted account name → end of the mute in Unix seconds (0: indefinite).
const MUTES: TableDefinition<'_, &str, u64> = TableDefinition::new("mutes");
/// Account name → its newest resume token: expiry (Unix seconds, u64 big
/// endian) and BLAKE2b digest (32 bytes). Only the newest token of a name
/// works.
const RESUME: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("resume");
/// Earlier builds' tokens, a row per token (digest → name and expiry).
/// Dropped at open: those clients log in with their password.
const TOKENS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("tokens");

/// The embedded account store.
pub struct Accounts {
    db: Arc<Database>,
    pub(crate) hasher: Arc<Hasher>,
    /// The token writer's queue; `None` once dropped, which stops it.
    tokens: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// Tokens reach the disk within about this long (and at a clean stop).
const TOKEN_SYNC: Duration = Duration::from_secs(1);

/// Jobs the token writer takes at once, and names whose tokens wait in
/// memory before it writes them without waiting for [`TOKEN_SYNC`].
const TOKEN_BATCH: usize = 8192;

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
        Self::open_holding(dir, cost, TOKEN_BATCH)
    }

    /// [`Accounts::open`] with a token writer that holds at most `unwritten`
    /// tokens in memory.
    fn open_holding(dir: &Path, cost: HashCost, unwritten: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(format!("{}: {e}", dir.display())))?;
        // redb's page cache defaults to 1 GiB; accounts are small and hot
        // entries few, so bound it (RSS stays flat under login churn).
        let db = Database::builder()
            .set_cache_size(DB_CACHE_BYTES)
            .create(dir.join("accounts.redb"))?;
        let tx = db.begin_write()?;
        {
            let accounts = tx.open_table(ACCOUNTS)?;
            let mut folded = tx.open_table(FOLDED)?;
            if folded.is_empty()? {
                // An older build's database: the first of names that
                // differ only in case keeps the key; both still log in.
                for row in accounts.iter()? {
                    let (name, _) = row?;
                    let key = plaza_proto::name_key(name.value());
                    if key != name.value() && folded.get(key.as_str())?.is_none() {
                        folded.insert(key.as_str(), name.value())?;
                    }
                }
            }
        }
        tx.open_table(MUTES)?;
        tx.open_table(RESUME)?;
        tx.delete_table(TOKENS)?;
        tx.commit()?;
        let db = Arc::new(db);
        let (tokens, jobs) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("plaza-tokens".into())
            .spawn({
                let db = db.clone();
                move || write_tokens(&db, &jobs, unwritten)
            })
            .map_err(|e| StoreError::Db(format!("token writer thread: {e}")))?;
        Ok(Self {
            db,
            hasher: Hasher::new(cost)?,
            tokens: Some(tokens),
            writer: Some(writer),
        })
    }

    pub(super) fn get(&self, name: &str) -> Result<Option<Account>, StoreError> {
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

    pub(super) fn insert_new(&self, name: &str, hash: String) -> Result<bool, StoreError> {
        let record = Account {
            hash,
            roles: Vec::new(),
            created_at: unix_now(),
        };
        let bytes = serde_json::to_vec(&record).expect("account serialises");
        let tx = self.db.begin_write()?;
        let created = {
            let mut table = tx.open_table(ACCOUNTS)?;
            let mut folded = tx.open_table(FOLDED)?;
            let key = plaza_proto::name_key(name);
            // Check and insert in one write transaction: redb serialises
            // writers, so two racing registrations cannot both succeed.
            let taken = table.get(name)?.is_some()
                || table.get(key.as_str())?.is_some()
                || folded.get(key.as_str())?.is_some();
            if taken {
                false
            } else {
                table.insert(name, bytes.as_slice())?;
                // A name that is its own key is found in the accounts.
                if key != name {
                    folded.insert(key.as_str(), name)?;
                }
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

    /// Hands a mute (`seconds` as in MUTE_REQUEST; 0 lifts it) to the token
    /// writer, which applies it before any login handed over after it.
    ///
    /// # Errors
    /// If the token writer has stopped.
    pub fn set_mute(&self, name: &str, seconds: u32) -> Result<(), StoreError> {
        let until = match seconds {
            0 => None,
            u32::MAX => Some(0),
            s => Some(unix_now() + u64::from(s)),
        };
        self.tokens
            .as_ref()
            .and_then(|t| t.send(Job::Mute(name.to_owned(), until)).ok())
            .ok_or_else(|| StoreError::Db("the token writer has stopped".into()))
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
            let _ = tokens.send(Job::Login(LoginJob {
                name,
                token,
                ttl,
                reply,
            }));
        }
        answer
    }

    /// A resume, waiting for the token writer without holding a thread.
    pub(super) async fn resume(
        &self,
        name: String,
        token: String,
        ttl: u32,
    ) -> Result<AuthOutcome, StoreError> {
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

    pub(super) fn login_blocking(
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
            Credential::Guest => return Ok(AuthOutcome::Invalid),
        };
        writer_answer(self.token_job(name.to_owned(), token, token_ttl).blocking_recv())
    }
}

/// What the token writer is handed, done in order.
enum Job {
    Login(LoginJob),
    /// A mute's end in Unix seconds (0: indefinite); `None` lifts it.
    Mute(String, Option<u64>),
}

/// A login for the token writer to finish: check a resume's token, or take
/// a password login already checked; then read the account's roles and
/// mute and issue the name's next token.
struct LoginJob {
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

/// A name's newest token as [`RESUME`] keeps it: its digest and expiry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Issued {
    digest: [u8; 32],
    expires: u64,
}

impl Issued {
    const LEN: usize = 40;

    fn new(token: &str, ttl: u32) -> Self {
        Self {
            digest: token_digest(token),
            expires: unix_now() + u64::from(ttl),
        }
    }

    fn to_bytes(self) -> [u8; Self::LEN] {
        let mut b = [0; Self::LEN];
        b[..8].copy_from_slice(&self.expires.to_be_bytes());
        b[8..].copy_from_slice(&self.digest);
        b
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        let (expires, digest) = b.split_first_chunk::<8>()?;
        Some(Self {
            digest: digest.try_into().ok()?,
            expires: u64::from_be_bytes(*expires),
        })
    }

    fn redeems(&self, token: &str) -> bool {
        self.expires > unix_now() && self.digest == token_digest(token)
    }
}

/// Tokens and mutes the token writer has answered with but not written.
#[derive(Default)]
struct Unwritten {
    tokens: HashMap<String, Issued>,
    mutes: HashMap<String, Option<u64>>,
}

impl Unwritten {
    fn len(&self) -> usize {
        self.tokens.len() + self.mutes.len()
    }
}

/// The token writer: one thread that owns the names' tokens and mutes. A
/// login reads the name's newest token and mute (those not written yet
/// first, then the tables), answers, and keeps the next token in memory;
/// what it issued is written in one durable transaction at most
/// [`TOKEN_SYNC`] after the first of it, or once `bound` wait, and
/// at a clean stop. Mutes take the same way (written with their batch), so a
/// login handed over after a mute always sees it.
///
/// A reconnect storm so costs a few commits a second, not a transaction
/// (a B-tree delete and insert) per resume, which had halved the resumes a
/// second one core could serve (docs/BENCHMARKS.md, "Resume tokens"). A
/// crash (or `kill -9`) may lose the tokens of the last second: those
/// clients log in with their password (and the tokens they used may work
/// once more).
fn write_tokens(db: &Database, jobs: &mpsc::Receiver<Job>, bound: usize) {
    let mut unwritten = Unwritten::default();
    // When the oldest of `unwritten` was taken.
    let mut since: Option<Instant> = None;
    loop {
        let first = match since {
            None => jobs.recv().ok(),
            Some(oldest) => match jobs.recv_timeout(TOKEN_SYNC.saturating_sub(oldest.elapsed())) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // A failed write is tried again a second later.
                    since = (!write(db, &mut unwritten)).then(Instant::now);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            },
        };
        let Some(first) = first else { break };
        // One read transaction for the jobs waiting now.
        let mut tx = db.begin_read();
        // Whether a write at the bound failed in this batch (then no more
        // are tried until the next).
        let mut failed = false;
        let mut muted = false;
        for job in std::iter::once(first).chain(jobs.try_iter().take(TOKEN_BATCH - 1)) {
            match job {
                Job::Mute(name, until) => {
                    // Logins read it from `unwritten`; it is written with
                    // the batch, below.
                    unwritten.mutes.insert(name, until);
                    muted = true;
                }
                Job::Login(job) => {
                    if unwritten.len() >= bound && !failed {
                        if write(db, &mut unwritten) {
                            since = None;
                            tx = db.begin_read();
                        } else {
                            failed = true;
                        }
                    }
                    // Past the bound with the disk failing, logins are
                    // answered 112.
                    let outcome = if unwritten.len() >= bound {
                        Err(StoreError::Db("too many tokens not written".into()))
                    } else {
                        login_or_look_again(db, &mut tx, &mut unwritten, &job)
                    };
                    // A requester that has gone away no longer needs its answer.
                    let _ = job.reply.send(outcome);
                }
            }
        }
        drop(tx);
        // Mutes are few: written at once, with the tokens waiting (if that
        // fails, with the next write).
        if muted && write(db, &mut unwritten) {
            since = None;
        } else {
            since = since.or_else(|| (unwritten.len() > 0).then(Instant::now));
        }
    }
    write(db, &mut unwritten);
}

/// [`login_in`] on the batch's read snapshot, and once more on a fresh one
/// if it finds nothing: the snapshot may predate the account, registered
/// (and its password checked) after the batch began. (Only a refusal pays
/// for the second look.)
fn login_or_look_again(
    db: &Database,
    tx: &mut Result<redb::ReadTransaction, redb::TransactionError>,
    unwritten: &mut Unwritten,
    job: &LoginJob,
) -> Result<AuthOutcome, StoreError> {
    let mut attempt = |tx: &Result<redb::ReadTransaction, redb::TransactionError>| {
        tx.as_ref()
            .map_err(|e| StoreError::Db(e.to_string()))
            .and_then(|tx| login_in(tx, unwritten, job))
    };
    match attempt(tx) {
        Ok(AuthOutcome::Invalid) => {
            *tx = db.begin_read();
            attempt(tx)
        }
        other => other,
    }
}

/// One login: the presented token checked against the name's newest, the
/// account read, the next token issued into `unwritten`.
fn login_in(
    tx: &redb::ReadTransaction,
    unwritten: &mut Unwritten,
    job: &LoginJob,
) -> Result<AuthOutcome, StoreError> {
    if let Some(token) = &job.token {
        let newest = match unwritten.tokens.get(&job.name) {
            Some(issued) => Some(*issued),
            None => tx
                .open_table(RESUME)?
                .get(job.name.as_str())?
                .and_then(|v| Issued::from_bytes(v.value())),
        };
        if !newest.is_some_and(|n| n.redeems(token)) {
            return Ok(AuthOutcome::Invalid);
        }
    }
    let Some(account) = account_in(&tx.open_table(ACCOUNTS)?, &job.name)? else {
        return Ok(AuthOutcome::Invalid);
    };
    let until = match unwritten.mutes.get(&job.name) {
        Some(until) => *until,
        None => tx.open_table(MUTES)?.get(job.name.as_str())?.map(|v| v.value()),
    };
    let token = new_token();
    unwritten
        .tokens
        .insert(job.name.clone(), Issued::new(&token, job.ttl));
    Ok(AuthOutcome::Valid {
        admin: account.is_admin(),
        mute: mute_left(until),
        token: Some((token, job.ttl)),
    })
}

/// Writes what the writer has not, durably. Returns whether it did; if not,
/// it stays in `unwritten` for the next try.
fn write(db: &Database, unwritten: &mut Unwritten) -> bool {
    if unwritten.len() == 0 {
        return true;
    }
    let r = db.begin_write().map_err(StoreError::from).and_then(|tx| {
        {
            let mut t = tx.open_table(RESUME)?;
            for (name, issued) in &unwritten.tokens {
                t.insert(name.as_str(), issued.to_bytes().as_slice())?;
            }
            let mut t = tx.open_table(MUTES)?;
            for (name, until) in &unwritten.mutes {
                match until {
                    Some(until) => t.insert(name.as_str(), until)?,
                    None => t.remove(name.as_str())?,
                };
            }
        }
        Ok(tx.commit()?)
    });
    match r {
        Ok(()) => {
            // New maps: a storm's worth of capacity is not kept.
            *unwritten = Unwritten::default();
            true
        }
        Err(e) => {
            tracing::error!(error = %e, waiting = unwritten.len(), "account store: tokens and mutes not written");
            false
        }
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

/// What is left of a mute ending at `until` (Unix seconds, 0 indefinite):
/// `None` not muted, `Some(None)` indefinitely.
fn mute_left(until: Option<u64>) -> Option<Option<Duration>> {
    match until? {
        0 => Some(None),
        t if t > unix_now() => Some(Some(Duration::from_secs(t - unix_now()))),
        _ => None,
    }
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

#[cfg(test)]
mod tests;
