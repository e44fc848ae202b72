//! The embedded driver: SQLite (bundled) in a data directory.
//!
//! (Being written: see the helper's task.)

use std::path::Path;
use std::sync::Arc;

use super::clock::SharedClock;
use super::pipeline::Backend;
use super::StorageResult;

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    _clock: SharedClock,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(_path: &Path, clock: SharedClock) -> StorageResult<Self> {
        Ok(SqliteStore { _clock: clock })
    }

    /// The driver's three stores.
    pub fn backend(&self) -> Backend {
        let _ = Arc::new(self.clone());
        unimplemented!()
    }
}
