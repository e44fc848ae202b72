//! Group commit: concurrent writes bound for one place share one trip to
//! the store.
//!
//! A driver whose writes cost a round trip (or a transaction) each, however
//! small, submits them here under a key (a queue, or the one writer of a
//! file). The first write of a key starts a task that writes batches for
//! that key until none is waiting: it takes everything that queued up while
//! the previous batch was being written (up to a weight, e.g. a number of
//! messages), writes it with one call of the driver's batch function, and
//! hands every write its own outcome. A lone write goes out at once, alone;
//! under load, sixteen concurrent posts to one queue cost one batch instead
//! of sixteen, so the store does less work per message exactly when it is
//! the bound.
//!
//! Batches of one key are written one after the other, in the order the
//! writes arrived; batches of different keys run side by side. The batch
//! runs in a task of its own, so a caller that goes away (a client that
//! hangs up) never abandons the writes of the others; its own write is still
//! made, as it would have been without grouping. Should the batch function
//! panic, the writes of that batch and those waiting behind it are answered
//! `None`, and the next write of the key starts afresh.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// One write waiting for its batch.
struct Waiting<I, O> {
    item: I,
    weight: usize,
    done: oneshot::Sender<O>,
}

/// Writes of type `I` grouped by key `K`, each answered with an `O`.
pub struct GroupCommit<K, I, O> {
    /// The writes waiting per key; a key is present while a task writes
    /// its batches (its list is then what waits behind the running batch).
    waiting: Mutex<HashMap<K, Vec<Waiting<I, O>>>>,
    /// The most weight one batch carries (a heavier single write goes
    /// alone).
    max_weight: usize,
}

