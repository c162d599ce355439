//! Waiting between compare-and-swap rounds: jittered, growing pauses within a time
//! budget, so that requests racing on one session spread out instead of colliding again.

use std::time::{Duration, Instant};

/// The first pause's upper bound; each lost round doubles it, up to [`MAX_STEP`].
const FIRST_STEP: Duration = Duration::from_millis(1);
const MAX_STEP: Duration = Duration::from_millis(32);

/// The pauses of one commit (or one update of the actix-session store), which together
/// stay within a budget from the first: the budget is for a write that lost a race, as
/// `retry_budget` says.
pub(crate) struct Backoff {
    /// Set at the first pause: most commits never lose a race, and reading the clock for
    /// each of them would be wasted. (The budget is the caller's, passed to each pause
    /// rather than kept here: the commit's future holds this, and is kept small.)
    deadline: Option<Instant>,
    step: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self {
            deadline: None,
            step: FIRST_STEP,
        }
    }

    /// The next pause: a random time up to the current step ("full jitter"), cut to what
    /// is left of `budget` since the first pause, the step doubled for the one after; `None`
    /// when the budget is spent. Not itself a future, so that the commit's future keeps
    /// no clock reading across the pause.
    pub(crate) fn next_pause(&mut self, budget: Duration) -> Option<Duration> {
        let now = Instant::now();
        let deadline = *self
            .deadline
            .get_or_insert_with(|| now.checked_add(budget).unwrap_or(now));
        let left = deadline.saturating_duration_since(now);
        if left.is_zero() {
            return None;
        }
        let pause = jitter(self.step).min(left);
        self.step = (self.step * 2).min(MAX_STEP);
        Some(pause)
    }
}

/// A uniformly random duration in `0..=step` (half of it if the OS has no randomness).
fn jitter(step: Duration) -> Duration {
    let mut bytes = [0u8; 4];
    let fraction = match getrandom::getrandom(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    };
    step.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_the_step_and_varies() {
        let step = Duration::from_millis(8);
        let draws: Vec<_> = (0..100).map(|_| jitter(step)).collect();
        assert!(draws.iter().all(|d| *d <= step));
        assert!(draws.iter().any(|d| *d != draws[0]), "random, not fixed");
    }

    #[test]
    fn waits_stop_at_the_budget() {
        actix_web::rt::System::new().block_on(async {
            let started = Instant::now();
            let mut backoff = Backoff::new();
            let mut waits = 0;
            while let Some(pause) = backoff.next_pause(Duration::from_millis(50)) {
                actix_web::rt::time::sleep(pause).await;
                waits += 1;
            }
            assert!(waits >= 2, "{waits} waits");
            let spent = started.elapsed();
            assert!(
                spent >= Duration::from_millis(50),
                "uses the whole budget: {spent:?}"
            );
            // Room for a test thread on a loaded machine; a loop past its budget goes on.
            assert!(
                spent <= Duration::from_millis(400),
                "stops at the budget: {spent:?}"
            );
        });
    }

    /// A first attempt slower than the budget still gets its retries: the budget is for
    /// the commit once it lost a race.
    #[test]
    fn the_budget_counts_from_the_first_pause() {
        let mut backoff = Backoff::new();
        std::thread::sleep(Duration::from_millis(80));
        let first = backoff.next_pause(Duration::from_millis(50));
        assert!(first.is_some(), "the first pause is within the budget");
    }
}
