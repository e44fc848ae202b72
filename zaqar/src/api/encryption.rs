//! Encrypted queues: bodies sealed before they are stored, opened on every
//! read path (list, get, get by ids, pop, claim create and get; the
//! notifier and the WebSocket pushes open them too). The format is
//! [`crate::storage::encryption`]'s.
//!
//! A body that cannot be sealed or opened (no key, a key this server does
//! not have, a damaged body) answers 503 and logs the queue and project,
//! never garbage and never a crash.

use super::Api;
use crate::error::{ApiError, ApiResult};
use crate::storage::{Message, NewMessage, Scope};

impl Api {
    /// Seals the bodies of messages posted to an encrypted queue.
    pub(super) fn seal_bodies(&self, scope: &Scope, messages: &mut [NewMessage]) -> ApiResult<()> {
        for m in messages {
            m.body = self.keyring.seal(&m.body).map_err(|e| {
                tracing::error!(queue = %scope.queue, project = %scope.project, error = %e, "cannot encrypt a message of an encrypted queue");
                ApiError::Unavailable("Messages could not be enqueued.".into())
            })?;
        }
        Ok(())
    }

    /// Opens the sealed bodies among `messages` (plain ones are kept).
    pub(super) fn open_bodies(&self, scope: &Scope, messages: &mut [Message]) -> ApiResult<()> {
        for m in messages {
            match self.keyring.open(&m.body) {
                Ok(None) => {}
                Ok(Some(plain)) => m.body = plain,
                Err(e) => {
                    tracing::error!(queue = %scope.queue, project = %scope.project, message = %m.id, error = %e, "cannot decrypt a message");
                    return Err(ApiError::Unavailable(
                        "Messages could not be decrypted.".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}
