//! Long polling: a claim (`POST .../claims?wait=N`) or a message listing
//! (`GET .../messages?wait=N`, WebSocket `claim_create` and `message_list`
//! with `wait`) that finds nothing waits up to `N` seconds (at most
//! `[transport] max_long_poll_wait`) and answers as soon as a message
//! turns up. Without `wait` nothing changes.
//!
//! The api core wakes the queue's waiters after each post and claim
//! release, in this process and, through the store's
//! [`WakeBus`](crate::storage::wake::WakeBus), in the others (unless the
//! store's post announced itself: `Posted::woke_others`). The bus carries
//! wake-ups only for queues a request waits for: a long poll whose first
//! look found nothing announces itself to the bus and looks again before it
//! sleeps (see [`LongPoll`]). Waiters also
//! look again every [`POLL_INTERVAL`](crate::storage::wake::POLL_INTERVAL)
//! (delayed messages coming due, expired claims, stores without a bus),
//! and answer at once when the server shuts down.

use std::time::Duration;

use super::Api;
use crate::error::{ApiError, ApiResult};
use crate::storage::wake::LongPoll;
use crate::storage::Scope;

impl Api {
    /// The long poll of a request on `scope` that asked to `wait` seconds.
    ///
    /// # Errors
    /// 400 when `wait` is negative or beyond `max_long_poll_wait`.
    pub(super) fn long_poll(&self, scope: &Scope, wait: Option<i64>) -> ApiResult<LongPoll> {
        let max = self.limits().max_long_poll_wait;
        let seconds = match wait {
            None => 0,
            Some(w) if (0..=max).contains(&w) => w as u64,
            Some(_) => {
                return Err(ApiError::invalid(format!(
                    "The wait of a request may not exceed {max} seconds, and must be at least 0 seconds long."
                )))
            }
        };
        Ok(LongPoll::new(
            &self.storage.waiters,
            self.storage.wake_bus.as_ref(),
            scope,
            Duration::from_secs(seconds),
        ))
    }

    /// Tells the waiters of `scope`, here and in the other processes of the
    /// store, that a message may be claimable.
    pub(super) async fn wake(&self, scope: &Scope) {
        self.storage.waiters.wake(scope);
        if let Some(bus) = &self.storage.wake_bus {
            bus.publish(scope).await;
        }
    }
}
