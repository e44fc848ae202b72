//! Reserved queue metadata (`_default_message_ttl`, `_dead_letter_queue`, ...):
//! validation, the defaults shown on read, the JSON-patch subset of
//! `PATCH /v2/queues/{q}`, and the retry of writes that validated against
//! metadata a store may answer from memory.

use std::future::Future;

use serde_json::{Map, Value};

use super::body::as_int;
use super::validate::{message_ttl_text, queue_identification_problem, MIN_MESSAGE_TTL};
use crate::config::TransportConfig;
use crate::error::{storage_error, ApiError, ApiResult};
use crate::notification::retry;
use crate::storage::{validated, DeadLetter, Metadata, StorageError};

/// Why one attempt of a write (a post, a claim) failed.
pub(super) enum WriteError {
    /// The metadata it was validated against may be out of date: the store
    /// refused the write (it changed since it was read), or the queue's own
    /// size limit refused a post on metadata the store may have answered
    /// from memory. Read afresh, the next attempt decides.
    MetadataChanged,
    /// The answer to the client.
    Api(ApiError),
}

impl From<ApiError> for WriteError {
    fn from(e: ApiError) -> Self {
        WriteError::Api(e)
    }
}

/// [`storage_error`] for one attempt of a write: a store's
/// `MetadataChanged` asks for another attempt.
pub(super) fn write_error(what: &'static str) -> impl Fn(StorageError) -> WriteError {
    move |e| match e {
        StorageError::MetadataChanged => WriteError::MetadataChanged,
        e => WriteError::Api(storage_error(what)(e)),
    }
}

/// Runs `attempt(fresh)` for a write that validates against the queue's
/// metadata ([`crate::storage::QueueStore::get_for_write`]): first on what
/// the store may answer from memory, then on metadata read afresh after
/// each `MetadataChanged`; three attempts in all, then 503 with `what`.
/// Each attempt runs in its own [`validated::scope`], so the store checks
/// the metadata this attempt validated against.
pub(super) async fn with_current_metadata<T, F, Fut>(
    what: &'static str,
    mut attempt: F,
) -> ApiResult<T>
where
    F: FnMut(bool) -> Fut,
    Fut: Future<Output = Result<T, WriteError>>,
{
    let mut fresh = false;
    for _ in 0..3 {
        match validated::scope(attempt(fresh)).await {
            Err(WriteError::MetadataChanged) => fresh = true,
            Err(WriteError::Api(e)) => return Err(e),
            Ok(done) => return Ok(done),
        }
    }
    Err(ApiError::Unavailable(what.into()))
}

