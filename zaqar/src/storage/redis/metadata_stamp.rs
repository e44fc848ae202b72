//! Queue metadata kept in memory for posts, claims and listings, checked
//! by their scripts.
//!
//! A post validates its messages against the queue's metadata (size limits,
//! default ttl and delay, encryption), which lives in the project's hash
//! slot, while the post script runs on the queue's. Reading the metadata
//! costs a round trip of its own before every post: a quarter to a third of
//! the server's CPU per single post (doc/source/performance.rst).
//!
//! So each queue also has a *stamp*, `<Q>:mv`, a random value in the
//! queue's own slot that changes with every metadata write:
//!
//! - a metadata write ([`RedisStore::set_metadata`]) sets a new stamp
//!   before it writes the metadata and another after it; a create sets one
//!   after; a delete removes it;
//! - [`RedisStore::get_for_write`] reads the stamp *first*, then the
//!   metadata, and keeps both here; a queue without a stamp (one written
//!   before this existed) is not kept;
//! - [`RedisStore::post`](crate::storage::MessageStore::post) passes the
//!   stamp of the metadata `get_for_write` handed to this request (carried
//!   by [`validated`], not looked up again: another request may have kept
//!   a newer pair meanwhile), and so does a claim
//!   ([`RedisStore::create`](crate::storage::ClaimStore::create)), whose
//!   dead-letter policy comes from the metadata, and a listing
//!   ([`RedisStore::list`](crate::storage::MessageStore::list)), whose
//!   delay policy does (a listing refused has read nothing); the script compares it
//!   with `<Q>:mv` before its first write: a different (or missing) stamp
//!   refuses the write with [`StorageError::MetadataChanged`], the entry
//!   is dropped, and the api core reads the metadata again, validates
//!   again and writes again (three attempts, then 503);
//! - a post over the queue's own size limit never reaches the script, so
//!   the api core reads the metadata afresh (`fresh`) before it refuses
//!   it: a limit lifted through another server holds at once.
//!
//! What is kept is bounded: at most [`MAX_BYTES`] in all, and no queue
//! whose metadata is over [`MAX_KEPT_METADATA`]. An entry older than
//! [`ENTRY_TTL`] is read again, stamp and metadata, on the queue's next
//! post, claim or listing: one pipelined round trip on one server (as
//! without this memory), two on Cluster (the two keys are in different
//! slots), for queues that see fewer than one in ten seconds.
//!
//! Read in that order, a kept pair is never older than its stamp says: a
//! reader that saw the stamp of before a write and the metadata of after it
//! keeps a pair the next post refuses; one that saw the first stamp of a
//! write and the metadata of before it keeps a pair the second stamp
//! refuses. A server dying between a write's metadata and its second stamp
//! leaves the other servers' entries valid for at most [`ENTRY_TTL`]. Only
//! posts, claims and listings read this memory: every other operation reads
//! the metadata from Redis as before.
//!
//! [`StorageError::MetadataChanged`]: crate::storage::StorageError::MetadataChanged
//! [`RedisStore::set_metadata`]: crate::storage::QueueStore::set_metadata
//! [`RedisStore::get_for_write`]: crate::storage::QueueStore::get_for_write

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::storage::{validated, Metadata, Scope};

/// How long an entry is used without reading Redis again, at most: the
/// bound on staleness when a metadata writer died half-way.
pub const ENTRY_TTL: Duration = Duration::from_secs(10);

/// The most bytes of names, metadata and stamps remembered; past it the
/// memory starts again empty. Typical metadata is tens of bytes, so this
/// holds tens of thousands of queues, and no client can make it hold more.
pub const MAX_BYTES: usize = 8 << 20;

/// Metadata longer than this (as JSON) is not kept: its queue is read from
/// Redis for every post.
pub const MAX_KEPT_METADATA: usize = 4096;

/// What one entry counts against [`MAX_BYTES`], beyond its strings.
const ENTRY_OVERHEAD: usize = 128;

/// A new random stamp.
pub fn new_stamp() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The stamp key of the queue whose keys start with `prefix`.
pub fn key(prefix: &str) -> String {
    format!("{prefix}:mv")
}

