//! Waiting between compare-and-swap rounds: jittered, growing pauses within a time
//! budget, so that requests racing on one session spread out instead of colliding again.

use std::time::{Duration, Instant};

/// The first pause's upper bound; each lost round doubles it, up to [`MAX_STEP`].
const FIRST_STEP: Duration = Duration::from_millis(1);
const MAX_STEP: Duration = Duration::from_millis(32);

/// The pauses of one commit.
pub(crate) struct Backoff {
    deadline: Instant,
    step: Duration,
}

impl Backoff {
    /// Pauses that together stay within `budget` from now.
    pub(crate) fn new(budget: Duration) -> Self {
        Self {
            deadline: Instant::now()
                .checked_add(budget)
                .unwrap_or_else(Instant::now),
            step: FIRST_STEP,
        }
    }

    /// Waits a random time up to the current step ("full jitter"), cut to what is left of
    /// the budget, then doubles the step; `false`, at once, when the budget is spent.
    pub(crate) async fn wait(&mut self) -> bool {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        actix_web::rt::time::sleep(jitter(self.step).min(left)).await;
        self.step = (self.step * 2).min(MAX_STEP);
        true
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
            let mut backoff = Backoff::new(Duration::from_millis(50));
            let mut waits = 0;
            while backoff.wait().await {
                waits += 1;
            }
            assert!(waits >= 2, "{waits} waits");
            let spent = started.elapsed();
            assert!(
                spent >= Duration::from_millis(50),
                "uses the whole budget: {spent:?}"
            );
            assert!(
                spent <= Duration::from_millis(150),
                "stops at the budget: {spent:?}"
            );
        });
    }
}
