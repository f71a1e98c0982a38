//! Leased tokens: a hot token bucket answered on an instance that does not
//! own it, from tokens its owner took out of the bucket for it.
//!
//! An instance counts the acquires it forwards per bucket. A bucket that
//! gets [`HOT_PER_WINDOW`] of them within [`WINDOW`] is hot: the instance
//! asks the owner for a lease — an acquire of many tokens at once, so the
//! tokens leave the bucket before they are granted here — and answers
//! that bucket's acquires from the lease, on the reactor, with no hop to
//! the owner nor to a slot thread. Nothing can be granted twice: a lease
//! holds tokens the owner has already taken from the bucket.
//!
//! A lease's size follows the local rate ([`LEASE_FOR`] worth of it) and
//! what is left: at most a `1 / (2 × instances)` share of the tokens the
//! owner last reported, and none when that share is under
//! [`MIN_LEASE`] — a near-empty bucket is answered by its owner alone, so
//! its last tokens are not stranded on one instance. A lease lasts
//! [`LEASE_FOR`]; the tokens it still holds then (and at shutdown) go back
//! to the bucket through a `release`.
//!
//! An acquire answered from a lease reports as remaining what the owner
//! held when it last answered this instance plus what is left of the lease.
//!
//! Bounds (docs/cluster.md): no over-admission; under-admission at most
//! the tokens leased out and unused (returned within [`LEASE_FOR`], lost if
//! their holder dies); a leased token is spent at most [`LEASE_FOR`] after
//! it left the bucket. An acquire asking more than its instance's lease
//! holds goes to the owner, whose "rest" then leaves out the other
//! instances' leases.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use vss_slot_host::Acquired;

/// The span over which forwarded acquires are counted.
pub const WINDOW: Duration = Duration::from_millis(100);
/// Forwarded acquires of one bucket within [`WINDOW`] that make it hot.
pub const HOT_PER_WINDOW: u32 = 10;
/// How long a lease lasts, and how much of the local rate it covers.
pub const LEASE_FOR: Duration = Duration::from_millis(250);
/// The smallest lease worth asking for.
pub const MIN_LEASE: u64 = 2;
/// Most buckets tracked at once.
pub const MAX_TRACKED: usize = 10_000;

#[derive(Debug)]
struct Bucket {
    window_start: Instant,
    forwarded: u32,
    /// The tokens the owner reported left, last time it answered.
    last_remaining: u64,
    lease: Option<Lease>,
    /// A lease is being asked for.
    asking: bool,
    last_used: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    tokens: u64,
    expires: Instant,
    /// When the bucket refills next, as the owner said.
    reset_at: Instant,
}

/// A lease to ask a bucket's owner for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub slot: u32,
    pub key: String,
    pub tokens: u64,
}

/// Unused leased tokens to give back to a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unused {
    pub slot: u32,
    pub key: String,
    pub tokens: u64,
}

/// This instance's leases and the rates that call for them.
#[derive(Debug, Default)]
pub struct Leases {
    buckets: Mutex<HashMap<u32, HashMap<String, Bucket>>>,
    /// Told each time a lease asked for is granted or refused.
    answered: tokio::sync::Notify,
}

impl Leases {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, HashMap<String, Bucket>>> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `asked` tokens from the bucket's lease, if it holds that many.
    pub fn take(&self, slot: u32, key: &str, asked: u64) -> Option<Acquired> {
        let now = Instant::now();
        let mut buckets = self.lock();
        let bucket = buckets.get_mut(&slot)?.get_mut(key)?;
        let lease = bucket.lease.as_mut().filter(|l| l.expires > now)?;
        if asked == 0 || lease.tokens < asked {
            return None;
        }
        lease.tokens -= asked;
        bucket.last_used = now;
        Some(Acquired {
            granted: u32::try_from(asked).unwrap_or(u32::MAX),
            // What the owner held when it last answered here, and what is
            // left of the lease: the bucket's rest as far as this instance
            // can tell.
            remaining: bucket.last_remaining.saturating_add(lease.tokens),
            reset_ms: millis(lease.reset_at.saturating_duration_since(now)),
        })
    }

