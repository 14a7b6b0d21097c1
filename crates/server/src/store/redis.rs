//! The Redis account store. Schema (every key under a configurable prefix,
//! `plaza:` by default; documented in docs/OPERATIONS.md):
//!
//! - `account:<name>`: hash `{hash, roles, created_at}`.
//! - `mute:<name>`: present while muted, with the mute's TTL (none:
//!   indefinite).
//! - `online:<name>`: `<node>:<session>` of the session logged in as
//!   `name`, TTL `presence_ttl`, refreshed while it lives; a crashed node's
//!   users are free again when it runs out.
//! - `token:<digest>`: account name for a resume token, TTL `token_ttl`.
//!
//! On a Redis Cluster each key is tagged with the lower-cased name
//! (`account:{amy}`, `account:{amy}:Amy`, `token:{amy}:<digest>`), so each
//! script touches one slot (`crate::keys`).
//! - `folded:<lower-case name>`: the account name registered under it, for
//!   names with a capital (`Amy`), so that no two names differ only in case
//!   (set at registration, and for older accounts at their next password
//!   login; `amy` is found as `account:amy`).
//!
//! One multiplexed connection to the primary (`crate::primary`: a fixed
//! address, or the one Redis Sentinel names, followed across failovers)
//! opened lazily; every call has a timeout, and a failure answers
//! "unavailable" instead of waiting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use plaza_core::{AuthOutcome, Credential};
use redis::{AsyncCommands, Script};

use crate::keys::Keys;
use crate::primary::{Conn, Primary, Step, Target};

use super::hasher::{Hasher, hex, new_token, token_digest};
use super::types::{StoreError, unix_now};

/// Redis store settings.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `redis://host:port/db`, or
    /// `redis+sentinel://host:port,host:port/master-name/db`.
    pub url: String,
    /// Key prefix.
    pub prefix: String,
    /// Time allowed for any one Redis call.
    pub timeout: Duration,
    /// TTL of the logged-in marker.
    pub presence_ttl: Duration,
    /// Also accept the seed's schema (`GET <name>` = plaintext password) for
    /// accounts missing from Plaza's; such logins are rehashed into Plaza's.
    pub seed_compat: bool,
}

/// The Redis-backed store.
pub struct RedisStore {
    primary: Primary,
    keys: Keys,
    hasher: Arc<Hasher>,
    config: RedisConfig,
    token_ttl: u32,
    healthy: AtomicBool,
    last_error: Mutex<String>,
}

// The scripts are hashed once: `invoke` sends EVALSHA, and the script itself
// only after a NOSCRIPT (a Redis that has not seen it yet).

/// Marks KEYS[1] as held by ARGV[1] for ARGV[2] seconds unless another
/// session holds it; a mark a node holds for a user who is away
/// (`<node>:away`) is taken over. Returns {1 if marked, the PTTL of the
/// mute KEYS[2]}.
static MARK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local cur = redis.call('GET', KEYS[1])
local mute = redis.call('PTTL', KEYS[2])
if cur and not string.find(cur, ':away$') then return {0, mute} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return {1, mute}",
    )
});
/// Passes the online mark KEYS[1] from ARGV[1] (a session that dropped) to
/// ARGV[2] (its node's away owner) for ARGV[3] seconds, if ARGV[1] holds it.
static AWAY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) and 1",
    )
});
/// Deletes the online mark KEYS[1] if ARGV[1] still holds it.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
    )
});
/// Creates account KEYS[1] (hash ARGV[1], created at ARGV[2]) unless it,
/// the folded key KEYS[2] or the account of the lower-cased name KEYS[3]
/// exists; marks KEYS[2] with the name ARGV[3] unless the name is its own
/// lower case. 1 if it created the account.
static REGISTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3]) > 0 then return 0 end
redis.call('HSET', KEYS[1], 'hash', ARGV[1], 'roles', '', 'created_at', ARGV[2])
if KEYS[1] ~= KEYS[3] then redis.call('SET', KEYS[2], ARGV[3]) end
return 1",
    )
});
/// A resume in one round trip. KEYS: account, presented token, online mark,
/// mute, next token. ARGV: name, owner, presence TTL, token TTL. Returns
/// {0} invalid (a token presented under another name is burnt), {2} the name
/// is logged in elsewhere (the token is kept, to retry), or {1, roles, mute
/// PTTL} after marking the name (taking over a mark held for it while it
/// was away) and swapping the token.
static RESUME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local who = redis.call('GET', KEYS[2])
if who ~= ARGV[1] then
  if who then redis.call('DEL', KEYS[2]) end
  return {0}
