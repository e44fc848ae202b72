//! The metadata version one write validated against, carried from
//! [`QueueStore::get_for_write`] to the write it guards.
//!
//! A driver that answers [`QueueStore::get_for_write`] from memory must
//! check, atomically with the post or claim that follows, that the metadata
//! is still the one it answered. The version to check is the one handed out
//! to *this* request, not whatever the driver keeps for the queue when the
//! write runs: between the two, another request may have found the kept
//! metadata stale and read the new one, and a write that validated against
//! the old metadata must not pass with the new version.
//!
//! So the api core runs each attempt of a write inside [`scope`]; the
//! driver's `get_for_write` [`record`]s the version it answered with, and
//! its post or claim checks the [`recorded`] one. Outside a scope (a direct
//! caller of the store) nothing is recorded and the driver falls back to
//! the version it keeps.
//!
//! [`QueueStore::get_for_write`]: crate::storage::QueueStore::get_for_write

use std::cell::RefCell;
use std::future::Future;

tokio::task_local! {
    /// `None` until `get_for_write` answered; then the version it answered
    /// with (`Some(None)`: metadata read without a version, the write is
    /// not checked).
    static VALIDATED: RefCell<Option<Option<String>>>;
}

/// Runs one attempt of a write with its own record of the version.
pub async fn scope<F: Future>(attempt: F) -> F::Output {
    VALIDATED.scope(RefCell::new(None), attempt).await
}

/// Records the version of the metadata just handed to the write (`None`:
/// the write must not be checked). Outside a [`scope`] this does nothing.
pub fn record(version: Option<String>) {
    let _ = VALIDATED.try_with(|v| *v.borrow_mut() = Some(version));
}

/// The version recorded in this [`scope`]: `None` when outside one or
/// nothing was recorded, `Some(None)` when the write is not checked.
pub fn recorded() -> Option<Option<String>> {
    VALIDATED.try_with(|v| v.borrow().clone()).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_scope_keeps_its_own_version() {
        record(Some("outside".into()));
        assert_eq!(recorded(), None, "nothing is recorded outside a scope");
        scope(async {
            assert_eq!(recorded(), None);
            record(Some("a".into()));
            scope(async {
                assert_eq!(recorded(), None, "a nested scope starts empty");
                record(None);
                assert_eq!(recorded(), Some(None));
            })
            .await;
            assert_eq!(recorded(), Some(Some("a".into())));
        })
        .await;
    }
}
