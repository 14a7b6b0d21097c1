//! The embedded store's token writer and name folding.

use super::*;

const CHEAP: HashCost = HashCost {
    memory_kib: 64,
    iterations: 1,
};

#[test]
fn a_login_looks_past_a_snapshot_older_than_its_account() {
    let dir = tempfile::tempdir().unwrap();
    let a = Accounts::open(dir.path(), CHEAP).unwrap();
    // The token writer's batch began before amy registered.
    let mut tx = a.db.begin_read();
    assert!(a.create_blocking("amy", "pw").unwrap());
    let (reply, _answer) = oneshot::channel();
    let job = LoginJob {
        name: "amy".into(),
        token: None,
        ttl: 600,
        reply,
    };
    let mut unwritten = Unwritten::default();
    let outcome = login_or_look_again(&a.db, &mut tx, &mut unwritten, &job).unwrap();
    assert!(matches!(outcome, AuthOutcome::Valid { .. }), "{outcome:?}");
}

#[test]
fn names_differing_only_in_case_are_one_name_and_older_accounts_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    {
        let a = Accounts::open(dir.path(), CHEAP).unwrap();
        assert!(a.create_blocking("amy", "pw").unwrap());
        assert!(!a.create_blocking("Amy", "pw").unwrap(), "only case differs");
        assert!(!a.create_blocking("AMY", "pw").unwrap());
        // An older build's database: two such accounts, no keys.
        let tx = a.db.begin_write().unwrap();
        tx.open_table(ACCOUNTS)
            .unwrap()
            .insert(
                "Bob",
                b"{\"hash\":\"x\",\"roles\":[],\"created_at\":0}".as_slice(),
            )
            .unwrap();
        tx.open_table(ACCOUNTS)
            .unwrap()
            .insert(
                "bob",
                b"{\"hash\":\"x\",\"roles\":[],\"created_at\":0}".as_slice(),
            )
            .unwrap();
        tx.delete_table(FOLDED).unwrap();
        tx.commit().unwrap();
    }
    let a = Accounts::open(dir.path(), CHEAP).unwrap();
    assert!(a.get("Bob").unwrap().is_some() && a.get("bob").unwrap().is_some());
    assert!(a.verify_blocking("amy", "pw").unwrap().is_some());
    assert!(
        !a.create_blocking("BOB", "pw").unwrap(),
        "the keys were filled in at open"
    );
    assert!(!a.create_blocking("aMy", "pw").unwrap());
    assert!(a.create_blocking("cat", "pw").unwrap());
}

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

    /// The mute a login of `name` gets (it issues a token, too).
    fn mute_of(&self, name: &str) -> Option<Option<Duration>> {
        match writer_answer(self.token_job(name.into(), None, 600).blocking_recv()).unwrap() {
            AuthOutcome::Valid { mute, .. } => mute,
            other => panic!("{name} cannot log in: {other:?}"),
        }
    }

    /// Resumes `name` with `token`: the next token, if it was valid.
    fn resume_blocking(&self, name: &str, token: &str) -> Option<String> {
        match self
            .login_blocking(name, &Credential::Token(token.into()), 600)
            .unwrap()
        {
            AuthOutcome::Valid {
                token: Some((next, _)),
                ..
            } => Some(next),
            AuthOutcome::Invalid => None,
            other => panic!("unexpected {other:?}"),
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
        assert!(a.create_blocking("bob", "pw2").unwrap());
        a.set_mute("amy", 3600).unwrap();
        (a.issue_token("amy", 600), a.issue_token("amy", 600))
    };
    let a = Accounts::open(dir.path(), CHEAP).unwrap();
    let acc = a.verify_blocking("amy", "pw1").unwrap().expect("valid");
    assert!(acc.hash.starts_with("$argon2id$"));
    assert!(acc.is_admin());
    assert!(a.verify_blocking("amy", "wrong").unwrap().is_none());
    assert!(a.verify_blocking("nobody", "pw1").unwrap().is_none());
    assert!(!a.redeem_token("bob", &kept), "a token is bound to its name");
    assert!(!a.redeem_token("amy", &token), "a newer token retires the older");
    assert!(a.redeem_token("amy", &kept), "tokens outlive a clean stop");
    assert!(!a.redeem_token("amy", &kept), "a token is single-use");
    assert!(matches!(a.mute_of("amy"), Some(Some(d)) if d.as_secs() > 3500));
    a.set_mute("amy", 0).unwrap();
    assert_eq!(a.mute_of("amy"), None, "a lifted mute is seen by the next login");
}

#[test]
fn logins_past_what_the_writer_holds_in_memory_are_written_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tokens: Vec<(String, String)> = {
        let a = Accounts::open_holding(dir.path(), CHEAP, 3).unwrap();
        let tokens: Vec<_> = (0..7)
            .map(|i| {
                let name = format!("u{i}");
                assert!(a.create_blocking(&name, "pw").unwrap());
                let token = a.issue_token(&name, 600);
                (name, token)
            })
            .collect();
        tokens
            .iter()
            .map(|(name, token)| {
                let next = a.resume_blocking(name, token);
                (name.clone(), next.expect("each token works"))
            })
            .collect()
    };
    let a = Accounts::open_holding(dir.path(), CHEAP, 3).unwrap();
    for (name, token) in &tokens {
        assert!(
            a.redeem_token(name, token),
            "{name}'s newest token outlives a clean stop"
        );
    }
}

#[test]
fn a_resume_storm_from_many_threads_swaps_each_token_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = Accounts::open(dir.path(), CHEAP).unwrap();
    let mut tokens = Vec::new();
    for i in 0..64 {
        let name = format!("u{i}");
        assert!(a.create_blocking(&name, "pw").unwrap());
        tokens.push((name.clone(), a.issue_token(&name, 600)));
    }
    // Every token is presented twice, by two of 16 threads at once, so
    // the two presentations race.
    let resume =
        |(name, token): &(String, String)| a.resume_blocking(name, token).map(|new| (name.clone(), new));
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