    /// Counts an acquire forwarded to the bucket's owner and what it
    /// answered; the lease to ask for, if the bucket is hot and has room.
    pub fn forwarded(
        &self,
        slot: u32,
        key: &str,
        answer: &Acquired,
        instances: usize,
    ) -> Option<Want> {
        let now = Instant::now();
        let mut buckets = self.lock();
        let tracked: usize = buckets.values().map(HashMap::len).sum();
        if !buckets.get(&slot).is_some_and(|k| k.contains_key(key)) {
            // Full: the lease loop's pruning ([`Leases::expire`]) makes room.
            // Pruning here would scan every bucket on each new key while
            // many keys are in use.
            if tracked >= MAX_TRACKED {
                return None;
            }
            buckets.entry(slot).or_default().insert(
                key.to_string(),
                Bucket {
                    window_start: now,
                    forwarded: 0,
                    last_remaining: 0,
                    lease: None,
                    asking: false,
                    last_used: now,
                },
            );
        }
        let bucket = buckets.get_mut(&slot)?.get_mut(key)?;
        if now.duration_since(bucket.window_start) > WINDOW {
            bucket.window_start = now;
            bucket.forwarded = 0;
        }
        bucket.forwarded = bucket.forwarded.saturating_add(1);
        bucket.last_remaining = answer.remaining;
        bucket.last_used = now;
        let has_lease = bucket
            .lease
            .is_some_and(|l| l.expires > now && l.tokens > 0);
        if bucket.forwarded < HOT_PER_WINDOW || bucket.asking || has_lease {
            return None;
        }
        let elapsed = now
            .duration_since(bucket.window_start)
            .max(Duration::from_millis(1));
        let rate = f64::from(bucket.forwarded) / elapsed.as_secs_f64();
        let for_the_rate = (rate * LEASE_FOR.as_secs_f64()).ceil() as u64;
        let share = answer.remaining / (2 * instances.max(1) as u64);
        let tokens = for_the_rate.min(share);
        if tokens < MIN_LEASE {
            return None;
        }
        bucket.asking = true;
        Some(Want {
            slot,
            key: key.to_string(),
            tokens,
        })
    }

    /// What the owner granted for a lease asked for (0 tokens: none).
    /// Tokens of a lease still held are returned to the caller to give
    /// back (only one lease per bucket at once).
    pub fn granted(&self, slot: u32, key: &str, answer: &Acquired) -> Option<Unused> {
        let now = Instant::now();
        let mut buckets = self.lock();
        let Some(bucket) = buckets.get_mut(&slot).and_then(|k| k.get_mut(key)) else {
            // Not tracked any more: give it all back.
            return (answer.granted > 0).then(|| Unused {
                slot,
                key: key.to_string(),
                tokens: u64::from(answer.granted),
            });
        };
        bucket.asking = false;
        self.answered.notify_waiters();
        bucket.last_remaining = answer.remaining;
        if answer.granted == 0 {
            return None;
        }
        let old = bucket.lease.replace(Lease {
            tokens: u64::from(answer.granted),
            expires: now + LEASE_FOR,
            reset_at: now + Duration::from_millis(answer.reset_ms),
        });
        old.filter(|l| l.tokens > 0).map(|l| Unused {
            slot,
            key: key.to_string(),
            tokens: l.tokens,
        })
    }

    /// The lease asked for could not be had.
    pub fn refused(&self, slot: u32, key: &str) {
        if let Some(bucket) = self.lock().get_mut(&slot).and_then(|k| k.get_mut(key)) {
            bucket.asking = false;
        }
        self.answered.notify_waiters();
    }

    /// Waits, at most `within`, until no lease of the bucket is being asked
    /// for. The answer to a lease and to acquires sent beside it come back
    /// in any order: an acquire refused for tokens that went into the lease
    /// can wait for it and be answered from it.
    pub async fn asked(&self, slot: u32, key: &str, within: Duration) {
        let until = Instant::now() + within;
        loop {
            let answered = self.answered.notified();
            let asking = self
                .lock()
                .get(&slot)
                .and_then(|k| k.get(key))
                .is_some_and(|b| b.asking);
            if !asking || tokio::time::timeout_at(until, answered).await.is_err() {
                return;
            }
        }
    }

    /// Ends the leases that ran out of time; their unused tokens are to be
    /// given back.
    pub fn expire(&self) -> Vec<Unused> {
        let now = Instant::now();
        let mut unused = Vec::new();
        let mut buckets = self.lock();
        for (slot, keys) in buckets.iter_mut() {
            for (key, bucket) in keys.iter_mut() {
                if bucket.lease.is_some_and(|l| l.expires <= now)
                    && let Some(lease) = bucket.lease.take()
                    && lease.tokens > 0
                {
                    unused.push(Unused {
                        slot: *slot,
                        key: key.clone(),
                        tokens: lease.tokens,
                    });
                }
            }
        }
        prune(&mut buckets, now);
        unused
    }

