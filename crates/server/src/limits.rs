//! Login attempt limits, per IP address and per account name from each
//! address, checked on the network threads before a request reaches the
//! logic task (so a flood of wrong passwords costs a hash map lookup, not an
//! Argon2 hash).
//!
//! The per-account limit counts attempts per (address, account): a guesser
//! spends only its own address's allowance for the account, and the real
//! owner, from another address, still logs in. (Counted per account alone,
//! ten wrong guesses a minute from anywhere kept the owner out.) A guesser
//! spread over many addresses meets each address's own limit and the cost
//! of the password hash.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use plaza_core::Bucket;

/// Entries kept per map before full (idle) buckets are swept.
const SWEEP_AT: usize = 50_000;

/// Token buckets for login, resume and register attempts.
pub(crate) struct LoginLimiter {
    /// Attempts per minute per address, and per account (0: off).
    per_ip: u32,
    per_account: u32,
    maps: Mutex<Maps>,
    /// Attempts refused so far.
    pub(crate) refused: AtomicU64,
}

#[derive(Default)]
struct Maps {
    ips: HashMap<IpAddr, Bucket>,
    accounts: HashMap<(IpAddr, String), Bucket>,
}

impl LoginLimiter {
    pub(crate) fn new(per_ip: u32, per_account: u32) -> Self {
        Self {
            per_ip,
            per_account,
            maps: Mutex::default(),
            refused: AtomicU64::new(0),
        }
    }

    /// Whether one more attempt from `ip` (for `account`, if it names one)
    /// is allowed now. Both buckets (the address's, and the account's from
    /// that address) must have a token; a refused attempt takes none from
    /// the other.
    pub(crate) fn allow(&self, ip: IpAddr, account: Option<&str>) -> bool {
        if self.per_ip == 0 && self.per_account == 0 {
            return true;
        }
        let now = Instant::now();
        let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        let ok = check(&mut maps.ips, ip, self.per_ip, now)
            && account.is_none_or(|a| check(&mut maps.accounts, (ip, a.to_owned()), self.per_account, now));
        if !ok {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        let (ip_rate, account_rate) = (rate(self.per_ip), rate(self.per_account));
        if maps.ips.len() > SWEEP_AT {
            maps.ips
                .retain(|_, b| !b.is_full(ip_rate, f64::from(self.per_ip), now));
        }
        if maps.accounts.len() > SWEEP_AT {
            maps.accounts
                .retain(|_, b| !b.is_full(account_rate, f64::from(self.per_account), now));
        }
        ok
    }
}

fn rate(per_minute: u32) -> f64 {
    f64::from(per_minute) / 60.0
}

fn check<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Bucket>,
    key: K,
    per_minute: u32,
    now: Instant,
) -> bool {
    if per_minute == 0 {
        return true;
    }
    let burst = f64::from(per_minute);
    map.entry(key)
        .or_insert_with(|| Bucket::full(burst, now))
        .take(rate(per_minute), burst, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_and_an_account_from_it_each_get_their_burst() {
        let l = LoginLimiter::new(6, 3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(l.allow(a, Some("amy")));
        }
        assert!(!l.allow(a, Some("amy")), "amy's account is spent from a");
        assert!(
            l.allow(b, Some("amy")),
            "the owner, from another address, is not locked out"
        );
        assert!(l.allow(a, Some("bob")));
        assert!(l.allow(a, None));
        assert!(!l.allow(a, Some("cat")), "the address is spent");
        assert!(l.allow(b, Some("cat")));
        assert_eq!(l.refused.load(Ordering::Relaxed), 2);
    }
}
