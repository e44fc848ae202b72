//! [`ClaimStore`] on `D_part<i>.claims` and the claim fields of messages
//! (`c` claim id, `ce` claim end, `cc` claim count).
//!
//! A claim takes messages with conditional updates (see the module docs of
//! [`super`]): two claims, from two API servers, never hold one message,
//! because each message is taken by an update whose filter says "not held
//! by a live claim", and MongoDB applies it to each document atomically.
//! Releasing and renewing a claim keep the messages' claim counts (the
//! reference resets them, so its dead-lettering never fires after a
//! release).

use async_trait::async_trait;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{doc, Bson, Document};

use super::messages::{
    claimable, find_in_order, int, message_from, messages_from, release, BY_CLAIM, QUEUE_ORDER,
};
use super::{date, ms, MongoStore, OpResult, Ready};
use crate::storage::deadline::ClaimTimes;
use crate::storage::{
    ClaimInfo, ClaimRequest, ClaimStore, DeadLetter, Message, NewClaim, Scope, StorageResult,
};

/// Rounds of candidates a claim goes through when other claims keep
/// winning its candidates.
const CLAIM_ROUNDS: usize = 6;
/// How many candidates a round after a lost race reads per message still
/// wanted, times the round number (see `pick`).
const WINDOW_PER_WANTED: usize = 4;
/// The most candidates one round reads.
const WINDOW_CAP: usize = 1000;
/// The most messages a claim lookup returns (a claim holds at most
/// `max_messages_per_claim_or_pop` of them).
const CLAIM_MESSAGES_CAP: usize = 10_000;
/// Messages moved to a dead-letter queue by one update: `$indexOfArray`
/// over the chunk's ids numbers them, so the chunk stays small.
const DEAD_LETTER_CHUNK: usize = 50;

/// `wanted` of `candidates`, chosen at random, in their order.
fn pick(candidates: Vec<Document>, wanted: usize) -> Vec<Document> {
    if candidates.len() <= wanted {
        return candidates;
    }
    // xorshift64*, seeded from the OS's randomness through a v4 UUID.
    let mut state = (uuid::Uuid::new_v4().as_u128() as u64) | 1;
    let mut next = || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut chosen: Vec<usize> = (0..candidates.len()).collect();
    for i in 0..wanted {
        let j = i + (next() % (chosen.len() - i) as u64) as usize;
        chosen.swap(i, j);
    }
    let mut chosen = chosen[..wanted].to_vec();
    chosen.sort_unstable();
    let mut candidates: Vec<Option<Document>> = candidates.into_iter().map(Some).collect();
    chosen
        .into_iter()
        .filter_map(|i| candidates[i].take())
        .collect()
}

/// The update that gives a message to a claim ending at `ends` (ms): the
/// claim fields, the count (when counting), and a message that would die
/// before `ends` lives until `ends + grace` with a ttl of `ttl + grace`.
/// (Every expression of one `$set` stage reads the document as it was.)
fn take(claim: Option<ObjectId>, ends: i64, ttl: i64, grace: i64, count: bool) -> Vec<Document> {
    let ends_date = date(ends);
    let mut set = doc! {
        "ce": ends,
        "t": { "$cond": [ { "$lt": [ "$e", ends_date ] }, ttl.saturating_add(grace), "$t" ] },
        "e": { "$cond": [ { "$lt": [ "$e", ends_date ] }, date(ends.saturating_add(ms(grace))), "$e" ] },
    };
    if let Some(claim) = claim {
        set.insert("c", claim);
    }
    if count {
        set.insert("cc", doc! { "$add": [ "$cc", 1i64 ] });
    }
    vec![doc! { "$set": set }]
}

/// A message as the claim left it, computed from the document read just
/// before (when the conditional update took every candidate, nothing needs
/// reading again).
fn as_taken(
    mut message: Message,
    expires: i64,
    claim: &str,
    request: &ClaimRequest,
    ends: i64,
) -> Message {
    if expires < ends {
        message.ttl = request.ttl.saturating_add(request.grace);
    }
    if request.dead_letter.is_some() {
        message.claim_count = message.claim_count.saturating_add(1);
    }
    message.claim_id = Some(claim.to_owned());
    message
}