    /// Ends every lease (shutdown, a new configuration); their unused
    /// tokens are to be given back.
    pub fn end_all(&self) -> Vec<Unused> {
        let mut buckets = self.lock();
        let unused = buckets
            .iter_mut()
            .flat_map(|(slot, keys)| {
                keys.iter_mut().filter_map(|(key, bucket)| {
                    let lease = bucket.lease.take()?;
                    (lease.tokens > 0).then(|| Unused {
                        slot: *slot,
                        key: key.clone(),
                        tokens: lease.tokens,
                    })
                })
            })
            .collect();
        buckets.clear();
        unused
    }

    /// Tokens held in leases now, over every bucket.
    #[cfg(test)]
    pub fn held(&self) -> u64 {
        self.lock()
            .values()
            .flat_map(HashMap::values)
            .filter_map(|b| b.lease.map(|l| l.tokens))
            .sum()
    }
}

/// Drops buckets idle for a second that hold no lease and ask for none.
fn prune(buckets: &mut HashMap<u32, HashMap<String, Bucket>>, now: Instant) {
    for keys in buckets.values_mut() {
        keys.retain(|_, b| {
            b.lease.is_some()
                || b.asking
                || now.duration_since(b.last_used) < Duration::from_secs(1)
        });
    }
    buckets.retain(|_, keys| !keys.is_empty());
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(granted: u32, remaining: u64) -> Acquired {
        Acquired {
            granted,
            remaining,
            reset_ms: 600,
        }
    }

    /// Forwards until the bucket is hot; the lease it asks for.
    fn heat(leases: &Leases, remaining: u64) -> Option<Want> {
        (0..HOT_PER_WINDOW).find_map(|_| leases.forwarded(1, "k", &reply(1, remaining), 3))
    }

    #[tokio::test(start_paused = true)]
    async fn a_hot_bucket_asks_for_a_lease_sized_by_its_rate_and_share() {
        let leases = Leases::default();
        let want = heat(&leases, 10_000).expect("hot");
        // Ten acquires in no time: a high rate; the share caps nothing.
        assert_eq!((want.slot, want.key.as_str()), (1, "k"));
        assert!(want.tokens >= MIN_LEASE);
        assert_eq!(
            leases.forwarded(1, "k", &reply(1, 10_000), 3),
            None,
            "one request at a time"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_near_empty_bucket_is_not_leased() {
        let leases = Leases::default();
        // 11 left over 3 instances: a share of 1, under the smallest lease.
        assert_eq!(heat(&leases, 11), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_answers_what_it_covers_and_nothing_more() {
        let leases = Leases::default();
        heat(&leases, 10_000).expect("hot");
        assert_eq!(leases.granted(1, "k", &reply(5, 9_000)), None);
        let got = leases.take(1, "k", 2).expect("from the lease");
        // The owner's 9,000 after the lease, and 3 left in it.
        assert_eq!((got.granted, got.remaining, got.reset_ms), (2, 9_003, 600));
        assert!(leases.take(1, "k", 4).is_none(), "more than it holds");
        assert_eq!(leases.take(1, "k", 3).map(|g| g.remaining), Some(9_000));
        assert!(leases.take(1, "k", 1).is_none(), "spent");
        assert!(leases.take(1, "other", 1).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn unused_tokens_go_back_when_the_lease_expires_or_ends() {
        let leases = Leases::default();
        heat(&leases, 10_000).expect("hot");
        leases.granted(1, "k", &reply(8, 9_000));
        leases.take(1, "k", 3);
        assert!(leases.expire().is_empty(), "still running");
        assert_eq!(leases.held(), 5);
        tokio::time::sleep(LEASE_FOR).await;
        assert_eq!(
            leases.expire(),
            [Unused {
                slot: 1,
                key: "k".into(),
                tokens: 5
            }]
        );
        assert!(leases.take(1, "k", 1).is_none());
        assert_eq!(leases.held(), 0);
        heat(&leases, 10_000).expect("hot again");
        leases.granted(1, "k", &reply(4, 9_000));
        assert_eq!(leases.end_all().iter().map(|u| u.tokens).sum::<u64>(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_lease_lets_the_bucket_ask_again() {
        let leases = Leases::default();
        heat(&leases, 10_000).expect("hot");
        leases.refused(1, "k");
        assert!(leases.forwarded(1, "k", &reply(1, 10_000), 3).is_some());
    }
}
