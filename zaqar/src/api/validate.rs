//! Validation rules of the API, with the reference's limits and texts.

use std::borrow::Cow;

use crate::config::{ClientIdMode, TransportConfig};
use crate::error::{ApiError, ApiResult};

/// Shortest message TTL (seconds).
pub const MIN_MESSAGE_TTL: i64 = 60;
/// Shortest claim TTL (seconds).
pub const MIN_CLAIM_TTL: i64 = 60;
/// Shortest claim grace (seconds).
pub const MIN_CLAIM_GRACE: i64 = 60;
/// Shortest subscription TTL (seconds).
pub const MIN_SUBSCRIPTION_TTL: i64 = 60;
/// Longest queue name.
pub const QUEUE_NAME_MAX_LEN: usize = 64;
/// Longest project id.
pub const PROJECT_ID_MAX_LEN: usize = 256;

/// Why a project id past [`PROJECT_ID_MAX_LEN`] is refused.
const PROJECT_ID_TOO_LONG: &str = "Project ids may not be more than 256 characters long.";

/// Why a queue name or project id is not acceptable, in the reference's words.
pub fn queue_identification_problem(queue: &str, project: &str) -> Option<&'static str> {
    if project.len() > PROJECT_ID_MAX_LEN {
        return Some(PROJECT_ID_TOO_LONG);
    }
    if queue.len() > QUEUE_NAME_MAX_LEN {
        return Some("Queue names may not be more than 64 characters long.");
    }
    if queue.is_empty()
        || !queue
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Some(
            "Queue names may only contain ASCII letters, digits, underscores, and dashes.",
        );
    }
    None
}

/// Checks a queue name and project id.
pub fn queue_identification(queue: &str, project: &str) -> ApiResult<()> {
    match queue_identification_problem(queue, project) {
        None => Ok(()),
        Some(reason) => Err(ApiError::InvalidQueueIdentification(reason)),
    }
}

/// Checks the `Client-ID` header and returns it.
pub fn client_id(raw: Option<&str>, limits: &TransportConfig) -> ApiResult<String> {
    let raw = raw.ok_or_else(|| {
        ApiError::bad_request(
            "Missing header value",
            "The \"Client-Id\" header is required.",
        )
    })?;
    match limits.client_id_uuid_safe {
        ClientIdMode::Strict => {
            if parses_as_uuid(raw) {
                Ok(raw.to_owned())
            } else {
                Err(ApiError::bad_request(
                    "Wrong UUID value",
                    "Malformed hexadecimal UUID.",
                ))
            }
        }
        ClientIdMode::Off => {
            // The reference's hook reports this failure like a bad UUID.
            let n = raw.chars().count();
            if n < limits.min_length_client_id || n > limits.max_length_client_id {
                Err(ApiError::bad_request(
                    "Wrong UUID value",
                    "Malformed hexadecimal UUID.",
                ))
            } else {
                Ok(raw.to_owned())
            }
        }
    }
}

/// Whether `s` is a UUID in any of the hexadecimal forms Python's
/// `uuid.UUID` accepts (`urn:uuid:` prefix, braces, hyphens anywhere).
pub fn parses_as_uuid(s: &str) -> bool {
    // Without a prefix to remove (the usual case), checked in place: this
    // runs on every request.
    if s.contains("urn:") || s.contains("uuid:") {
        return hex_uuid(&s.replace("urn:", "").replace("uuid:", ""));
    }
    hex_uuid(s)
}

/// 32 hexadecimal digits, hyphens anywhere, braces around.
fn hex_uuid(s: &str) -> bool {
    let mut digits = 0;
    for b in s.trim_matches(|c| c == '{' || c == '}').bytes() {
        match b {
            b'-' => {}
            b if b.is_ascii_hexdigit() => digits += 1,
            _ => return false,
        }
    }
    digits == 32
}

/// Checks the project id header and returns it.
pub fn project_id(raw: Option<&str>) -> ApiResult<String> {
    match raw {
        None => Err(ApiError::bad_request("Project-Id Missing", "The header X-PROJECT-ID was missing")),
        Some("") => Err(ApiError::bad_request(
            "Empty project header not allowed",
            "X-PROJECT-ID cannot be an empty string. Specify the right header X-PROJECT-ID and retry.",
        )),
        // The reference checks the length only on routes naming a queue; a
        // project id of any size is otherwise stored and echoed. Bounded on
        // every route here.
        Some(p) if p.len() > PROJECT_ID_MAX_LEN => Err(ApiError::InvalidQueueIdentification(
            PROJECT_ID_TOO_LONG,
        )),
        Some(p) => Ok(p.to_owned()),
    }
}

/// Checks `limit` against `1..=max`, with the given message.
pub fn limit(
    value: Option<i64>,
    max: i64,
    message: impl Fn(i64) -> String,
) -> ApiResult<Option<usize>> {
    match value {
        None => Ok(None),
        Some(v) if v > 0 && v <= max => Ok(Some(v as usize)),
        Some(_) => Err(ApiError::invalid(message(max))),
    }
}

