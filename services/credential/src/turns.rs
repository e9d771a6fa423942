//! Turns to write a credential: this process's writers of one credential go one at a time.
//!
//! A write of a credential's name or values reads it, then writes conditionally on the revision
//! read (see [`crate::service::Service::write_version`]). Writers of one credential that overlap
//! all read the same revision, one wins, the others read again and retry — under a burst on one
//! credential most of the work was lost rounds, answers took over a second, and the last
//! writer could run out of attempts (409) although nobody else asked for anything conflicting.
//! With a turn, a writer waits for the one before it (a fair, first-come queue) and then reads
//! the credential as that one left it, so writers in one process never lose to each other.
//! Writers in other processes (a second replica, a command) still meet the conditional write,
//! and the attempts after a lost round wait a jittered backoff ([`WRITE_BACKOFF`]).
//!
//! A write — its wait for the turn and its attempts together — starts nothing later than one
//! bus request's deadline after it began (`TTSCM_REQUEST_TIMEOUT_MS`, 5 s by default:
//! [`crate::service::Service::turn_wait`]): by then its caller has had a 504, and the write
//! should not land any more (a vault that hangs holds the turn of a fields write that seals
//! through it). Within that time a write that keeps losing to other replicas tries again
//! rather than giving up after a count of attempts: with eight attempts, 150 overlapping
//! renames of one credential through two replicas ended in two or three 409s in 5 of 6 runs.
//!
//! Nothing is kept for a credential nobody is writing: a turn's entry is removed when its last
//! holder or waiter leaves (also when a waiting call is cancelled).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedMutexGuard};
use ttscm_runtime::retry::Backoff;

/// Waits between the attempts of one write of a credential that another process changed
/// meanwhile: full jitter from at most 1 ms, doubling to 32 ms; the attempts are limited by
/// the write's deadline ([`crate::service::Service::turn_to_write`] sets it), not counted.
pub(crate) const WRITE_BACKOFF: Backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(32));

/// Each credential's queue of writers in this process, while it has any.
#[derive(Debug, Default)]
pub struct WriteTurns {
    queues: parking_lot::Mutex<HashMap<String, Queue>>,
}

#[derive(Debug)]
struct Queue {
    lock: Arc<Mutex<()>>,
    /// Holders and waiters: the entry goes when the last leaves.
    users: usize,
}

/// One writer's turn (or its place in the queue, while [`WriteTurns::take`] waits).
pub(crate) struct Turn<'a> {
    turns: &'a WriteTurns,
    id: String,
    _held: Option<OwnedMutexGuard<()>>,
}

impl WriteTurns {
    /// Waits until no earlier writer of credential `id` in this process holds its turn, and
    /// holds it until the answer is dropped.
    pub(crate) async fn take(&self, id: &str) -> Turn<'_> {
        let lock = {
            let mut queues = self.queues.lock();
            let queue = queues.entry(id.to_owned()).or_insert_with(|| Queue {
                lock: Arc::default(),
                users: 0,
            });
            queue.users += 1;
            queue.lock.clone()
        };
        // Built before waiting, so a cancelled wait leaves the queue too.
        let mut turn = Turn {
            turns: self,
            id: id.to_owned(),
            _held: None,
        };
        turn._held = Some(lock.lock_owned().await);
        turn
    }

    /// Credentials with a writer holding or awaiting a turn.
    pub fn in_use(&self) -> usize {
        self.queues.lock().len()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut queues = self.turns.queues.lock();
        if let Some(queue) = queues.get_mut(&self.id) {
            queue.users -= 1;
            if queue.users == 0 {
                queues.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::FutureExt;

    use super::*;

    #[tokio::test]
    async fn writers_of_one_credential_go_one_at_a_time_in_arrival_order() {
        let turns = Arc::new(WriteTurns::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let first = turns.take("c1").await;
        let mut writers = Vec::new();
        for n in 0..8 {
            let (queue, inside, order) = (turns.clone(), inside.clone(), order.clone());
            writers.push(tokio::spawn(async move {
                let _turn = queue.take("c1").await;
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "alone in its turn");
                order.lock().push(n);
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
            // Queued in this order before the next one arrives.
            while turns.queues.lock()["c1"].users < n + 2 {
                tokio::task::yield_now().await;
            }
        }
        // Another credential's writer does not wait for c1's.
        drop(turns.take("c2").await);
        assert!(order.lock().is_empty(), "all wait for the first holder");
        drop(first);
        for writer in writers {
            writer.await.expect("writer");
        }
        assert_eq!(*order.lock(), (0..8).collect::<Vec<_>>());
        assert_eq!(turns.in_use(), 0, "nothing kept once nobody writes");
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_the_queue() {
        let turns = WriteTurns::default();
        let held = turns.take("c1").await;
        // Polled once (it waits: the turn is held), then dropped.
        assert!(
            turns.take("c1").now_or_never().is_none(),
            "waits while the turn is held"
        );
        assert_eq!(turns.queues.lock()["c1"].users, 1);
        drop(held);
        assert_eq!(turns.in_use(), 0);
        drop(turns.take("c1").await);
        assert_eq!(turns.in_use(), 0);
    }
}
