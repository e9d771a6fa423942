//! Failed sign-ins in the audit log at a capped rate: a stranger can fail to sign in as often
//! as the edge lets it, but cannot grow the log without bound.
//!
//! A failure is recorded while both its client address's allowance
//! (`TTSCM_AUDIT__FAILED_SIGN_INS_PER_CLIENT` a minute) and everybody's
//! (`TTSCM_AUDIT__FAILED_SIGN_INS_PER_MINUTE`) last; the rest are counted, and the count goes
//! into the log as one `auth.failures_unrecorded` entry a minute (or with the next failure that
//! is recorded, whichever comes first). Limits are `governor`'s keyed and direct GCRA limiters
//! (a minute's allowance may be spent at once); the per-client state is pruned every minute and
//! never holds more than [`MAX_CLIENTS`] addresses (beyond that, only the overall allowance
//! applies).

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use ttscm_runtime::Settings;

/// The most client addresses whose allowance is tracked at once.
pub const MAX_CLIENTS: usize = 100_000;

/// Failures not recorded since `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrecorded {
    /// How many.
    pub count: u64,
    /// When the first of them happened (ISO-8601).
    pub since: String,
}

/// What to do with a failure.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Record it, and record these failures that were only counted so far (if any).
    Record(Option<Unrecorded>),
    /// Only count it.
    Count,
}

/// The allowances and the count of failures not recorded.
pub struct FailureLimits {
    per_client: DefaultKeyedRateLimiter<String>,
    overall: DefaultDirectRateLimiter,
    unrecorded: Mutex<Option<Unrecorded>>,
}

impl std::fmt::Debug for FailureLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureLimits").finish_non_exhaustive()
    }
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl FailureLimits {
    /// The limits `settings` set.
    pub fn new(settings: &Settings) -> Self {
        Self::with(
            settings.audit.failed_sign_ins_per_client,
            settings.audit.failed_sign_ins_per_minute,
        )
    }

    /// `per_client` recorded failures per client a minute, `overall` from everybody (each at
    /// least 1).
    pub fn with(per_client: u32, overall: u32) -> Self {
        Self {
            per_client: RateLimiter::keyed(per_minute(per_client)),
            overall: RateLimiter::direct(per_minute(overall)),
            unrecorded: Mutex::new(None),
        }
    }

    /// Whether a failure from `client` (its address; `None` when unknown) is recorded or only
    /// counted.
    pub fn judge(&self, client: Option<&str>) -> Verdict {
        // With too many addresses tracked (until the next pruning), only the overall allowance
        // applies.
        let client_allowed = self.per_client.len() >= MAX_CLIENTS
            || self
                .per_client
                .check_key(&client.unwrap_or("unknown").to_owned())
                .is_ok();
        if client_allowed && self.overall.check().is_ok() {
            return Verdict::Record(self.unrecorded.lock().take());
        }
        let mut unrecorded = self.unrecorded.lock();
        match unrecorded.as_mut() {
            Some(u) => u.count += 1,
            None => {
                *unrecorded = Some(Unrecorded {
                    count: 1,
                    since: ttscm_runtime::clock::now_iso(),
                });
            }
        }
        Verdict::Count
    }

    /// The failures counted and not recorded yet (taken: the caller records them), and prunes
    /// addresses whose allowance is full again.
    pub fn take_unrecorded(&self) -> Option<Unrecorded> {
        self.per_client.retain_recent();
        self.per_client.shrink_to_fit();
        self.unrecorded.lock().take()
    }

    /// Puts back failures taken but not recorded (the log was unavailable).
    pub fn restore(&self, taken: Unrecorded) {
        let mut unrecorded = self.unrecorded.lock();
        match unrecorded.as_mut() {
            Some(u) => {
                u.count += taken.count;
                u.since = taken.since;
            }
            None => *unrecorded = Some(taken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each client gets its allowance, everybody together the overall one; what is refused is
    /// counted once and handed to the next recorded failure.
    #[test]
    fn failures_beyond_the_allowances_are_counted_not_recorded() {
        let limits = FailureLimits::with(2, 3);
        assert_eq!(limits.judge(Some("198.51.100.1")), Verdict::Record(None));
        assert_eq!(limits.judge(Some("198.51.100.1")), Verdict::Record(None));
        assert_eq!(limits.judge(Some("198.51.100.1")), Verdict::Count);
        assert_eq!(limits.judge(Some("198.51.100.1")), Verdict::Count);
        // Another client still has its own allowance, and takes the count with it.
        match limits.judge(Some("198.51.100.2")) {
            Verdict::Record(Some(u)) => assert_eq!(u.count, 2),
            other => panic!("expected a record carrying the count, got {other:?}"),
        }
        // The overall allowance (3) is spent now, whoever asks.
        assert_eq!(limits.judge(Some("198.51.100.3")), Verdict::Count);
        let taken = limits.take_unrecorded().expect("one failure counted");
        assert_eq!(taken.count, 1);
        assert_eq!(limits.take_unrecorded(), None);
        limits.restore(taken.clone());
        assert_eq!(limits.take_unrecorded(), Some(taken));
    }
}