end
if redis.call('HEXISTS', KEYS[1], 'hash') == 0 then return {0} end
local cur = redis.call('GET', KEYS[3])
if cur and not string.find(cur, ':away$') then return {2} end
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[5], ARGV[1], 'EX', ARGV[4])
return {1, redis.call('HGET', KEYS[1], 'roles') or '', redis.call('PTTL', KEYS[4])}
",
    )
});
/// Extends each mark in KEYS that still holds its owner (ARGV[i + 1]) by
/// ARGV[1] seconds; returns how many it extended.
static REFRESH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then
    n = n + redis.call('EXPIRE', key, ARGV[1])
  end
end
return n",
    )
});

/// Marks refreshed per script call.
const REFRESH_CHUNK: usize = 500;

impl RedisStore {
    pub(crate) fn new(config: RedisConfig, hasher: Arc<Hasher>, token_ttl: u32) -> Result<Self, StoreError> {
        let target = Target::parse(&config.url).map_err(StoreError::Redis)?;
        Ok(Self {
            keys: Keys::new(&config.prefix, target.is_cluster()),
            primary: Primary::new(target, config.timeout),
            hasher,
            config,
            token_ttl,
            healthy: AtomicBool::new(false),
            last_error: Mutex::new("not connected yet".into()),
        })
    }

    fn key(&self, kind: &str, name: &str) -> String {
        self.keys.user(kind, name)
    }

    /// A token's key: its digest, never the token.
    fn token_key(&self, name: &str, token: &str) -> String {
        self.keys.token(name, &hex(&token_digest(token)))
    }

