//! Queue metadata kept in memory for posts, checked by the post script.
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
//! - [`RedisStore::get_for_post`] reads the stamp *first*, then the
//!   metadata, and keeps both here; a queue without a stamp (one written
//!   before this existed) is not kept;
//! - [`RedisStore::post`](crate::storage::MessageStore::post) passes the
//!   stamp kept for its queue, and the post script compares it with
//!   `<Q>:mv` before its first write: a different (or missing) stamp
//!   refuses the post with [`StorageError::MetadataChanged`], the entry is
//!   dropped, and the api core reads the metadata again, validates again
//!   and posts again;
//! - a post that fails validation never reaches the script, so the api
//!   core validates it again against metadata read afresh (`fresh`) before
//!   it refuses it: a limit lifted through another server holds at once.
//!
//! Read in that order, a kept pair is never older than its stamp says: a
//! reader that saw the stamp of before a write and the metadata of after it
//! keeps a pair the next post refuses; one that saw the first stamp of a
//! write and the metadata of before it keeps a pair the second stamp
//! refuses. A server dying between a write's metadata and its second stamp
//! leaves the other servers' entries valid for at most [`ENTRY_TTL`]. Only
//! posts read this memory: every other operation reads the metadata from
//! Redis as before.
//!
//! [`StorageError::MetadataChanged`]: crate::storage::StorageError::MetadataChanged
//! [`RedisStore::set_metadata`]: crate::storage::QueueStore::set_metadata
//! [`RedisStore::get_for_post`]: crate::storage::QueueStore::get_for_post

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::storage::{Metadata, Scope};

/// How long an entry is used without reading Redis again, at most: the
/// bound on staleness when a metadata writer died half-way.
pub const ENTRY_TTL: Duration = Duration::from_secs(10);

/// The most queues remembered; past it the memory starts again empty.
pub const MAX_ENTRIES: usize = 10_000;

/// A new random stamp.
pub fn new_stamp() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The stamp key of the queue whose keys start with `prefix`.
pub fn key(prefix: &str) -> String {
    format!("{prefix}:mv")
}

/// The metadata and stamp of recently posted-to queues.
#[derive(Default)]
pub struct StampedMetadata {
    entries: Mutex<HashMap<Scope, Entry>>,
}

struct Entry {
    metadata: Metadata,
    stamp: String,
    read_at: Instant,
}

impl StampedMetadata {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Scope, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The metadata kept for `scope`, if read less than [`ENTRY_TTL`] ago.
    pub fn metadata(&self, scope: &Scope) -> Option<Metadata> {
        let entries = self.entries();
        let e = entries.get(scope)?;
        (e.read_at.elapsed() < ENTRY_TTL).then(|| e.metadata.clone())
    }

    /// The stamp a post to `scope` must find (`None`: post unchecked, the
    /// metadata was read from Redis for this post).
    pub fn stamp(&self, scope: &Scope) -> Option<String> {
        self.entries().get(scope).map(|e| e.stamp.clone())
    }

    /// Keeps `metadata` with the stamp read before it.
    pub fn keep(&self, scope: &Scope, stamp: String, metadata: Metadata) {
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(scope) {
            entries.clear();
        }
        entries.insert(
            scope.clone(),
            Entry {
                metadata,
                stamp,
                read_at: Instant::now(),
            },
        );
    }

    /// Forgets `scope` (its metadata changed, or a post found it stale).
    pub fn forget(&self, scope: &Scope) {
        self.entries().remove(scope);
    }
}