impl<K, I, O> GroupCommit<K, I, O>
where
    K: Eq + Hash + Clone + Send + 'static,
    I: Send + 'static,
    O: Send + 'static,
{
    /// Groups writes into batches of at most `max_weight` (at least one
    /// write each).
    pub fn new(max_weight: usize) -> Arc<Self> {
        Arc::new(GroupCommit {
            waiting: Mutex::new(HashMap::new()),
            max_weight: max_weight.max(1),
        })
    }

    /// Submits `item` (of `weight`) for `key` and waits for the batch that
    /// carries it. `write` stores one batch and answers one outcome per
    /// item, in the items' order; it is called by the task that writes the
    /// key's batches, which the first write of an idle key starts (so the
    /// `write` of that first caller serves the writes queued behind it).
    /// `None` when the batch was abandoned (`write` panicked, or answered
    /// fewer outcomes than items).
    pub async fn submit<W, Fut>(
        self: &Arc<Self>,
        key: K,
        item: I,
        weight: usize,
        write: W,
    ) -> Option<O>
    where
        W: Fn(K, Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<O>> + Send + 'static,
    {
        let (done, outcome) = oneshot::channel();
        let waiting = Waiting { item, weight, done };
        let start = match self.lock().entry(key.clone()) {
            Entry::Occupied(mut queued) => {
                queued.get_mut().push(waiting);
                false
            }
            Entry::Vacant(idle) => {
                idle.insert(vec![waiting]);
                true
            }
        };
        if start {
            tokio::spawn(self.clone().write_batches(key, write));
        }
        outcome.await.ok()
    }

    /// Writes the key's batches until nothing waits, then lets the key go.
    async fn write_batches<W, Fut>(self: Arc<Self>, key: K, write: W)
    where
        W: Fn(K, Vec<I>) -> Fut,
        Fut: Future<Output = Vec<O>>,
    {
        let mut release = Release {
            commit: self.clone(),
            key: key.clone(),
            armed: true,
        };
        loop {
            let batch = {
                let mut waiting = self.lock();
                let Some(queued) = waiting.get_mut(&key) else {
                    break;
                };
                if queued.is_empty() {
                    waiting.remove(&key);
                    break;
                }
                let mut weight = 0usize;
                let taken = queued
                    .iter()
                    .take_while(|w| {
                        let fits =
                            weight == 0 || weight.saturating_add(w.weight) <= self.max_weight;
                        weight = weight.saturating_add(w.weight);
                        fits
                    })
                    .count();
                queued.drain(..taken.max(1)).collect::<Vec<_>>()
            };
            let (items, dones): (Vec<I>, Vec<_>) =
                batch.into_iter().map(|w| (w.item, w.done)).unzip();
            let outcomes = write(key.clone(), items).await;
            for (done, outcome) in dones.into_iter().zip(outcomes) {
                // The caller may have gone: its write is made all the same.
                let _ = done.send(outcome);
            }
        }
        release.armed = false;
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Vec<Waiting<I, O>>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many keys have a batch task running (for tests).
    #[cfg(test)]
    fn busy_keys(&self) -> usize {
        self.lock().len()
    }
}

/// Lets the key go if its batch task unwinds: the writes waiting behind
/// the failed batch are answered `None` (their senders are dropped) and the
/// next write of the key starts a new task.
struct Release<K: Eq + Hash, I, O> {
    commit: Arc<GroupCommit<K, I, O>>,
    key: K,
    /// Cleared when the task ends normally (it let the key go itself).
    armed: bool,
}

impl<K: Eq + Hash, I, O> Drop for Release<K, I, O> {
    fn drop(&mut self) {
        if self.armed {
            self.commit
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A batch function that records the batches it was given, and takes
    /// a while, so that writes queue up behind it.
    fn recording(
        log: Arc<Mutex<Vec<Vec<u32>>>>,
    ) -> impl Fn(&'static str, Vec<u32>) -> std::pin::Pin<Box<dyn Future<Output = Vec<u32>> + Send>>
           + Send
           + Clone
           + 'static {
        move |_key, items: Vec<u32>| {
            let log = log.clone();
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                log.lock().unwrap().push(items.clone());
                items.iter().map(|i| i * 10).collect()
            })
        }
    }

    #[tokio::test]
    async fn concurrent_writes_share_batches_and_get_their_own_outcomes() {
        let commit = GroupCommit::<&'static str, u32, u32>::new(100);
        let log = Arc::new(Mutex::new(Vec::new()));
        let write = recording(log.clone());
        let tasks: Vec<_> = (0..16u32)
            .map(|i| {
                let commit = commit.clone();
                let write = write.clone();
                tokio::spawn(async move { commit.submit("q", i, 1, write).await })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.unwrap(), Some(i as u32 * 10));
        }
        let batches = log.lock().unwrap().clone();
        let all: Vec<u32> = batches.iter().flatten().copied().collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..16).collect::<Vec<_>>(), "every write made once");
        assert!(batches.len() < 16, "writes were grouped: {batches:?}");
        assert_eq!(commit.busy_keys(), 0, "the key is let go when idle");
    }

    #[tokio::test]
    async fn a_batch_never_exceeds_the_weight_but_a_heavy_write_goes_alone() {
        let commit = GroupCommit::<&'static str, u32, u32>::new(5);
        let log = Arc::new(Mutex::new(Vec::new()));
        let write = recording(log.clone());
        // The first write starts a batch; the others queue behind it.
        let first = {
            let (commit, write) = (commit.clone(), write.clone());
            tokio::spawn(async move { commit.submit("q", 0, 1, write).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let weights = [3usize, 3, 9, 2, 2];
        let tasks: Vec<_> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let (commit, write) = (commit.clone(), write.clone());
                tokio::spawn(async move { commit.submit("q", i as u32 + 1, w, write).await })
            })
            .collect();
        first.await.unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        let batches = log.lock().unwrap().clone();
        assert_eq!(
            batches,
            vec![vec![0], vec![1], vec![2], vec![3], vec![4, 5]]
        );
    }

    #[tokio::test]
    async fn keys_are_written_independently() {
        let commit = GroupCommit::<&'static str, u32, u32>::new(100);
        let calls = Arc::new(AtomicUsize::new(0));
        let write = {
            let calls = calls.clone();
            move |key: &'static str, items: Vec<u32>| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    items
                        .into_iter()
                        .map(|i| if key == "a" { i } else { i + 100 })
                        .collect::<Vec<_>>()
                }
            }
        };
        let (a, b) = tokio::join!(
            commit.submit("a", 1, 1, write.clone()),
            commit.submit("b", 1, 1, write)
        );
        assert_eq!((a, b), (Some(1), Some(101)));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_panicking_batch_answers_none_and_the_key_recovers() {
        let commit = GroupCommit::<&'static str, u32, u32>::new(100);
        let outcome = commit
            .submit("q", 1, 1, |_, _: Vec<u32>| async move {
                if true {
                    panic!("the store's batch function failed");
                }
                Vec::new()
            })
            .await;
        assert_eq!(outcome, None);
        let outcome = commit
            .submit("q", 2, 1, |_, items: Vec<u32>| async move { items })
            .await;
        assert_eq!(outcome, Some(2));
        assert_eq!(commit.busy_keys(), 0);
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_does_not_cancel_the_batch() {
        let commit = GroupCommit::<&'static str, u32, u32>::new(100);
        let log = Arc::new(Mutex::new(Vec::new()));
        let write = recording(log.clone());
        let submit = commit.submit("q", 7, 1, write);
        // Dropped after 1 ms, while its batch is being written (20 ms).
        assert!(tokio::time::timeout(Duration::from_millis(1), submit)
            .await
            .is_err());
        // The batch still completes (waited for, not timed: a loaded machine
        // may run the batch's task well after its 20 ms).
        for _ in 0..500 {
            if !log.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(log.lock().unwrap().clone(), vec![vec![7]]);
    }
}
