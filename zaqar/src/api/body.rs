//! Request bodies: JSON parsing with the reference's errors.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Parses a JSON body that must be an object or an array.
///
/// `body` is `None` when the request had no body at all (no Content-Length
/// and nothing sent).
pub fn parse(body: Option<&[u8]>) -> ApiResult<Value> {
    let bytes = body.ok_or_else(|| ApiError::invalid_body("Request body can not be empty"))?;
    check_integers(bytes)?;
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => Ok(v),
        _ => Err(ApiError::invalid_body("Request body could not be parsed.")),
    }
}

/// Deepest nesting of arrays and objects a document may have: serde_json's
/// own recursion limit, so that everything stored can be read back
/// (the reference accepted deeper bodies, which then rendered as `null`
/// over WebSocket and in notifications).
pub const MAX_NESTING: usize = 127;

/// Refuses integers outside the signed 64-bit range anywhere in `bytes`
/// (strings skipped), as the reference does before it stores anything, and
/// documents nested deeper than [`MAX_NESTING`].
pub fn check_integers(bytes: &[u8]) -> ApiResult<()> {
    let mut i = 0;
    let n = bytes.len();
    let mut depth = 0usize;
    while i < n {
        match bytes[i] {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(ApiError::invalid_body(format!(
                        "JSON is nested too deeply: at most {MAX_NESTING} levels of arrays and objects."
                    )));
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'"' => {
                i += 1;
                while i < n && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < n && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                let is_integer = !(i < n && matches!(bytes[i], b'.' | b'e' | b'E'));
                if is_integer {
                    if let Ok(text) = std::str::from_utf8(&bytes[start..i]) {
                        if text != "-" && text.parse::<i64>().is_err() {
                            return Err(ApiError::invalid_body(
                                "JSON contains integer that is too large.",
                            ));
                        }
                    }
                } else {
                    while i < n
                        && matches!(bytes[i], b'.' | b'e' | b'E' | b'+' | b'-' | b'0'..=b'9')
                    {
                        i += 1;
                    }
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The error for a document of the wrong JSON type.
pub fn document_type_not_supported() -> ApiError {
    ApiError::invalid_body("Document type not supported.")
}

pub use crate::json::as_int;

/// Reads an optional integer field of an object, with a default.
pub fn int_field(doc: &serde_json::Map<String, Value>, name: &str, default: i64) -> ApiResult<i64> {
    match doc.get(name) {
        None => Ok(default),
        Some(v) => as_int(v).ok_or_else(|| {
            ApiError::InvalidField(
                format!("The value of the \"{name}\" field must be a int.").into(),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_beyond_64_bits_are_refused() {
        assert!(check_integers(br#"{"a": 9223372036854775807}"#).is_ok());
        assert!(check_integers(br#"{"a": -9223372036854775808}"#).is_ok());
        assert!(check_integers(br#"{"a": 9223372036854775808}"#).is_err());
        assert!(check_integers(br#"[1, 2, 123456789012345678901234567890]"#).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(check_integers(nested(MAX_NESTING).as_bytes()).is_ok());
        assert!(check_integers(nested(MAX_NESTING + 1).as_bytes()).is_err());
        // brackets inside strings do not count
        let text = format!(r#"{{"a": "{}"}}"#, "[".repeat(1000));
        assert!(check_integers(text.as_bytes()).is_ok());
        // what passes can be parsed back as a Value
        let doc = nested(MAX_NESTING);
        assert!(serde_json::from_str::<Value>(&doc).is_ok());
        assert!(check_integers(br#"{"a": "123456789012345678901234567890"}"#).is_ok());
        assert!(check_integers(br#"{"a": 1.5e300, "b\"": 2}"#).is_ok());
    }

    proptest::proptest! {
        /// Any bytes: an answer, never a panic (the scanner indexes by hand).
        #[test]
        fn check_integers_takes_any_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = check_integers(&bytes);
        }

        /// An integer is refused exactly when it does not fit in an i64,
        /// wherever it stands (array, value, after a string with escapes).
        #[test]
        fn integers_are_judged_as_i64(n in proptest::num::i128::ANY, shift in 0u32..80) {
            let n = n >> shift;
            let fits = i64::try_from(n).is_ok();
            for text in [format!("[{n}]"), format!(r#"{{"a\"[": {n}, "b": -1.5e3}}"#), format!(r#"["\\", {n}]"#)] {
                proptest::prop_assert_eq!(check_integers(text.as_bytes()).is_ok(), fits, "{}", text);
            }
        }

        /// Nesting is refused exactly past MAX_NESTING levels, arrays and
        /// objects mixed, brackets inside strings not counted.
        #[test]
        fn nesting_is_judged_by_levels(kinds in proptest::collection::vec(proptest::bool::ANY, 1..200)) {
            let mut text = String::new();
            for &object in &kinds {
                text.push_str(if object { r#"{"[{": "#} else { r#"["]}", "# });
            }
            text.push('1');
            for &object in kinds.iter().rev() {
                text.push(if object { '}' } else { ']' });
            }
            let ok = check_integers(text.as_bytes()).is_ok();
            proptest::prop_assert_eq!(ok, kinds.len() <= MAX_NESTING);
            proptest::prop_assert_eq!(ok, serde_json::from_str::<Value>(&text).is_ok());
        }
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            parse(None).unwrap_err().description().unwrap(),
            "Request body can not be empty"
        );
        assert_eq!(
            parse(Some(b"{nope")).unwrap_err().description().unwrap(),
            "Request body could not be parsed."
        );
        assert_eq!(
            parse(Some(b"42")).unwrap_err().description().unwrap(),
            "Request body could not be parsed."
        );
        assert!(parse(Some(b"[]")).is_ok());
    }
}