/// The message-style limit text.
pub fn may_not_exceed(max: i64) -> String {
    format!("Limit must be at least 1 and may not be greater than {max}.")
}

/// The queue-style limit text.
pub fn no_greater_than(max: i64) -> String {
    format!("Limit must be at least 1 and no greater than {max}.")
}

/// Checks a message TTL.
pub fn message_ttl(ttl: i64, limits: &TransportConfig) -> ApiResult<()> {
    if (MIN_MESSAGE_TTL..=limits.max_message_ttl).contains(&ttl) {
        Ok(())
    } else {
        Err(ApiError::invalid(message_ttl_text(limits)))
    }
}

/// The text for a message TTL out of bounds.
pub fn message_ttl_text(limits: &TransportConfig) -> String {
    format!(
        "The TTL for a message may not exceed {} seconds, and must be at least {MIN_MESSAGE_TTL} seconds long.",
        limits.max_message_ttl
    )
}

/// Checks a message delay.
pub fn message_delay(delay: i64, limits: &TransportConfig) -> ApiResult<()> {
    if (0..=limits.max_message_delay).contains(&delay) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "The Delay TTL for a message may not exceed {} seconds,and must be at least 0 seconds long.",
            limits.max_message_delay
        )))
    }
}

/// Checks a claim TTL.
pub fn claim_ttl(ttl: i64, limits: &TransportConfig) -> ApiResult<()> {
    if (MIN_CLAIM_TTL..=limits.max_claim_ttl).contains(&ttl) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "The TTL for a claim may not exceed {} seconds, and must be at least {MIN_CLAIM_TTL} seconds long.",
            limits.max_claim_ttl
        )))
    }
}

/// Checks a claim grace.
pub fn claim_grace(grace: i64, limits: &TransportConfig) -> ApiResult<()> {
    if (MIN_CLAIM_GRACE..=limits.max_claim_grace).contains(&grace) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "The grace for a claim may not exceed {} seconds, and must be at least {MIN_CLAIM_GRACE} seconds long.",
            limits.max_claim_grace
        )))
    }
}

/// Renders a list the way Python prints a list of strings: `['a', 'b']`.
pub fn python_list(items: &[String]) -> String {
    let inner: Vec<String> = items
        .iter()
        .map(|s| match s.char_indices().nth(QUOTED_ITEM_CHARS) {
            // No id is this long: an error text quotes its start only, so
            // an answer never grows with what a client sent.
            Some((cut, _)) => format!("'{}...'", &s[..cut]),
            None => format!("'{s}'"),
        })
        .collect();
    format!("[{}]", inner.join(", "))
}

/// The most characters of one item [`python_list`] quotes.
pub const QUOTED_ITEM_CHARS: usize = 64;

/// A borrowed or owned static text.
pub type Text = Cow<'static, str>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_lists_stay_short() {
        assert_eq!(python_list(&["a".into(), "b".into()]), "['a', 'b']");
        let long = "\u{0}".repeat(70_000);
        let shown = python_list(&[long]);
        assert_eq!(shown.chars().count(), QUOTED_ITEM_CHARS + 7);
        assert!(shown.ends_with("...']"));
    }

    #[test]
    fn uuid_forms_python_accepts() {
        assert!(parses_as_uuid("3381af92-2b9e-11e3-b191-71861300734c"));
        assert!(parses_as_uuid("3381af922b9e11e3b19171861300734c"));
        assert!(parses_as_uuid("{3381af92-2b9e-11e3-b191-71861300734c}"));
        assert!(parses_as_uuid(
            "urn:uuid:3381af92-2b9e-11e3-b191-71861300734c"
        ));
        assert!(!parses_as_uuid("not-a-uuid"));
        assert!(!parses_as_uuid("3381af92-2b9e-11e3-b191-71861300734"));
        assert!(!parses_as_uuid("3381af92-2b9e-11e3-b191-71861300734g"));
        assert!(!parses_as_uuid("3381af92-2b9e-11e3-b191-71861300734cd"));
        assert!(!parses_as_uuid("3381af92-2b9e-11e3-b191-7186130073é"));
        assert!(parses_as_uuid("uuid:{3381af92-2b9e11e3b191-71861300734c}"));
        assert!(!parses_as_uuid("urn:uuid:urn:"));
    }

    #[test]
    fn queue_names() {
        assert!(queue_identification_problem("fizbit_1-2.3", "p").is_none());
        assert!(queue_identification_problem("", "p").is_some());
        assert!(queue_identification_problem("a b", "p").is_some());
        assert!(queue_identification_problem(&"a".repeat(64), "p").is_none());
        assert!(queue_identification_problem(&"a".repeat(65), "p").is_some());
        assert!(queue_identification_problem("q", &"p".repeat(257)).is_some());
        assert!(queue_identification_problem("é", "p").is_some());
    }
}
