//! The one backoff of ochopod: delays that double from a floor to a ceiling, for a streak of
//! failures, optionally with jitter. Pure (but for the jitter's randomness), no task of its own:
//! the loop that retries owns one and asks it how long to wait.
//!
//! Who uses it:
//! - the supervise actor, for restarts of the process (`process.restart.backoff` to
//!   `max_backoff`); a run at least as long as the ceiling resets the streak
//!   ([`Backoff::next_delay`]);
//! - the sync actor, between attempts to reach ZooKeeper (250 ms to a quarter of the session
//!   timeout, with jitter so that the pods of a host do not all knock at once);
//! - `ochopod ctl`'s watcher (`events --follow`, `ui`), between attempts at a new session.
//!
//! Fixed retry intervals elsewhere (the leader's 1 s re-read after a failed read, the accept
//! loop's pause after an fd shortage, `ctl wait`'s 500 ms poll) are not backoffs: they retry
//! something cheap on a loop that a watch or a deadline also wakes, and stay plain sleeps.

use std::time::Duration;

/// A streak of failures and the delay each earns.
#[derive(Debug, Clone)]
pub struct Backoff {
    floor: Duration,
    ceiling: Duration,
    /// Failures since the last success (or stable run).
    streak: u32,
    /// Whether each delay gets a random extra of up to itself.
    jitter: bool,
}

impl Backoff {
    pub fn new(floor: Duration, ceiling: Duration) -> Self {
        Backoff {
            floor,
            ceiling: ceiling.max(floor),
            streak: 0,
            jitter: false,
        }
    }

    /// Each delay gets a random extra between none and the delay itself (so up to twice the
    /// ceiling): retries of many clients spread out instead of arriving together.
    pub fn with_jitter(mut self) -> Self {
        self.jitter = true;
        self
    }

    /// The delay before the next attempt: the floor, doubled for each failure of the streak, at
    /// most the ceiling (then the jitter).
    pub fn next_wait(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.streak.min(31)).unwrap_or(u32::MAX);
        let delay = self.floor.saturating_mul(factor).min(self.ceiling);
        self.streak = self.streak.saturating_add(1);
        match self.jitter {
            true => delay.saturating_add(delay.mul_f64(unit_random())),
            false => delay,
        }
    }

    /// The delay before the next start, given how long the last run lasted. A run at least as
    /// long as the ceiling counts as stable and resets the streak, so a process that crashes once
    /// a day restarts at the floor, not at the ceiling.
    pub fn next_delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.ceiling.max(Duration::from_millis(1)) {
            self.streak = 0;
        }
        self.next_wait()
    }

    /// Forget the streak (an explicit `on` or restart by an operator).
    pub fn reset(&mut self) {
        self.streak = 0;
    }
}

/// A number in [0, 1): the hash of nothing under a fresh `RandomState`, whose keys std seeds from
/// the OS once per thread and then varies for each new one. Enough to spread retries; not for
/// secrets.
fn unit_random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    // The top 53 bits: exactly representable, so the result stays below 1.
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_from_floor_to_ceiling_then_resets_after_a_stable_run() {
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        let quick = 10 * MS;
        let delays: Vec<_> = (0..6).map(|_| b.next_delay(quick)).collect();
        assert_eq!(
            delays,
            vec![100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        assert_eq!(b.next_delay(1500 * MS), 100 * MS);
        assert_eq!(b.next_delay(quick), 200 * MS);
    }

    #[test]
    fn jitter_adds_up_to_the_delay_itself() {
        let mut b = Backoff::new(100 * MS, 400 * MS).with_jitter();
        let delays: Vec<_> = (0..5).map(|_| b.next_wait()).collect();
        for (d, plain) in delays.iter().zip([100, 200, 400, 400, 400]) {
            assert!(*d >= plain * MS && *d < 2 * plain * MS, "{d:?} for {plain} ms");
        }
        let spread: std::collections::BTreeSet<_> = (0..20).map(|_| b.next_wait()).collect();
        assert!(spread.len() > 1, "jitter varies: {spread:?}");
    }

    #[test]
    fn a_zero_floor_restarts_at_once() {
        let mut b = Backoff::new(Duration::ZERO, Duration::from_secs(30));
        assert!((0..100).all(|_| b.next_delay(MS) == Duration::ZERO));
    }
}
