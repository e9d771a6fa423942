//! [`Backoff`]: how TTSCM waits between attempts of something that failed for a passing
//! reason (a 5xx from ConnectWise, a contended audit chain): exponential, capped, with full
//! jitter, and limited by a number of attempts and/or a deadline.
//!
//! The wait before retry `n` (`n` = 0 after the first failure) is drawn uniformly from
//! `0..=min(max, first × 2ⁿ)` ("full jitter": callers that failed together spread out instead of
//! retrying in step). Waits and the deadline run on tokio's clock, so tests pause time.
//!
//! A helper of our own rather than the `backon` crate: backon's jitter adds up to one more delay
//! on top of the exponential one (not full jitter), its limit is the sum of planned delays rather
//! than the time actually passed (attempts included), and the callers here do work of their own
//! between attempts (reload a chain head, honour `Retry-After`), which a plain loop over
//! [`Retries::next_delay`] shows best.
//!
//! ```
//! # async fn example() -> Result<(), &'static str> {
//! use std::time::Duration;
//! use ttscm_runtime::retry::Backoff;
//!
//! let backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(50))
//!     .max_attempts(5)
//!     .deadline(Duration::from_secs(2));
//! let mut retries = backoff.start();
//! loop {
//!     match try_once().await {
//!         Ok(()) => return Ok(()),
//!         Err(passing) if retries.wait().await => tracing::debug!(passing, "retrying"),
//!         Err(lasting) => return Err(lasting),
//!     }
//! }
//! # }
//! # async fn try_once() -> Result<(), &'static str> { Ok(()) }
//! ```

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// A retry policy: exponential backoff with full jitter, a cap, and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first wait; doubled per retry.
    pub first: Duration,
    /// The highest ceiling of a wait.
    pub max: Duration,
    /// Attempts in all, the first included (1: never retry).
    pub max_attempts: u32,
    /// The time from [`Backoff::start`] after which no further attempt starts (`None`: only
    /// `max_attempts` limits).
    pub deadline: Option<Duration>,
}

impl Backoff {
    /// Waits of at most `first`, doubling per retry up to `max`; unlimited attempts and no
    /// deadline until [`Backoff::max_attempts`] or [`Backoff::deadline`] set them.
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            max_attempts: u32::MAX,
            deadline: None,
        }
    }

    /// The same policy with at most `attempts` attempts in all, the first included.
    pub const fn max_attempts(self, attempts: u32) -> Self {
        Self {
            max_attempts: attempts,
            ..self
        }
    }

    /// The same policy starting no attempt later than `deadline` after the first.
    pub const fn deadline(self, deadline: Duration) -> Self {
        Self {
            deadline: Some(deadline),
            ..self
        }
    }

    /// The longest wait before retry `retry` (0 after the first failure): `first × 2^retry`,
    /// at most `max`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        self.first.saturating_mul(1u32 << retry.min(31)).min(self.max)
    }

    /// A wait before retry `retry`: uniform in `0..=ceiling(retry)`.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = u64::try_from(self.ceiling(retry).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=ceiling))
    }

    /// Begins a sequence of attempts now (the deadline counts from here).
    pub fn start(&self) -> Retries {
        Retries {
            backoff: *self,
            failures: 0,
            started: Instant::now(),
        }
    }
}

/// The attempts of one operation under a [`Backoff`].
#[derive(Debug, Clone)]
pub struct Retries {
    backoff: Backoff,
    /// Failed attempts so far.
    failures: u32,
    started: Instant,
}

impl Retries {
    /// Failed attempts recorded so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failed attempt and answers how long to wait before the next one, or `None`
    /// when no attempt is left (the attempts are used up, or the deadline has passed). A wait
    /// never reaches past the deadline.
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.backoff.max_attempts {
            return None;
        }
        let delay = self.backoff.delay(self.failures - 1);
        match self.backoff.deadline {
            None => Some(delay),
            Some(deadline) => {
                let left = deadline.checked_sub(self.started.elapsed())?;
                (!left.is_zero()).then(|| delay.min(left))
            }
        }
    }

    /// Records a failed attempt and waits [`Retries::next_delay`]; answers whether another
    /// attempt may start (`false` at once when none is left).
    pub async fn wait(&mut self) -> bool {
        match self.next_delay() {
            Some(delay) => {
                tokio::time::sleep(delay).await;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_from_the_first_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ceilings: Vec<_> = (0..6).map(|n| backoff.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(1));
        let huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.ceiling(40), Duration::MAX);
    }

    #[test]
    fn waits_are_spread_over_the_whole_range_below_the_ceiling() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<_> = (0..2000).map(|_| backoff.delay(2)).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(400)));
        assert!(
            waits.iter().any(|w| *w < Duration::from_millis(100)),
            "full jitter reaches low"
        );
        assert!(waits.iter().any(|w| *w > Duration::from_millis(300)), "and high");
        assert_eq!(
            Backoff::new(Duration::ZERO, Duration::ZERO).delay(3),
            Duration::ZERO
        );
    }

    #[test]
    fn attempts_stop_at_the_maximum() {
        let backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(10)).max_attempts(3);
        let mut retries = backoff.start();
        assert!(retries.next_delay().is_some());
        assert!(retries.next_delay().is_some());
        assert_eq!(retries.next_delay(), None);
        assert_eq!(retries.failures(), 3);
        let mut never = backoff.max_attempts(1).start();
        assert_eq!(never.next_delay(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn no_attempt_starts_after_the_deadline_and_no_wait_reaches_past_it() {
        let backoff =
            Backoff::new(Duration::from_secs(10), Duration::from_secs(10)).deadline(Duration::from_secs(1));
        let mut retries = backoff.start();
        tokio::time::advance(Duration::from_millis(900)).await;
        let wait = retries.next_delay().expect("before the deadline");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(retries.next_delay(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_sleeps_on_the_paused_clock_until_the_deadline_then_refuses() {
        let backoff =
            Backoff::new(Duration::from_millis(200), Duration::from_secs(5)).deadline(Duration::from_secs(3));
        let started = Instant::now();
        let mut retries = backoff.start();
        let mut attempts = 1;
        while retries.wait().await {
            attempts += 1;
            assert!(started.elapsed() <= Duration::from_secs(3));
        }
        assert!(attempts > 2, "{attempts}");
        assert!(started.elapsed() <= Duration::from_secs(3));
    }
}