    fn fail(&self, e: impl std::fmt::Display) -> StoreError {
        let msg = e.to_string();
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %msg, "redis unavailable");
        }
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = msg.clone();
        StoreError::Redis(msg)
    }

    /// Runs one call with the configured timeout.
    async fn call<T>(
        &self,
        f: impl AsyncFnOnce(&mut Conn) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut c = self.primary.conn().await.map_err(|e| self.fail(e))?;
        match tokio::time::timeout(self.config.timeout, f(&mut c.conn)).await {
            Ok(Ok(v)) => {
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!("redis available");
                }
                Ok(v)
            }
            // Only a lost or refused connection is an outage; a command error
            // (a bug, a wrong type) is reported without marking Redis down.
            Ok(Err(e))
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || e.code() == Some("READONLY") =>
            {
                self.primary.failed(&c, &e);
                Err(self.fail(e))
            }
            Ok(Err(e)) => Err(StoreError::Redis(e.to_string())),
            Err(_) => {
                self.primary.timed_out(&c);
                Err(self.fail("call timed out"))
            }
        }
    }

    pub(crate) async fn login(&self, name: String, credential: Credential, owner: String) -> AuthOutcome {
        let password = matches!(credential, Credential::Password(_));
        match self.try_login(name.clone(), credential, owner).await {
            Ok(o) => {
                if password && matches!(o, AuthOutcome::Valid { .. }) {
                    self.claim_folded(&name).await;
                }
                o
            }
            Err(e) => {
                tracing::debug!(error = %e, "login: store unavailable");
                AuthOutcome::Unavailable
            }
        }
    }

    async fn try_login(
        &self,
        name: String,
        credential: Credential,
        owner: String,
    ) -> Result<AuthOutcome, StoreError> {
        if let Credential::Token(token) = &credential {
            return self.resume(&name, token, &owner).await;
        }
        let account_key = self.key("account", &name);
        let (hash, roles): (Option<String>, Option<String>) = self
            .call(async |c| {
                redis::cmd("HMGET")
                    .arg(&account_key)
                    .arg("hash")
                    .arg("roles")
                    .query_async(c)
                    .await
            })
            .await?;
        // The token's key, consumed only once this login has succeeded, so a
        // 31 (the name still marked, for example just after a crash) keeps it.
        let mut spent_token = None;
        let guest = matches!(credential, Credential::Guest);
        let valid = match credential {
            // A guest's name must be no account's.
            Credential::Guest => hash.is_none(),
            Credential::Password(password) => {
                if hash.is_none() && self.config.seed_compat {
                    self.seed_login(&name, &password).await?
                } else {
                    self.hasher.verify(password, hash.clone()).await
                }
            }
            Credential::Token(token) => {
                let key = self.token_key(&name, &token);
                let owner_name: Option<String> = self.call(async |c| c.get(&key).await).await?;
                let matches = owner_name.as_deref() == Some(name.as_str()) && hash.is_some();
                if owner_name.is_some() && !matches {
                    // Presented under another name: burn it.
                    let () = self.call(async |c| c.del(&key).await).await?;
                }
                spent_token = Some(key);
                matches
            }
        };
        if !valid {
            return Ok(AuthOutcome::Invalid);
        }
        // Mark logged in (31 across nodes) and read the mute.
        let online = self.key("online", &name);
        let mute = self.key("mute", &name);
        let ttl = self.config.presence_ttl.as_secs().max(1);
        let (claimed, mute_ms): (i64, i64) = self
            .call(async |c| {
                MARK.key(&online)
                    .key(&mute)
                    .arg(&owner)
                    .arg(ttl)
                    .invoke_async(c)
                    .await
            })
            .await?;
        if claimed == 0 {
            return Ok(AuthOutcome::AlreadyLoggedIn);
        }
        if guest {
            return Ok(AuthOutcome::Valid {
                admin: false,
                mute: mute_from_pttl(mute_ms),
                token: None,
            });
        }
        // Logged in: spend the old token (a racing resume with the same
        // token lost the SET NX above) and issue the next one.
        let token = new_token();
        let token_key = self.token_key(&name, &token);
        let () = self
            .call(async |c| {
                let mut pipe = redis::pipe();
                if let Some(old) = &spent_token {
                    pipe.del(old).ignore();
                }
                pipe.set_ex(&token_key, &name, u64::from(self.token_ttl)).ignore();
                pipe.query_async(c).await
            })
            .await?;
        Ok(AuthOutcome::Valid {
            admin: roles.is_some_and(|r| r.split(',').any(|x| x == "admin")),
            mute: mute_from_pttl(mute_ms),
            token: Some((token, self.token_ttl)),
        })
    }

    /// A resume token login: one script, one round trip.
    async fn resume(&self, name: &str, token: &str, owner: &str) -> Result<AuthOutcome, StoreError> {
        let next = new_token();
        let keys = [
            self.key("account", name),
            self.token_key(name, token),
            self.key("online", name),
            self.key("mute", name),
            self.token_key(name, &next),
        ];
        let ttl = self.config.presence_ttl.as_secs().max(1);
        let (status, roles, mute_ms): (i64, Option<String>, Option<i64>) = self
            .call(async |c| {
                let mut script = RESUME.prepare_invoke();
                for k in &keys {
                    script.key(k);
                }
                script
                    .arg(name)
                    .arg(owner)
                    .arg(ttl)
                    .arg(self.token_ttl)
                    .invoke_async::<Vec<redis::Value>>(c)
                    .await
                    .and_then(|v| {
                        let at = |i: usize| v.get(i).cloned().unwrap_or(redis::Value::Nil);
                        Ok((
                            redis::from_redis_value(at(0))?,
                            redis::from_redis_value(at(1))?,
                            redis::from_redis_value(at(2))?,
                        ))
                    })
            })
            .await?;
        Ok(match status {
            1 => AuthOutcome::Valid {
                admin: roles.is_some_and(|r| r.split(',').any(|x| x == "admin")),
                mute: mute_from_pttl(mute_ms.unwrap_or(-2)),
                token: Some((next, self.token_ttl)),
            },
            2 => AuthOutcome::AlreadyLoggedIn,
            _ => AuthOutcome::Invalid,
        })
    }

    /// The seed's schema: `GET <name>` holds the plaintext password. A
    /// match is rehashed into Plaza's schema (the seed key is left alone).
    async fn seed_login(&self, name: &str, password: &str) -> Result<bool, StoreError> {
        let plain: Option<String> = self.call(async |c| c.get(name).await).await?;
        let matches = plain.is_some_and(|p| plaza_core::constant_time_eq(p.as_bytes(), password.as_bytes()));
        if matches {
            let created = self.register(name.to_owned(), password.to_owned()).await?;
            tracing::info!(name, created, "seed-schema login migrated to the Plaza schema");
        }
        Ok(matches)
    }

    pub(crate) async fn register(&self, name: String, password: String) -> Result<bool, StoreError> {
        // Fail fast before spending a hash when Redis is down.
        self.primary.conn().await.map_err(|e| self.fail(e))?;
        let hash = self.hasher.hash(password).await?;
        let key = self.key("account", &name);
        let lower = plaza_proto::name_key(&name);
        let folded = self.key("folded", &lower);
        // The account a name that is its own key would have.
        let lower_account = self.key("account", &lower);
        let created: i64 = self
            .call(async |c| {
                REGISTER
                    .key(&key)
                    .key(&folded)
                    .key(&lower_account)
                    .arg(&hash)
                    .arg(unix_now())
                    .arg(&name)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(created == 1)
    }

    /// Marks `name`'s case-folded key as taken, if nobody holds it: how an
    /// account created before the key existed gets it (at its next login).
    pub(crate) async fn claim_folded(&self, name: &str) {
        let lower = plaza_proto::name_key(name);
        if lower == name {
            // Found under its own account key.
            return;
        }
        let folded = self.key("folded", &lower);
        let r: Result<Option<String>, _> = self
            .call(async |c| {
                redis::cmd("SET")
                    .arg(&folded)
                    .arg(name)
                    .arg("NX")
                    .query_async(c)
                    .await
            })
            .await;
        if let Err(e) = r {
            tracing::debug!(name, error = %e, "could not mark the name's folded key");
        }
    }

    /// Grants or revokes the admin role. Returns `false` if no account.
    ///
    /// # Errors
    /// If Redis fails.
    pub async fn set_admin(&self, name: &str, admin: bool) -> Result<bool, StoreError> {
        let key = self.key("account", name);
        let exists: bool = self.call(async |c| c.exists(&key).await).await?;
        if exists {
            let roles = if admin { "admin" } else { "" };
            let () = self.call(async |c| c.hset(&key, "roles", roles).await).await?;
        }
        Ok(exists)
    }

    /// The node `name` is logged in on (from its mark), if any.
    pub(crate) async fn locate(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let key = self.key("online", name);
        let owner: Option<String> = self.call(async |c| c.get(&key).await).await?;
        Ok(owner.and_then(|o| o.split_once(':')?.0.parse().ok()))
    }

    /// Passes `name`'s mark from `owner` to `away` (see [`AWAY`]).
    pub(crate) async fn away(&self, name: &str, owner: &str, away: &str) {
        let key = self.key("online", name);
        let ttl = self.config.presence_ttl.as_secs().max(1);
        let r: Result<i64, _> = self
            .call(async |c| AWAY.key(&key).arg(owner).arg(away).arg(ttl).invoke_async(c).await)
            .await;
        if let Err(e) = r {
            tracing::debug!(name, error = %e, "marking a user away failed; the mark expires by its TTL");
        }
    }

    pub(crate) async fn release(&self, name: &str, owner: &str) {
        let key = self.key("online", name);
        let r: Result<i64, _> = self
            .call(async |c| RELEASE.key(&key).arg(owner).invoke_async(c).await)
            .await;
        if let Err(e) = r {
            tracing::debug!(name, error = %e, "release failed; the mark expires by its TTL");
        }
    }

    /// Extends the TTL of the marks of `entries` (name, session on `node`)
    /// that are still this node's, [`REFRESH_CHUNK`] marks a call: one
    /// script run each, so neither this node nor Redis builds one command
    /// per user, and a refresh of 19,000 users holds a few KiB at a time.
    /// On a Redis Cluster each mark is in its user's slot: a chunk is one
    /// pipeline of single-mark runs, split by slot.
    pub(crate) async fn refresh(&self, node: &str, entries: Vec<(Arc<str>, u64)>) {
        let ttl = self.config.presence_ttl.as_secs().max(1);
        let cluster = self.keys.tagged();
        for chunk in entries.chunks(REFRESH_CHUNK) {
            let r: Result<Vec<redis::Value>, _> = if cluster {
                let steps: Vec<Step> = chunk
                    .iter()
                    .map(|(name, conn)| {
                        let key = self.key("online", name);
                        let mut cmd = redis::cmd("EVALSHA");
                        cmd.arg(REFRESH.get_hash())
                            .arg(1)
                            .arg(&key)
                            .arg(ttl)
                            .arg(super::owner(node, *conn));
                        Step::new(cmd, key, false)
                    })
                    .collect();
                self.call(async |c| {
                    REFRESH.load_async(c).await?;
                    c.run(steps).await
                })
                .await
            } else {
                let mut call = REFRESH.prepare_invoke();
                call.arg(ttl);
                for (name, conn) in chunk {
                    call.key(self.key("online", name)).arg(super::owner(node, *conn));
                }
                self.call(async |c| call.invoke_async::<i64>(c).await.map(|_| Vec::new()))
                    .await
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "presence refresh failed; marks may expire");
                return;
            }
        }
    }

    pub(crate) async fn set_mute(&self, name: &str, seconds: u32) -> Result<(), StoreError> {
        let key = self.key("mute", name);
        match seconds {
            0 => self.call(async |c| c.del(&key).await).await,
            u32::MAX => self.call(async |c| c.set(&key, 1).await).await,
            s => self.call(async |c| c.set_ex(&key, 1, u64::from(s)).await).await,
        }
    }

    pub(crate) fn health(&self) -> Result<(), String> {
        if self.healthy.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone())
        }
    }

    pub(crate) fn refresh_every(&self) -> Duration {
        (self.config.presence_ttl / 3).max(Duration::from_secs(1))
    }
}

/// A mute from the PTTL of its key: -2 none, -1 indefinite.
fn mute_from_pttl(ms: i64) -> Option<Option<Duration>> {
    match ms {
        -2 => None,
        -1 => Some(None),
        ms => Some(Some(Duration::from_millis(ms.max(0) as u64))),
    }
}

/// Pings Redis every second while the store lives, so health is current
/// even when nobody logs in.
pub(crate) async fn probe_health(store: Weak<RedisStore>) {
    loop {
        {
            let Some(s) = store.upgrade() else { return };
            let _: Result<String, _> = s.call(async |c| redis::cmd("PING").query_async(c).await).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
