//! Pipeline stages shipped with the crate (besides the notifier, which
//! lives in [`crate::notification`]).
//!
//! [`example`] is the stage the tutorial "Writing storage pipeline stages"
//! (`doc/source/contributor/writing_pipeline_stages.rst`) walks through; it
//! is compiled and tested with the crate so the tutorial cannot drift.

pub mod example;
pub mod metadata_cache;
