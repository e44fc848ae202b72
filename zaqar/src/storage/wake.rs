//! Wake-ups of long-polling requests: who waits for which queue, and how a
//! post on any server process reaches them.
//!
//! A claim or a message listing with `wait` that finds nothing registers
//! with [`Waiters`] for its (project, queue) and sleeps until woken, until
//! a short poll interval passes (which covers what no post announces: a
//! delayed message coming due, a claim expiring, and posts on other
//! processes of a store without a [`WakeBus`]), until its deadline, or
//! until the server shuts down, then looks again.
//!
//! In-process, the api core wakes the queue's waiters after every post and
//! claim release. Across processes, a store that can broadcast provides a
//! [`WakeBus`] (Redis: pub/sub on one channel per key prefix), which
//! carries the wake-ups of the queues some request waits for; the other
//! stores rely on the poll.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::Scope;

/// The waiting requests of one process, by (project, queue): a counter of
/// wake-ups per queue that waiters watch.
#[derive(Default)]
pub struct Waiters {
    queues: Mutex<HashMap<Scope, watch::Sender<u64>>>,
    closing: AtomicBool,
    closed: Notify,
}

impl Waiters {
    /// Starts watching `scope`: the receiver sees every wake-up from now on,
    /// so a waiter takes it *before* it looks at the store and misses no
    /// post made between its look and its sleep.
    pub fn watch(&self, scope: &Scope) -> watch::Receiver<u64> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        // Forget queues nobody waits on any more (bounded by live waiters).
        if queues.len() > 1024 {
            queues.retain(|_, tx| tx.receiver_count() > 0);
        }
        queues
            .entry(scope.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Wakes every request waiting on `scope` in this process.
    pub fn wake(&self, scope: &Scope) {
        let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up by reference: a post wakes without copying its scope.
        if let Some(tx) = queues.get(scope) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Answers every waiting request now, and every later one at once
    /// (server shutdown).
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.closed.notify_waiters();
    }

    /// Whether the server is shutting down.
    pub fn is_closed(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Completes when [`Waiters::close`] is called (at once if it was).
    pub async fn closed(&self) {
        let notified = self.closed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_closed() {
            return;
        }
        notified.await;
    }
}

/// How often a waiter looks again without being woken: what no wake-up
/// announces (a delayed message coming due, a claim expiring, a post on a
/// process of a store without a [`WakeBus`]) is seen within this time.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// One long-polling request: look, and while nothing is found, wait.
pub struct LongPoll {
    watching: Option<(watch::Receiver<u64>, Instant)>,
    waiters: Arc<Waiters>,
    /// The store's bus and the queue, until the request announced itself
    /// on it (after its first look found nothing).
    announce: Option<(Arc<dyn WakeBus>, Scope)>,
}

impl LongPoll {
    /// A request on `scope` that may wait `wait` (zero: it never waits),
    /// woken across processes through `bus` when the store has one.
    pub fn new(
        waiters: &Arc<Waiters>,
        bus: Option<&Arc<dyn WakeBus>>,
        scope: &Scope,
        wait: Duration,
    ) -> Self {
        let waits = !wait.is_zero();
        LongPoll {
            watching: waits.then(|| (waiters.watch(scope), Instant::now() + wait)),
            waiters: waiters.clone(),
            announce: bus.filter(|_| waits).map(|b| (b.clone(), scope.clone())),
        }
    }

    /// After a look that found nothing: waits for a wake-up, the poll
    /// interval, the deadline or shutdown; `true` to look again, `false`
    /// to answer with what the last look found.
    ///
    /// The first time, with a [`WakeBus`], it announces the request on the
    /// bus and asks for another look at once instead: a post after the
    /// announcement publishes its wake-up, one before it is seen by that
    /// look. So a request that finds messages at once costs the bus
    /// nothing.
    pub async fn wait(&mut self) -> bool {
        let Some((rx, deadline)) = &mut self.watching else {
            return false;
        };
        let now = Instant::now();
        if self.waiters.is_closed() || now >= *deadline {
            return false;
        }
        if let Some((bus, scope)) = self.announce.take() {
            // A poll interval more than the wait: the wake-up of a post
            // just before the deadline is still published.
            bus.expect(&scope, (*deadline - now) + POLL_INTERVAL).await;
            return true;
        }
        let nap = (*deadline - now).min(POLL_INTERVAL);
        tokio::select! {
            _ = rx.changed() => {}
            _ = tokio::time::sleep(nap) => {}
            _ = self.waiters.closed() => {}
        }
        true
    }
}

/// A broadcast of wake-ups between the server processes of one store.
///
/// Wake-ups are published only for queues a request of some process waits
/// for: a long poll announces itself with [`WakeBus::expect`] once a look
/// found nothing, then looks again before it sleeps (see [`LongPoll`]).
#[async_trait]
pub trait WakeBus: Send + Sync {
    /// Announces that a request of this process waits up to `wait` for
    /// `scope`: until then, posts and releases on any process publish their
    /// wake-ups for it (failures are logged, never answered: the poll
    /// covers them).
    async fn expect(&self, scope: &Scope, wait: Duration);
    /// Tells every process that `scope` may have claimable messages, if a
    /// request of some process waits for it (failures are logged, never
    /// answered: the poll covers them).
    async fn publish(&self, scope: &Scope);

    /// Wakes `waiters` for every scope any process publishes, until
    /// [`Waiters::close`]; reconnects after failures.
    async fn listen(&self, waiters: Arc<Waiters>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_reaches_a_waiter_that_looked_before_it() {
        let w = Arc::new(Waiters::default());
        let s = Scope::new("p", "q");
        let mut poll = LongPoll::new(&w, None, &s, Duration::from_secs(3600));
        // (the look happens here and finds nothing; then a post wakes)
        w.wake(&Scope::new("p", "other"));
        w.wake(&s);
        assert!(poll.wait().await, "woken, not timed out");
        w.close();
        assert!(!poll.wait().await, "closed: answer now");
        assert!(!LongPoll::new(&w, None, &s, Duration::ZERO).wait().await);
    }
}
