//! Local denials: limiter buckets this instance knows are empty until a
//! given time, answered here without asking their owner.
//!
//! When a limiter answers "nothing granted, nothing left, next token in X"
//! the bucket stays empty for X, whoever asks and wherever: a refill is
//! the only way tokens come back, but for Envoy's `release` of a refused
//! request and a returned lease. So every instance that sees such an
//! answer (its owner included) answers that key's requests itself with
//! "0, reset in the time left" until then; a flood of over-limit requests
//! never reaches the owner, nor its slot thread.
//!
//! Bounds: a release or a returned lease that reaches the owner clears
//! the owner's entry, but other instances keep denying until the refill
//! they were told of — at most one refill interval of under-admission.
//! Entries are bounded ([`MAX_DENIED_KEYS`]); past that, denials are asked
//! of the owner as before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use vss_slot_host::Acquired;

/// Most buckets remembered as empty at once, over every slot.
pub const MAX_DENIED_KEYS: usize = 100_000;
/// Shortest time between two scans for entries past their refill.
const PRUNE_EVERY: Duration = Duration::from_millis(100);

/// Buckets known empty until a time, by slot and key.
#[derive(Debug, Default)]
pub struct Denials {
    by_slot: Mutex<HashMap<u32, HashMap<String, Instant>>>,
    /// When entries past their refill were last dropped.
    pruned: Mutex<Option<Instant>>,
}

impl Denials {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, HashMap<String, Instant>>> {
        self.by_slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The answer for `key` of `slot` if its bucket is known empty now.
    pub fn denied(&self, slot: u32, key: &str) -> Option<Acquired> {
        let now = Instant::now();
        let until = *self.lock().get(&slot)?.get(key)?;
        let left = until.checked_duration_since(now).filter(|d| !d.is_zero())?;
        Some(Acquired {
            granted: 0,
            remaining: 0,
            reset_ms: ceil_ms(left),
        })
    }

    /// Learns from a limiter's answer: an empty bucket stays empty until
    /// its next refill.
    pub fn learn(&self, slot: u32, key: &str, answer: &Acquired) {
        if answer.granted != 0 || answer.remaining != 0 || answer.reset_ms == 0 {
            return;
        }
        let until = Instant::now() + Duration::from_millis(answer.reset_ms);
        let mut by_slot = self.lock();
        let held: usize = by_slot.values().map(HashMap::len).sum();
        if held >= MAX_DENIED_KEYS {
            // Pruned at most once per PRUNE_EVERY: with that many keys
            // denied at once, a scan per denial would cost more than the
            // hop it saves.
            let now = Instant::now();
            let mut pruned = self.pruned.lock().unwrap_or_else(|p| p.into_inner());
            if pruned.is_some_and(|at| now.duration_since(at) < PRUNE_EVERY) {
                return;
            }
            *pruned = Some(now);
            for keys in by_slot.values_mut() {
                keys.retain(|_, until| *until > now);
            }
            if by_slot.values().map(HashMap::len).sum::<usize>() >= MAX_DENIED_KEYS {
                return;
            }
        }
        by_slot
            .entry(slot)
            .or_default()
            .insert(key.to_string(), until);
    }

    /// Tokens came back to `key`'s bucket (a release, a returned lease).
    pub fn forget(&self, slot: u32, key: &str) {
        if let Some(keys) = self.lock().get_mut(&slot) {
            keys.remove(key);
        }
    }

    /// Forgets everything: the slots' configuration changed.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Buckets remembered as empty.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }
}

/// Whole milliseconds, rounded up, so "reset in 0 ms" never means "not yet".
fn ceil_ms(d: Duration) -> u64 {
    let ms = d.as_millis();
    let whole = u64::try_from(ms).unwrap_or(u64::MAX);
    if Duration::from_millis(whole) < d {
        whole.saturating_add(1)
    } else {
        whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty(reset_ms: u64) -> Acquired {
        Acquired {
            granted: 0,
            remaining: 0,
            reset_ms,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_bucket_is_denied_here_until_its_refill() {
        let d = Denials::default();
        d.learn(1, "alice", &empty(300));
        assert_eq!(d.denied(1, "alice"), Some(empty(300)));
        assert_eq!(d.denied(1, "bob"), None, "another key");
        assert_eq!(d.denied(2, "alice"), None, "another slot");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(d.denied(1, "alice"), Some(empty(200)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(d.denied(1, "alice"), None, "refilled");
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_bucket_with_nothing_left_is_remembered() {
        let d = Denials::default();
        let partial = Acquired {
            granted: 2,
            remaining: 0,
            reset_ms: 500,
        };
        d.learn(1, "a", &partial);
        let some_left = Acquired {
            granted: 0,
            remaining: 3,
            reset_ms: 500,
        };
        d.learn(1, "b", &some_left);
        d.learn(1, "c", &empty(0));
        assert_eq!(d.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn returned_tokens_and_a_new_configuration_clear_denials() {
        let d = Denials::default();
        d.learn(1, "a", &empty(900));
        d.learn(1, "b", &empty(900));
        d.forget(1, "a");
        assert_eq!(d.denied(1, "a"), None);
        assert!(d.denied(1, "b").is_some());
        d.clear();
        assert_eq!(d.len(), 0);
    }
}
