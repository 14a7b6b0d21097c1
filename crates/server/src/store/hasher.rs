//! Password hashing (Argon2id) and resume-token helpers shared by the stores.
//!
//! Hashes run on tokio's blocking pool behind a semaphore of one permit per
//! core: a login flood queues here instead of starving the network threads
//! or holding one Argon2 memory block per waiting login.

use std::sync::Arc;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use blake2::{Blake2b512, Digest};
use tokio::sync::Semaphore;

use super::types::{HashCost, StoreError};

/// Argon2id with a decoy hash for unknown names.
pub(crate) struct Hasher {
    argon: Argon2<'static>,
    /// Verified against when the name is unknown, so unknown and known
    /// names take the same time.
    decoy: String,
    permits: Semaphore,
}

impl Hasher {
    pub(crate) fn new(cost: HashCost) -> Result<Arc<Self>, StoreError> {
        let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
            .map_err(|e| StoreError::Hash(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let decoy = hash_with(&argon, "decoy password never used")?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Arc::new(Self {
            argon,
            decoy,
            permits: Semaphore::new(cores),
        }))
    }

    /// Hashes now, on this thread.
    pub(crate) fn hash_blocking(&self, password: &str) -> Result<String, StoreError> {
        hash_with(&self.argon, password)
    }

    /// Checks `password` against `stored` (or the decoy when `None`) now, on
    /// this thread.
    pub(crate) fn verify_blocking(&self, password: &str, stored: Option<&str>) -> bool {
        let known = stored.is_some();
        let Ok(parsed) = PasswordHash::new(stored.unwrap_or(&self.decoy)) else {
            return false;
        };
        self.argon.verify_password(password.as_bytes(), &parsed).is_ok() && known
    }

    /// A hashing permit, to hold while a blocking task hashes.
    pub(crate) async fn permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.permits.acquire().await.ok()
    }

    /// Hashes on the blocking pool.
    pub(crate) async fn hash(self: &Arc<Self>, password: String) -> Result<String, StoreError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Hash("closed".into()))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.hash_blocking(&password))
            .await
            .map_err(|e| StoreError::Hash(e.to_string()))?
    }

    /// Verifies on the blocking pool.
    pub(crate) async fn verify(self: &Arc<Self>, password: String, stored: Option<String>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.verify_blocking(&password, stored.as_deref()))
            .await
            .unwrap_or(false)
    }
}

fn hash_with(argon: &Argon2<'_>, password: &str) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut OsRng);
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Hash(e.to_string()))
}

/// A fresh random resume token (32 bytes, hex).
pub(crate) fn new_token() -> String {
    let mut raw = [0u8; 32];
    OsRng.fill_bytes(&mut raw);
    hex(&raw)
}

/// What is stored for a token: its BLAKE2b digest (32 bytes). A leaked
/// store does not reveal usable tokens.
pub(crate) fn token_digest(token: &str) -> [u8; 32] {
    let mut d = [0; 32];
    d.copy_from_slice(&Blake2b512::digest(token.as_bytes())[..32]);
    d
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_two_lowercase_digits_a_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(super::new_token().len(), 64);
    }
}