/// The reserved keys and the defaults shown for them when unset or falsy.
pub fn reserved_defaults(limits: &TransportConfig) -> [(&'static str, Value); 7] {
    [
        (
            "_max_messages_post_size",
            limits.max_messages_post_size.into(),
        ),
        ("_default_message_ttl", limits.default_message_ttl.into()),
        (
            "_default_message_delay",
            limits.default_message_delay.into(),
        ),
        ("_dead_letter_queue", Value::Null),
        ("_dead_letter_queue_messages_ttl", Value::Null),
        ("_max_claim_count", Value::Null),
        ("_enable_encrypt_messages", false.into()),
    ]
}

pub use crate::json::truthy;

/// The reserved keys a topic shows and their defaults: a topic has no
/// claims, dead letters or encryption, so only the post limits (as the
/// reference's topic resource shows them).
pub fn topic_reserved_defaults(limits: &TransportConfig) -> [(&'static str, Value); 3] {
    let [size, ttl, delay, ..] = reserved_defaults(limits);
    [size, ttl, delay]
}

/// Stored metadata with every key of `defaults` that is missing or falsy
/// set to its default.
pub fn fill_defaults(mut metadata: Metadata, defaults: &[(&'static str, Value)]) -> Metadata {
    for (key, default) in defaults {
        if !metadata.get(*key).is_some_and(truthy) {
            metadata.insert((*key).to_owned(), default.clone());
        }
    }
    metadata
}

/// Stored metadata with every reserved key that is missing or falsy set to
/// its default, as `GET /v2/queues/{q}` shows it.
pub fn with_defaults(metadata: Metadata, limits: &TransportConfig) -> Metadata {
    fill_defaults(metadata, &reserved_defaults(limits))
}

/// The reserved integer values a queue's behaviour depends on.
#[derive(Clone, Debug, Default)]
pub struct QueuePolicy {
    /// `_max_messages_post_size`, when set.
    pub max_post_size: Option<i64>,
    /// `_default_message_ttl`, when set.
    pub default_ttl: Option<i64>,
    /// `_default_message_delay`, when set (non-zero makes a delay queue).
    pub default_delay: Option<i64>,
    /// Dead-letter policy, when both keys are set.
    pub dead_letter: Option<DeadLetter>,
    /// `_enable_encrypt_messages`: bodies are sealed at rest.
    pub encrypt: bool,
}

impl QueuePolicy {
    /// Reads the policy from stored metadata (only truthy integer values count).
    pub fn from_metadata(m: &Metadata) -> Self {
        let int = |k: &str| m.get(k).filter(|v| truthy(v)).and_then(as_int);
        let dead_letter = match (int("_max_claim_count"), m.get("_dead_letter_queue")) {
            (Some(max), Some(Value::String(queue))) if !queue.is_empty() => Some(DeadLetter {
                max_claim_count: max,
                queue: queue.clone(),
                ttl: int("_dead_letter_queue_messages_ttl"),
            }),
            _ => None,
        };
        QueuePolicy {
            max_post_size: int("_max_messages_post_size"),
            default_ttl: int("_default_message_ttl"),
            default_delay: int("_default_message_delay"),
            dead_letter,
            encrypt: m.get("_enable_encrypt_messages") == Some(&Value::Bool(true)),
        }
    }
}

/// Checks an integer reserved key: `None` (JSON null or absent) passes; a
/// non-integer fails with `<key> must be integer.`; the range is checked with
/// `range_text` as the message.
fn check_int(
    m: &Metadata,
    key: &str,
    range: Option<(i64, i64)>,
    range_text: impl FnOnce() -> String,
) -> ApiResult<()> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(v) => {
            let n =
                as_int(v).ok_or_else(|| ApiError::invalid(format!("{key} must be integer.")))?;
            match range {
                Some((lo, hi)) if !(lo..=hi).contains(&n) => Err(ApiError::invalid(range_text())),
                _ => Ok(()),
            }
        }
    }
}

/// Validates the reserved keys of queue metadata (PUT and PATCH).
pub fn validate(m: &Metadata, limits: &TransportConfig) -> ApiResult<()> {
    check_int(
        m,
        "_default_message_ttl",
        Some((MIN_MESSAGE_TTL, limits.max_message_ttl)),
        || {
            format!(
            "_default_message_ttl can not exceed {} seconds, and must be at least {MIN_MESSAGE_TTL} seconds long.",
            limits.max_message_ttl
        )
        },
    )?;
    check_int(
        m,
        "_max_messages_post_size",
        Some((1, limits.max_messages_post_size)),
        || {
            format!(
                "_max_messages_post_size can not exceed {},  and must be at least greater than 0.",
                limits.max_messages_post_size
            )
        },
    )?;
    // The reference takes any integer; a negative count made no sense and
    // a huge one none either.
    check_int(m, "_max_claim_count", Some((0, MAX_CLAIM_COUNT)), || {
        format!("_max_claim_count can not exceed {MAX_CLAIM_COUNT}, and must be at least 0.")
    })?;
    // The reference does not check the name at all (and answers 500 for
    // some values); it names a queue of the same project, so it must be one.
    match m.get("_dead_letter_queue") {
        None | Some(Value::Null) => {}
        Some(Value::String(q)) if queue_identification_problem(q, "").is_none() => {}
        Some(_) => {
            return Err(ApiError::invalid(
                "_dead_letter_queue must be a queue name: at most 64 ASCII letters, digits, underscores, \
                 dashes and dots.",
            ))
        }
    }
    check_int(
        m,
        "_dead_letter_queue_messages_ttl",
        Some((MIN_MESSAGE_TTL, limits.max_message_ttl)),
        || message_ttl_text(limits),
    )?;
    check_int(
        m,
        "_default_message_delay",
        Some((0, limits.max_message_delay)),
        || {
            format!(
                "The TTL can not exceed {} seconds, and must be at least 0 seconds long.",
                limits.max_message_delay
            )
        },
    )?;
    if let Some(v) = m.get("_enable_encrypt_messages") {
        if truthy(v) && !v.is_boolean() {
            return Err(ApiError::invalid(
                "_enable_encrypt_messages must be boolean.",
            ));
        }
    }
    validate_retry_policy(m.get("_retry_policy"))
}

/// Largest `_max_claim_count`.
pub const MAX_CLAIM_COUNT: i64 = 1_000_000;

/// Validates a `_retry_policy` (queue metadata or subscription options):
/// the notification layer's rules ([`retry::validate`]), answered as 400.
///
/// # Errors
/// 400 "Invalid API request" saying what is wrong.
pub fn validate_retry_policy(policy: Option<&Value>) -> ApiResult<()> {
    retry::validate(policy).map_err(ApiError::invalid)
}

/// One validated JSON-patch operation on queue metadata.
#[derive(Clone, Debug, PartialEq)]
pub enum PatchOp {
    /// Set a key.
    Add(String, Value),
    /// Set a key that exists (or is reserved).
    Replace(String, Value),
    /// Delete a key.
    Remove(String),
}

/// Parses the body of a metadata PATCH (already parsed JSON).
pub fn parse_patch(doc: &Value) -> ApiResult<Vec<PatchOp>> {
    let Value::Array(changes) = doc else {
        return Err(super::body::document_type_not_supported());
    };
    let mut ops = Vec::with_capacity(changes.len());
    for change in changes {
        let Value::Object(change) = change else {
            return Err(ApiError::invalid("Operations must be JSON objects."));
        };
        let op = match change.get("op") {
            None => {
                return Err(ApiError::invalid(
                    "Unable to find `op` in JSON Schema change. It must be one of the following: add, remove, replace.",
                ))
            }
            Some(Value::String(s)) if matches!(s.as_str(), "add" | "remove" | "replace") => s.as_str(),
            Some(other) => {
                let shown = match other {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                return Err(ApiError::invalid(format!(
                    "Invalid operation: `{shown}`. It must be one of the following: add, remove, replace."
                )));
            }
        };
        let path = match change.get("path") {
            None => {
                return Err(ApiError::invalid(
                    "Unable to find 'path' in JSON Schema change",
                ))
            }
            Some(Value::String(p)) => p,
            Some(_) => {
                return Err(ApiError::invalid(
                    "The value of 'path' must be a JSON pointer string.",
                ))
            }
        };
        let tokens = decode_pointer(path)?;
        if tokens.len() != 2 {
            return Err(ApiError::invalid(format!(
                "Invalid JSON pointer for this resource: '/{}, e.g /metadata/key'",
                tokens.join("/")
            )));
        }
        let value = if op == "remove" {
            None
        } else {
            Some(change.get("value").cloned().ok_or_else(|| {
                ApiError::invalid(format!(
                    "Operation \"{op}\" requires a member named \"value\"."
                ))
            })?)
        };
        // The reference skips this check for remove; we do not let a remove
        // aimed at another root silently act on the metadata.
        if !tokens[0].eq_ignore_ascii_case("metadata") {
            return Err(ApiError::invalid(
                "The root of path must be metadata, e.g /metadata/key.",
            ));
        }
        let key = tokens[1].clone();
        ops.push(match (op, value) {
            ("add", Some(v)) => PatchOp::Add(key, v),
            ("replace", Some(v)) => PatchOp::Replace(key, v),
            _ => PatchOp::Remove(key),
        });
    }
    Ok(ops)
}

/// Splits a JSON pointer into tokens, with the reference's restrictions.
fn decode_pointer(pointer: &str) -> ApiResult<Vec<String>> {
    if !pointer.starts_with('/') {
        return Err(ApiError::invalid(format!(
            "Pointer `{pointer}` does not start with \"/\"."
        )));
    }
    let rest = &pointer[1..];
    let segments: Vec<&str> = rest.split('/').collect();
    let inner = segments.len().saturating_sub(1);
    if segments
        .iter()
        .take(inner)
        .skip(1)
        .any(|seg| seg.trim().is_empty())
    {
        return Err(ApiError::invalid(format!(
            "Pointer `{pointer}` contains adjacent \"/\"."
        )));
    }
    if pointer.len() > 1 && pointer.ends_with('/') {
        return Err(ApiError::invalid(format!(
            "Pointer `{pointer}` end with \"/\"."
        )));
    }
    let bad_tilde = pointer.ends_with('~')
        || pointer
            .as_bytes()
            .windows(2)
            .any(|w| w[0] == b'~' && w[1] != b'0' && w[1] != b'1');
    if bad_tilde {
        return Err(ApiError::invalid(format!(
            "Pointer `{pointer}` contains \"~\" not part of a recognized escape sequence."
        )));
    }
    Ok(pointer
        .trim_start_matches('/')
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~").trim().to_owned())
        .collect())
}

/// Applies validated operations to stored metadata.
pub fn apply_patch(
    metadata: &mut Map<String, Value>,
    ops: Vec<PatchOp>,
    limits: &TransportConfig,
) -> ApiResult<()> {
    let reserved = reserved_defaults(limits);
    let is_reserved = |k: &str| reserved.iter().any(|(r, _)| *r == k);
    for op in ops {
        match op {
            PatchOp::Add(k, v) => {
                metadata.insert(k, v);
            }
            PatchOp::Replace(k, v) => {
                if metadata.contains_key(&k) || is_reserved(&k) {
                    metadata.insert(k, v);
                } else {
                    return Err(ApiError::Conflict(
                        format!("Can't replace non-existent object {k}.").into(),
                    ));
                }
            }
            PatchOp::Remove(k) => {
                if metadata.shift_remove(&k).is_none() && !is_reserved(&k) {
                    return Err(ApiError::Conflict(
                        format!("Can't remove non-existent object {k}.").into(),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::retry::{MAX_RETRY_COUNT, MAX_RETRY_DELAY};
    use serde_json::json;

    fn meta(v: Value) -> Metadata {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn reserved_values_are_checked() {
        let l = TransportConfig::default();
        assert!(validate(&meta(json!({"_default_message_ttl": 60, "x": "y"})), &l).is_ok());
        assert!(validate(&meta(json!({"_default_message_ttl": null})), &l).is_ok());
        for bad in [
            json!(""),
            json!([]),
            json!({}),
            json!("60"),
            json!(1.5),
            json!(0),
            json!(59),
        ] {
            let e = validate(&meta(json!({ "_default_message_ttl": bad })), &l).unwrap_err();
            assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
        }
        let e = validate(&meta(json!({"_max_messages_post_size": 0})), &l).unwrap_err();
        assert!(e.description().unwrap().contains("262144,  and must"));
        assert!(validate(&meta(json!({"_enable_encrypt_messages": "yes"})), &l).is_err());
        assert!(validate(
            &meta(json!({"_retry_policy": {"minimum_delay": 10, "maximum_delay": 15}})),
            &l
        )
        .is_err());
    }

    /// Defect: `_retry_policy` fields were unbounded, and a `maximum_delay`
    /// near 2^63 crashed the delivery worker. Every integer field is
    /// bounded; what the reference accepts within the bounds still passes.
    #[test]
    fn retry_policy_fields_are_bounded() {
        let l = TransportConfig::default();
        let check = |policy: Value| validate(&meta(json!({ "_retry_policy": policy })), &l);
        for ok in [
            json!({"retries_with_no_delay": 3, "minimum_delay_retries": 3, "minimum_delay": 5,
                   "maximum_delay": 30, "maximum_delay_retries": 3, "retry_backoff_function": "linear",
                   "ignore_subscription_override": false}),
            json!({"minimum_delay": 0, "maximum_delay": MAX_RETRY_DELAY}),
            json!({"minimum_delay": MAX_RETRY_DELAY - 10, "maximum_delay": MAX_RETRY_DELAY}),
            json!({"retries_with_no_delay": MAX_RETRY_COUNT, "minimum_delay_retries": 0,
                   "maximum_delay_retries": MAX_RETRY_COUNT}),
            json!({"retries_with_no_delay": true, "maximum_delay": null}),
            json!({"retry_backoff_function": "", "ignore_subscription_override": 0}),
            json!({}),
        ] {
            assert!(check(ok.clone()).is_ok(), "{ok} must be accepted");
        }
        let bad = |policy: Value, text: &str| {
            let e = check(policy.clone()).unwrap_err();
            assert_eq!(e.status(), http::StatusCode::BAD_REQUEST, "{policy}");
            assert_eq!(e.description().as_deref(), Some(text), "{policy}");
        };
        let delay = |k: &str| {
            format!("Retry policy: {k} can not exceed 86400 seconds, and must be at least 0 seconds long.")
        };
        let count =
            |k: &str| format!("Retry policy: {k} can not exceed 1000, and must be at least 0.");
        bad(
            json!({"maximum_delay": 9_000_000_000_000_000_000_i64}),
            &delay("maximum_delay"),
        );
        bad(
            json!({"maximum_delay": MAX_RETRY_DELAY + 1}),
            &delay("maximum_delay"),
        );
        bad(
            json!({"minimum_delay": -5, "maximum_delay": 30}),
            &delay("minimum_delay"),
        );
        bad(
            json!({"retries_with_no_delay": 9_000_000_000_000_000_000_i64}),
            &count("retries_with_no_delay"),
        );
        bad(
            json!({"minimum_delay_retries": -1}),
            &count("minimum_delay_retries"),
        );
        bad(
            json!({"maximum_delay_retries": MAX_RETRY_COUNT + 1}),
            &count("maximum_delay_retries"),
        );
        for wrong in [
            json!(1.5),
            json!(0.0),
            json!("5"),
            json!(""),
            json!([]),
            json!({}),
        ] {
            bad(
                json!({ "minimum_delay_retries": wrong }),
                "Retry policy: minimum_delay_retries must be a integer.",
            );
        }
        bad(
            json!({"retry_backoff_function": "cubic"}),
            "invalid retry_backoff_function.",
        );
        bad(
            json!({"retry_backoff_function": 3}),
            "retry_backoff_function must be a string.",
        );
        bad(
            json!({"ignore_subscription_override": "yes"}),
            "ignore_subscription_override must be a boolean.",
        );
        bad(
            json!({"minimum_delay": 20, "maximum_delay": 10}),
            "minimum_delay must less than maximum_delay.",
        );
        bad(
            json!({"minimum_delay": 20, "maximum_delay": 29}),
            "invalid minimum_delay and maximum_delay.",
        );
        bad(json!("x"), "retry_policy must be a dict.");
    }

    #[test]
    fn defaults_fill_missing_and_falsy() {
        let l = TransportConfig::default();
        let m = with_defaults(meta(json!({"_default_message_ttl": 0, "a": 1})), &l);
        assert_eq!(m["_default_message_ttl"], json!(3600));
        assert_eq!(m["_max_messages_post_size"], json!(262144));
        assert_eq!(m["_dead_letter_queue"], Value::Null);
        assert_eq!(m["a"], json!(1));
    }

    #[test]
    fn patch_rules() {
        let l = TransportConfig::default();
        let ops = parse_patch(&json!([{"op": "add", "path": "/metadata/k", "value": 1}])).unwrap();
        let mut m = Map::new();
        apply_patch(&mut m, ops, &l).unwrap();
        assert_eq!(m["k"], json!(1));
        let ops =
            parse_patch(&json!([{"op": "replace", "path": "/metadata/nope", "value": 1}])).unwrap();
        assert_eq!(
            apply_patch(&mut m, ops, &l).unwrap_err().status(),
            http::StatusCode::CONFLICT
        );
        let ops = parse_patch(&json!([{"op": "remove", "path": "/metadata/_default_message_ttl"}]))
            .unwrap();
        assert!(apply_patch(&mut m, ops, &l).is_ok());
        assert!(parse_patch(&json!([{"op": "add", "path": "/a/b/c", "value": 1}])).is_err());
        assert!(parse_patch(&json!([{"op": "add", "path": "/x/k", "value": 1}])).is_err());
        assert!(parse_patch(&json!([{"op": "move", "path": "/metadata/k"}])).is_err());
        assert!(parse_patch(&json!({"op": "add"})).is_err());
        assert!(parse_patch(&json!([{"op": "add", "path": 3, "value": 1}])).is_err());
    }
}