impl MongoStore {
    /// Moves `dead` (documents of `scope` that reached the dead-letter
    /// policy's claim count) to the end of the dead-letter queue: numbers
    /// reserved there as a post's are, no claim, the policy's ttl when it
    /// has one, the expiry time kept. The queue and its dead-letter queue
    /// belong to one project, so they share a collection and a move is an
    /// update of one document, conditional on the message being still
    /// unclaimed with its count unchanged (a racing claim keeps what it took).
    async fn move_to_dead_letter(
        &self,
        r: &Ready,
        scope: &Scope,
        policy: &DeadLetter,
        dead: &[Document],
        now: i64,
    ) -> OpResult<()> {
        let dlq = Scope::new(scope.project.clone(), policy.queue.clone());
        let messages = r.messages(&scope.project);
        let token = ObjectId::new();
        let first = self.reserve(r, &dlq, dead.len(), now, token).await?;
        // One conditional update per chunk, not per message: each message
        // takes the sequence number of its place in the chunk (an update
        // pipeline), so the dead-letter queue keeps the source's order. A
        // message claimed meanwhile (`ce` in the future) is left where it
        // is; its number stays unused.
        for (c, chunk) in dead.chunks(DEAD_LETTER_CHUNK).enumerate() {
            let ids: Vec<Bson> = chunk
                .iter()
                .map(|d| d.get("_id").cloned().unwrap_or(Bson::Null))
                .collect();
            let base = first.saturating_add((c * DEAD_LETTER_CHUNK) as i64);
            let filter = doc! {
                "_id": { "$in": ids.clone() }, "p": &scope.project, "q": &scope.queue,
                "ce": { "$lte": now }, "cc": { "$gte": policy.max_claim_count },
            };
            let mut set = doc! {
                "q": &policy.queue,
                "k": { "$add": [base, { "$indexOfArray": [ids, "$_id"] }] },
                "ce": 0i64,
            };
            if let Some(ttl) = policy.ttl {
                set.insert("t", ttl);
            }
            messages
                .update_many(filter, vec![doc! { "$set": set }, doc! { "$unset": "c" }])
                .await?;
        }
        release(r, &dlq, token).await?;
        Ok(())
    }

    /// A claim's live messages, oldest first.
    async fn claim_messages(
        r: &Ready,
        scope: &Scope,
        claim: ObjectId,
        now: i64,
    ) -> OpResult<Vec<Message>> {
        let filter = doc! {
            "c": claim, "p": &scope.project, "q": &scope.queue,
            "ce": { "$gt": now }, "e": { "$gt": date(now) },
        };
        let docs = find_in_order(
            &r.messages(&scope.project),
            filter,
            CLAIM_MESSAGES_CAP,
            BY_CLAIM,
        )
        .await?;
        messages_from(&docs, now)
    }
}

#[async_trait]
impl ClaimStore for MongoStore {
    async fn create(
        &self,
        scope: &Scope,
        request: &ClaimRequest,
    ) -> StorageResult<Option<NewClaim>> {
        if request.limit == 0 {
            return Ok(None);
        }
        let claim = ObjectId::new();
        let claim_hex = claim.to_hex();
        let claim_hex = &claim_hex;
        let tried = &std::sync::atomic::AtomicBool::new(false);
        // Idempotent: a retry takes more candidates under the same claim id
        // and reads back what the claim holds.
        self.run("claim create", true, |r, now| async move {
            // Refused before the first write, as on every driver.
            ClaimTimes::new(now, request.ttl, request.grace)?;
            let retry = tried.swap(true, std::sync::atomic::Ordering::Relaxed);
            let messages = r.messages(&scope.project);
            let ends = now.saturating_add(ms(request.ttl));
            let update = take(
                Some(claim),
                ends,
                request.ttl,
                request.grace,
                request.dead_letter.is_some(),
            );
            let mut taken: Vec<Message> = Vec::new();
            let mut won_total = 0usize;
            let mut raced = retry;
            for round in 0..CLAIM_ROUNDS {
                let wanted = request.limit.saturating_sub(won_total);
                if wanted == 0 {
                    break;
                }
                // The first round reads exactly the oldest candidates. After
                // a lost race, the claimers that read the same candidates
                // would all go for the same next ones again: each reads a
                // wider window and tries a random few of it instead.
                let window = match raced {
                    false => wanted,
                    true => wanted
                        .saturating_mul(WINDOW_PER_WANTED * round)
                        .clamp(wanted, WINDOW_CAP),
                };
                let candidates =
                    find_in_order(&messages, claimable(scope, now), window, QUEUE_ORDER).await?;
                if candidates.is_empty() {
                    break;
                }
                let candidates = match raced {
                    false => candidates,
                    true => pick(candidates, wanted),
                };
                let (dead, live): (Vec<Document>, Vec<Document>) = candidates
                    .into_iter()
                    .partition(|d| match &request.dead_letter {
                        Some(policy) => int(d, "cc").unwrap_or(0) >= policy.max_claim_count,
                        None => false,
                    });
                if let Some(policy) = &request.dead_letter {
                    if !dead.is_empty() {
                        self.move_to_dead_letter(&r, scope, policy, &dead, now)
                            .await?;
                    }
                }
                if live.is_empty() {
                    continue;
                }
                let ids: Vec<Bson> = live.iter().filter_map(|d| d.get("_id").cloned()).collect();
                let mut filter = claimable(scope, now);
                filter.insert("_id", doc! { "$in": &ids });
                let won = messages.update_many(filter, update.clone()).await?;
                won_total += won.modified_count as usize;
                if won.modified_count as usize == live.len() {
                    for d in &live {
                        let (_, m) = message_from(d, now)?;
                        let expires = d
                            .get_datetime("e")
                            .map(|e| e.timestamp_millis())
                            .unwrap_or(i64::MAX);
                        taken.push(as_taken(m, expires, claim_hex, request, ends));
                    }
                } else {
                    // Another claim won some: what this one holds is read
                    // back below.
                    raced = true;
                }
            }
            if won_total == 0 && !retry {
                return Ok(None);
            }
            let record = r
                .claims(&scope.project)
                .insert_one(doc! {
                    "_id": claim, "p": &scope.project, "q": &scope.queue,
                    "t": request.ttl, "g": request.grace, "u": now, "e": date(ends),
                })
                .await;
            match record {
                // A retry after the record was written.
                Err(e) if !super::duplicate_key(&e) => return Err(e.into()),
                _ => {}
            }
            let messages = if raced {
                Self::claim_messages(&r, scope, claim, now).await?
            } else {
                taken
            };
            Ok((!messages.is_empty()).then(|| NewClaim {
                id: claim_hex.clone(),
                messages,
            }))
        })
        .await
    }

