//! Long-poll wake-ups between server processes over Redis pub/sub: a post
//! publishes `<plen>:<project><queue>` on the channel `<ns>:wake`, and every
//! process subscribed to it wakes its own waiters of that queue (see
//! [`crate::storage::wake`]). Only while some process waits for the queue:
//! a waiting long poll keeps the queue's `<Q>:polled` key alive for as long
//! as it may wait (`wake_expect.lua`), and the post script (or
//! `wake_publish.lua`, for a claim release) publishes only when that key
//! exists. Busy queues, whose consumers find messages at their first look,
//! cost no publish and no read on every subscribed process. On Sentinel the
//! subscription follows the master; on Cluster it is held on one node (a
//! Cluster delivers a publish to subscribers on every node). While it is
//! down, waiters rely on their poll.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::*;
use crate::storage::wake::{Waiters, WakeBus};

/// The channel of a key prefix.
pub(super) fn channel(ns: &str) -> String {
    [ns, ":wake"].concat()
}

/// `scope` as published: the project's length first, so that any project
/// and queue names read back unambiguously.
pub(super) fn encode(scope: &Scope) -> String {
    let mut len = itoa::Buffer::new();
    [
        len.format(scope.project.len()),
        ":",
        &scope.project,
        &scope.queue,
    ]
    .concat()
}

fn decode(payload: &str) -> Option<Scope> {
    let (len, rest) = payload.split_once(':')?;
    let len: usize = len.parse().ok()?;
    if !rest.is_char_boundary(len.min(rest.len())) || len > rest.len() {
        return None;
    }
    let (project, queue) = rest.split_at(len);
    Some(Scope::new(project, queue))
}

#[async_trait]
impl WakeBus for RedisStore {
    async fn expect(&self, scope: &Scope, wait: Duration) {
        let key = keys::queue_polled_key(&keys::queue_prefix(&self.inner.ns, scope));
        // Bounded as the script bounds it (a day; waits are far shorter).
        let ms = wait.as_millis().clamp(1, 86_400_000) as u64;
        let script = &self.inner.scripts.wake_expect;
        let done = self
            .inner
            .conn
            .run("wake expect", true, |mut conn| {
                let key = key.clone();
                async move { script.key(key).arg(ms).invoke_async::<i64>(&mut conn).await }
            })
            .await;
        if let Err(e) = done {
            tracing::debug!(error = %e, "long poll not announced to the other processes");
        }
    }

    async fn publish(&self, scope: &Scope) {
        let channel = &self.inner.wake_channel;
        let key = keys::queue_polled_key(&keys::queue_prefix(&self.inner.ns, scope));
        let payload = encode(scope);
        let script = &self.inner.scripts.wake_publish;
        let sent = self
            .inner
            .conn
            .run("wake publish", false, |mut conn| {
                let (key, channel, payload) = (key.clone(), channel.clone(), payload.clone());
                async move {
                    script
                        .key(key)
                        .arg(channel)
                        .arg(payload)
                        .invoke_async::<i64>(&mut conn)
                        .await
                }
            })
            .await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "long-poll wake-up not published");
        }
    }

    async fn listen(&self, waiters: Arc<Waiters>) {
        let channel = &self.inner.wake_channel;
        while !waiters.is_closed() {
            let pubsub = match self.inner.conn.pubsub().await {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to long-poll wake-ups; retrying");
                    None
                }
            };
            if let Some(mut pubsub) = pubsub {
                if let Err(e) = pubsub.subscribe(&channel).await {
                    tracing::warn!(error = %e, "cannot subscribe to long-poll wake-ups; retrying");
                } else {
                    let mut messages = pubsub.into_on_message();
                    loop {
                        tokio::select! {
                            _ = waiters.closed() => return,
                            next = messages.next() => match next {
                                Some(msg) => {
                                    if let Some(scope) = msg
                                        .get_payload::<String>()
                                        .ok()
                                        .as_deref()
                                        .and_then(decode)
                                    {
                                        waiters.wake(&scope);
                                    }
                                }
                                None => break,
                            },
                        }
                    }
                    tracing::info!("long-poll wake-up subscription lost; resubscribing");
                }
            }
            tokio::select! {
                _ = waiters.closed() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_read_back_unambiguously() {
        for (p, q) in [("p", "q"), ("a:1", "b"), ("a", "1:b"), ("", "~topic~t")] {
            let s = Scope::new(p, q);
            assert_eq!(decode(&encode(&s)), Some(s));
        }
        assert_eq!(decode("9:ab"), None);
        assert_eq!(decode("x:ab"), None);
    }
}
