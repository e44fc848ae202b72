//! The four kinds of worker: producers, consumers, observers, stats readers.
//!
//! Each worker owns one connection and loops until the run's deadline,
//! timing every request. A worker picks its queue round-robin from its own
//! index, so `N` workers spread evenly over the queues.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Deserialize;

use super::client::{Answer, Client, TransportError};
use super::ledger::Ledger;
use super::recorder::{Op, Progress, Recorder, TRANSPORT_ERROR};
use super::BenchConfig;

/// How consumers delete what they claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteMode {
    /// One `DELETE .../messages/{id}?claim_id=` per message (the reference bench's way).
    Each,
    /// One `DELETE .../messages?ids=...&claim_ids=` per claim.
    Bulk,
}

/// What every worker of a run shares.
pub struct Shared {
    /// The run's settings.
    pub config: BenchConfig,
    /// Queue names.
    pub queues: Vec<String>,
    /// The correctness ledger.
    pub ledger: Ledger,
    /// Live counters.
    pub progress: Progress,
    /// Requests that start from here on are measured.
    pub measure_from: Instant,
    /// No request starts after this.
    pub deadline: Instant,
    /// The body of every post.
    pub post_body: Bytes,
    /// The body of every claim.
    pub claim_body: Bytes,
}

impl Shared {
    fn queue(&self, worker: usize) -> &str {
        &self.queues[worker % self.queues.len()]
    }

    fn measured(&self, started: Instant) -> bool {
        started >= self.measure_from && started < self.deadline
    }
}

