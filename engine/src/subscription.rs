//! Subscriptions: the change sets of one relation, delivered in time order, without loss.
//!
//! The engine publishes into a queue per subscriber and never waits for one. A consumer that
//! falls behind does not make the queue grow without bound: once the queued rows pass the
//! subscription's capacity, the queued batches are merged into one, whose rows are the net
//! changes over all their times (a row that appeared and disappeared again cancels out). The
//! merged batch spans the times `first..=last` and says so; applying the batches in order still
//! gives exactly the relation's contents at `last`. A merged batch can hold at most the
//! relation's contents before and after it, so a slow consumer costs memory in proportion to
//! the relation, never to the number of transactions it missed.

use crate::engine::{ChangeSet, Tuple};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// The changes of one relation over one or more consecutive logical times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewChanges {
    pub relation: String,
    /// The first logical time the batch covers (after the previous batch's `last`).
    pub first: u64,
    /// The last logical time it covers.
    pub last: u64,
    /// Sorted by tuple: +1 for a row that appeared, -1 for one that disappeared.
    pub rows: Vec<(Tuple, isize)>,
}

/// The consumer's end of a subscription. Dropping it ends the subscription.
pub struct Subscription {
    shared: Arc<Shared>,
}

/// The engine's end.
pub(crate) struct Publisher {
    name: String,
    shared: Weak<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    capacity: usize,
}

struct Queue {
    batches: VecDeque<ViewChanges>,
    rows: usize,
    /// The engine is gone: no more batches will come.
    closed: bool,
    /// How many times queued batches were merged because the consumer fell behind.
    merges: u64,
    /// The last time any batch covers.
    last: u64,
}

/// A subscription to `relation` whose first batch is `snapshot`, the contents at `time`.
pub(crate) fn channel(
    name: &str,
    capacity: usize,
    time: u64,
    snapshot: Vec<(Tuple, isize)>,
) -> (Subscription, Publisher) {
    let rows = snapshot.len();
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            batches: VecDeque::from([ViewChanges {
                relation: name.to_string(),
                first: 0,
                last: time,
                rows: snapshot,
            }]),
            rows,
            closed: false,
            merges: 0,
            last: time,
        }),
        ready: Condvar::new(),
        capacity: capacity.max(1),
    });
    let publisher = Publisher {
        name: name.to_string(),
        shared: Arc::downgrade(&shared),
    };
    (Subscription { shared }, publisher)
}

fn lock(shared: &Shared) -> MutexGuard<'_, Queue> {
    // A consumer that panicked while holding the lock left the queue consistent: every
    // operation on it completes before the guard drops.
    shared
        .queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Publisher {
    /// Queues the relation's changes in `changes`, if any. Returns false once the consumer is
    /// gone, so that the engine can forget it.
    pub(crate) fn publish(&self, changes: &ChangeSet) -> bool {
        let Some(shared) = self.shared.upgrade() else {
            return false;
        };
        let rows = changes.of(&self.name);
        if rows.is_empty() {
            return true;
        }
        let mut queue = lock(&shared);
        queue.rows += rows.len();
        let first = queue.last + 1;
        queue.last = changes.time;
        queue.batches.push_back(ViewChanges {
            relation: self.name.clone(),
            first,
            last: changes.time,
            rows,
        });
        if queue.rows > shared.capacity && queue.batches.len() > 1 {
            queue.merge();
        }
        drop(queue);
        shared.ready.notify_all();
        true
    }

    pub(crate) fn close(&self) {
        if let Some(shared) = self.shared.upgrade() {
            lock(&shared).closed = true;
            shared.ready.notify_all();
        }
    }
}

impl Queue {
    /// Merges every queued batch into one of net changes.
    fn merge(&mut self) {
        let mut net: BTreeMap<Tuple, isize> = BTreeMap::new();
        let first = self.batches.front().map_or(0, |batch| batch.first);
        let mut last = first;
        let mut relation = String::new();
        for batch in self.batches.drain(..) {
            last = batch.last;
            relation = batch.relation;
            for (tuple, diff) in batch.rows {
                *net.entry(tuple).or_insert(0) += diff;
            }
        }
        let rows: Vec<(Tuple, isize)> = net.into_iter().filter(|(_, diff)| *diff != 0).collect();
        self.rows = rows.len();
        self.merges += 1;
        self.batches.push_back(ViewChanges {
            relation,
            first,
            last,
            rows,
        });
    }
}

impl Subscription {
    /// The next batch, waiting for one; `None` once the engine is gone and every batch has
    /// been received.
    pub fn recv(&self) -> Option<ViewChanges> {
        let mut queue = lock(&self.shared);
        loop {
            if let Some(batch) = queue.take() {
                return Some(batch);
            }
            if queue.closed {
                return None;
            }
            queue = self
                .shared
                .ready
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// The next batch if one is queued.
    pub fn try_recv(&self) -> Option<ViewChanges> {
        lock(&self.shared).take()
    }

    /// The next batch, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<ViewChanges> {
        let deadline = std::time::Instant::now() + timeout;
        let mut queue = lock(&self.shared);
        loop {
            if let Some(batch) = queue.take() {
                return Some(batch);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if queue.closed || left.is_zero() {
                return None;
            }
            queue = self
                .shared
                .ready
                .wait_timeout(queue, left)
                .map(|(queue, _)| queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
    }

    /// The rows queued and not yet received.
    pub fn queued_rows(&self) -> usize {
        lock(&self.shared).rows
    }

    /// How many times queued batches were merged because this consumer fell behind.
    pub fn merges(&self) -> u64 {
        lock(&self.shared).merges
    }

    /// The number of rows past which queued batches are merged.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }
}

impl Queue {
    fn take(&mut self) -> Option<ViewChanges> {
        let batch = self.batches.pop_front()?;
        self.rows -= batch.rows.len();
        Some(batch)
    }
}
