//! Restart delays: exponential from a floor to a ceiling, reset after a stable run.

use std::time::Duration;

/// Tracks consecutive quick failures of the process.
#[derive(Debug, Clone)]
pub struct Backoff {
    floor: Duration,
    ceiling: Duration,
    /// Failures since the last stable run.
    streak: u32,
}

impl Backoff {
    pub fn new(floor: Duration, ceiling: Duration) -> Self {
        Backoff {
            floor,
            ceiling: ceiling.max(floor),
            streak: 0,
        }
    }

    /// The delay before the next start, given how long the last run lasted. A run at least as
    /// long as the ceiling counts as stable and resets the streak, so a process that crashes once
    /// a day restarts at the floor, not at the ceiling.
    pub fn next_delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.ceiling.max(Duration::from_millis(1)) {
            self.streak = 0;
        }
        let factor = 1u32.checked_shl(self.streak.min(31)).unwrap_or(u32::MAX);
        let delay = self.floor.saturating_mul(factor).min(self.ceiling);
        self.streak = self.streak.saturating_add(1);
        delay
    }

    /// Forget the streak (an explicit `on` or restart by an operator).
    pub fn reset(&mut self) {
        self.streak = 0;
    }
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
    fn a_zero_floor_restarts_at_once() {
        let mut b = Backoff::new(Duration::ZERO, Duration::from_secs(30));
        assert!((0..100).all(|_| b.next_delay(MS) == Duration::ZERO));
    }
}