/// Builds `{"messages": [...]}` with `batch` messages whose bodies are about
/// `size` bytes of JSON each.
pub fn post_body(batch: usize, size: usize, ttl: u64) -> Bytes {
    let data = "x".repeat(size.saturating_sub(11));
    let one = format!(r#"{{"ttl":{ttl},"body":{{"data":"{data}"}}}}"#);
    let all = vec![one; batch.max(1)].join(",");
    Bytes::from(format!(r#"{{"messages":[{all}]}}"#))
}

#[derive(Deserialize)]
struct Resources {
    resources: Vec<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Href {
    href: String,
}

#[derive(Deserialize)]
struct Hrefs {
    messages: Vec<Href>,
}

#[derive(Deserialize)]
struct Listed {
    messages: Vec<serde::de::IgnoredAny>,
}

/// Times one request and classifies its answer: `Ok(answer)` when the
/// status is one of `expected`, else the failure has been recorded.
#[allow(clippy::too_many_arguments)]
async fn timed(
    shared: &Shared,
    rec: &mut Recorder,
    client: &mut Client,
    op: Op,
    method: Method,
    path: &str,
    body: Option<Bytes>,
    expected: &[StatusCode],
) -> (Instant, Duration, Result<Answer, ()>) {
    let started = Instant::now();
    let result = client.send(method, path, body).await;
    let elapsed = started.elapsed();
    let measured = shared.measured(started);
    let outcome = match result {
        Ok(a) if expected.contains(&a.status) => Ok(a),
        Ok(a) => {
            // A 5xx to a write is no proof it did not happen: when the
            // store's connection breaks after the command went out (Redis
            // killed between applying it and answering), the server can
            // only say 503. Its outcome is unknown, as for no answer.
            if a.status.is_server_error() && matches!(op, Op::Post | Op::Delete | Op::BulkDelete) {
                shared.ledger.uncertain();
            }
            if measured {
                rec.error(op, elapsed, a.status.as_str());
            }
            Err(())
        }
        Err(e) => {
            if matches!(op, Op::Post | Op::Delete | Op::BulkDelete)
                && !matches!(e, TransportError::Connect(_))
            {
                shared.ledger.uncertain();
            }
            if measured {
                rec.error(op, elapsed, TRANSPORT_ERROR);
            }
            Err(())
        }
    };
    shared.progress.request(op, outcome.is_err());
    (started, elapsed, outcome)
}

/// Posts batches until the deadline.
pub async fn producer(shared: Arc<Shared>, index: usize, mut client: Client) -> Recorder {
    let mut rec = Recorder::default();
    let path = format!("/v2/queues/{}/messages", shared.queue(index));
    while Instant::now() < shared.deadline {
        let body = Some(shared.post_body.clone());
        let (started, elapsed, outcome) = timed(
            &shared,
            &mut rec,
            &mut client,
            Op::Post,
            Method::POST,
            &path,
            body,
            &[StatusCode::CREATED],
        )
        .await;
        if let Ok(answer) = outcome {
            match serde_json::from_slice::<Resources>(&answer.body) {
                Ok(r) => {
                    let n = r.resources.len() as u64;
                    shared.ledger.posted(n);
                    if shared.measured(started) {
                        rec.ok(Op::Post, elapsed, n);
                    }
                }
                Err(_) => {
                    shared.ledger.uncertain();
                    if shared.measured(started) {
                        rec.error(Op::Post, elapsed, "bad-body");
                    }
                }
            }
        }
    }
    rec
}

/// The message id and claim id in a claimed message's href
/// (`/v2/queues/q/messages/{id}?claim_id={cid}`).
fn split_href(href: &str) -> Option<(&str, Option<&str>)> {
    let (path, query) = match href.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (href, None),
    };
    let id = path.rsplit_once("/messages/")?.1;
    let claim = query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("claim_id=")));
    Some((id, claim))
}

/// Claims, then deletes what it claimed, until the deadline.
pub async fn consumer(shared: Arc<Shared>, index: usize, mut client: Client) -> Recorder {
    let mut rec = Recorder::default();
    let queue = shared.queue(index).to_owned();
    let claim_path = format!(
        "/v2/queues/{queue}/claims?limit={}",
        shared.config.claim_limit
    );
    let ttl = Duration::from_secs(shared.config.claim_ttl);
    let backoff = Duration::from_millis(shared.config.empty_backoff_ms);
    while Instant::now() < shared.deadline {
        let body = Some(shared.claim_body.clone());
        let (started, elapsed, outcome) = timed(
            &shared,
            &mut rec,
            &mut client,
            Op::Claim,
            Method::POST,
            &claim_path,
            body,
            &[StatusCode::CREATED, StatusCode::NO_CONTENT],
        )
        .await;
        let Ok(answer) = outcome else { continue };
        let answered = Instant::now();
        if answer.status == StatusCode::NO_CONTENT {
            if shared.measured(started) {
                rec.empty(Op::Claim, elapsed);
            }
            if !backoff.is_zero() {
                tokio::time::sleep(backoff).await;
            }
            continue;
        }
        let Ok(claimed) = serde_json::from_slice::<Hrefs>(&answer.body) else {
            if shared.measured(started) {
                rec.error(Op::Claim, elapsed, "bad-body");
            }
            continue;
        };
        let from_location = answer
            .location
            .as_deref()
            .and_then(|l| l.rsplit('/').next())
            .unwrap_or("");
        let parsed: Vec<(&str, &str)> = claimed
            .messages
            .iter()
            .filter_map(|m| split_href(&m.href))
            .map(|(id, cid)| (id, cid.unwrap_or(from_location)))
            .collect();
        let claim_id = parsed
            .first()
            .map(|p| p.1)
            .unwrap_or(from_location)
            .to_owned();
        shared.ledger.claimed(
            &claim_id,
            started,
            ttl,
            answered,
            parsed.iter().map(|p| p.0),
        );
        if shared.measured(started) {
            rec.ok(Op::Claim, elapsed, parsed.len() as u64);
        }
        match shared.config.delete_mode {
            DeleteMode::Each => {
                for (m, (id, _)) in claimed.messages.iter().zip(&parsed) {
                    let (started, elapsed, outcome) = timed(
                        &shared,
                        &mut rec,
                        &mut client,
                        Op::Delete,
                        Method::DELETE,
                        &m.href,
                        None,
                        &[StatusCode::NO_CONTENT],
                    )
                    .await;
                    if outcome.is_ok() {
                        shared.ledger.consumed([*id]);
                        shared.progress.consumed(1);
                        if shared.measured(started) {
                            rec.ok(Op::Delete, elapsed, 1);
                        }
                    }
                }
            }
            DeleteMode::Bulk => {
                if parsed.is_empty() {
                    continue;
                }
                let ids: Vec<&str> = parsed.iter().map(|p| p.0).collect();
                let path = format!(
                    "/v2/queues/{queue}/messages?ids={}&claim_ids={claim_id}",
                    ids.join(",")
                );
                let (started, elapsed, outcome) = timed(
                    &shared,
                    &mut rec,
                    &mut client,
                    Op::BulkDelete,
                    Method::DELETE,
                    &path,
                    None,
                    &[StatusCode::NO_CONTENT],
                )
                .await;
                if outcome.is_ok() {
                    shared.ledger.consumed(ids.iter().copied());
                    shared.progress.consumed(ids.len() as u64);
                    if shared.measured(started) {
                        rec.ok(Op::BulkDelete, elapsed, ids.len() as u64);
                    }
                }
            }
        }
    }
    rec
}

/// Lists messages until the deadline.
pub async fn observer(shared: Arc<Shared>, index: usize, mut client: Client) -> Recorder {
    let mut rec = Recorder::default();
    let path = format!(
        "/v2/queues/{}/messages?limit={}&echo=true",
        shared.queue(index),
        shared.config.list_limit
    );
    while Instant::now() < shared.deadline {
        let (started, elapsed, outcome) = timed(
            &shared,
            &mut rec,
            &mut client,
            Op::List,
            Method::GET,
            &path,
            None,
            &[StatusCode::OK, StatusCode::NO_CONTENT],
        )
        .await;
        if let Ok(answer) = outcome {
            if shared.measured(started) {
                let n = serde_json::from_slice::<Listed>(&answer.body)
                    .map(|l| l.messages.len())
                    .unwrap_or(0);
                rec.ok(Op::List, elapsed, n as u64);
            }
        }
    }
    rec
}

/// Reads queue stats until the deadline.
pub async fn stats_reader(shared: Arc<Shared>, index: usize, mut client: Client) -> Recorder {
    let mut rec = Recorder::default();
    let path = format!("/v2/queues/{}/stats", shared.queue(index));
    while Instant::now() < shared.deadline {
        let (started, elapsed, outcome) = timed(
            &shared,
            &mut rec,
            &mut client,
            Op::Stats,
            Method::GET,
            &path,
            None,
            &[StatusCode::OK],
        )
        .await;
        if outcome.is_ok() && shared.measured(started) {
            rec.ok(Op::Stats, elapsed, 0);
        }
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_split_into_id_and_claim() {
        assert_eq!(
            split_href("/v2/queues/q/messages/abc?claim_id=c1"),
            Some(("abc", Some("c1")))
        );
        assert_eq!(split_href("/v2/queues/q/messages/abc"), Some(("abc", None)));
        assert_eq!(split_href("/v2/queues/q"), None);
    }

    #[test]
    fn post_body_is_json_of_the_asked_size() {
        let b = post_body(3, 100, 3600);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        let msgs = v["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0]["body"].to_string().len(), 100);
    }
}