/// The metadata and stamp of queues recently posted to or claimed from.
#[derive(Default)]
pub struct StampedMetadata {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    entries: HashMap<Scope, Entry>,
    bytes: usize,
}

struct Entry {
    metadata: Metadata,
    stamp: String,
    read_at: Instant,
    bytes: usize,
}

impl StampedMetadata {
    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The metadata kept for `scope` and its stamp, if read less than
    /// [`ENTRY_TTL`] ago.
    pub fn metadata(&self, scope: &Scope) -> Option<(Metadata, String)> {
        let kept = self.kept();
        let e = kept.entries.get(scope)?;
        (e.read_at.elapsed() < ENTRY_TTL).then(|| (e.metadata.clone(), e.stamp.clone()))
    }

    /// The stamp a post to or a claim on `scope` must find (empty:
    /// unchecked): the one [`validated::record`]ed when the write runs in
    /// a [`validated::scope`], else the one kept for the queue.
    pub fn stamp(&self, scope: &Scope) -> String {
        match validated::recorded() {
            Some(recorded) => recorded.unwrap_or_default(),
            None => self
                .kept()
                .entries
                .get(scope)
                .map(|e| e.stamp.clone())
                .unwrap_or_default(),
        }
    }

    /// The stamp a listing must find (empty: unchecked): only the one a
    /// [`validated::scope`] recorded. A read outside one (health, the
    /// notification fan-out) read no kept metadata and has no attempt to
    /// make again, so it is never refused.
    pub fn validated_stamp() -> String {
        validated::recorded().flatten().unwrap_or_default()
    }

    /// Keeps `metadata` (`json_len` bytes as stored) with the stamp read
    /// before it; metadata over [`MAX_KEPT_METADATA`] is not kept.
    pub fn keep(&self, scope: &Scope, stamp: String, metadata: Metadata, json_len: usize) {
        let mut kept = self.kept();
        if let Some(old) = kept.entries.remove(scope) {
            kept.bytes -= old.bytes;
        }
        if json_len > MAX_KEPT_METADATA {
            return;
        }
        let bytes =
            ENTRY_OVERHEAD + scope.project.len() + scope.queue.len() + stamp.len() + json_len;
        if kept.bytes + bytes > MAX_BYTES {
            kept.entries.clear();
            kept.bytes = 0;
        }
        kept.bytes += bytes;
        kept.entries.insert(
            scope.clone(),
            Entry {
                metadata,
                stamp,
                read_at: Instant::now(),
                bytes,
            },
        );
    }

    /// Forgets `scope` (its metadata changed, or a write found it stale).
    pub fn forget(&self, scope: &Scope) {
        let mut kept = self.kept();
        if let Some(old) = kept.entries.remove(scope) {
            kept.bytes -= old.bytes;
        }
    }

    /// How many queues are kept, and their bytes (for tests).
    #[cfg(test)]
    fn size(&self) -> (usize, usize) {
        let kept = self.kept();
        (kept.entries.len(), kept.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_stays_within_its_budget() {
        let stamped = StampedMetadata::default();
        let scope = |i: usize| Scope::new("p", format!("q{i}"));
        // Large metadata is never kept, and replaces what was kept.
        stamped.keep(&scope(0), new_stamp(), Metadata::new(), 10);
        stamped.keep(
            &scope(0),
            new_stamp(),
            Metadata::new(),
            MAX_KEPT_METADATA + 1,
        );
        assert_eq!(stamped.size(), (0, 0));
        assert_eq!(stamped.stamp(&scope(0)), "");
        // Many queues with the largest metadata kept: the budget holds.
        let per = ENTRY_OVERHEAD + 1 + 6 + 32 + MAX_KEPT_METADATA;
        for i in 0..(3 * MAX_BYTES / per) {
            stamped.keep(&scope(i), new_stamp(), Metadata::new(), MAX_KEPT_METADATA);
            assert!(stamped.size().1 <= MAX_BYTES);
        }
        let (n, bytes) = stamped.size();
        assert!(n > 0 && bytes <= MAX_BYTES, "{n} {bytes}");
        stamped.forget(&scope(3 * MAX_BYTES / per - 1));
        assert_eq!(stamped.size().0, n - 1);
    }
}