    async fn get(&self, scope: &Scope, claim_id: &str) -> StorageResult<Option<ClaimInfo>> {
        let Ok(claim) = ObjectId::parse_str(claim_id) else {
            return Ok(None);
        };
        self.run("claim get", true, |r, now| async move {
            let claims = r.claims(&scope.project);
            let record = claims.find_one(doc! {
                "_id": claim, "p": &scope.project, "q": &scope.queue, "e": { "$gt": date(now) },
            });
            let (record, messages) = tokio::join!(
                async { record.await },
                Self::claim_messages(&r, scope, claim, now)
            );
            let Some(record) = record? else {
                return Ok(None);
            };
            Ok(Some(ClaimInfo {
                id: claim.to_hex(),
                ttl: int(&record, "t")?,
                updated_ms: int(&record, "u")?,
                messages: messages?,
            }))
        })
        .await
    }

    async fn update(
        &self,
        scope: &Scope,
        claim_id: &str,
        ttl: i64,
        grace: i64,
    ) -> StorageResult<()> {
        let Ok(claim) = ObjectId::parse_str(claim_id) else {
            return Err(crate::storage::StorageError::ClaimNotFound);
        };
        self.run("claim update", true, |r, now| async move {
            ClaimTimes::new(now, ttl, grace)?;
            let ends = now.saturating_add(ms(ttl));
            let renewed = r
                .claims(&scope.project)
                .update_one(
                    doc! {
                        "_id": claim, "p": &scope.project, "q": &scope.queue,
                        "e": { "$gt": date(now) },
                    },
                    doc! { "$set": { "t": ttl, "g": grace, "u": now, "e": date(ends) } },
                )
                .await?;
            if renewed.matched_count == 0 {
                return Err(crate::storage::StorageError::ClaimNotFound.into());
            }
            r.messages(&scope.project)
                .update_many(
                    doc! {
                        "c": claim, "p": &scope.project, "q": &scope.queue,
                        "ce": { "$gt": now }, "e": { "$gt": date(now) },
                    },
                    take(None, ends, ttl, grace, false),
                )
                .await?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, scope: &Scope, claim_id: &str) -> StorageResult<()> {
        let Ok(claim) = ObjectId::parse_str(claim_id) else {
            return Ok(());
        };
        self.run("claim delete", true, |r, _| async move {
            // Only the messages this claim still holds; their counts stay.
            r.messages(&scope.project)
                .update_many(
                    doc! { "c": claim, "p": &scope.project, "q": &scope.queue },
                    doc! { "$set": { "ce": 0i64 }, "$unset": { "c": "" } },
                )
                .await?;
            r.claims(&scope.project)
                .delete_one(doc! { "_id": claim, "p": &scope.project, "q": &scope.queue })
                .await?;
            Ok(())
        })
        .await
    }
}
