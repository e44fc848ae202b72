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

/// Refuses integers outside the signed 64-bit range anywhere in `bytes`
/// (strings skipped), as the reference does before it stores anything.
pub fn check_integers(bytes: &[u8]) -> ApiResult<()> {
    let mut i = 0;
    let n = bytes.len();
    while i < n {
        match bytes[i] {
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

/// An integer field the way the reference reads it: Python booleans are
/// integers, floats and everything else are not.
pub fn as_int(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::Bool(b) => Some(*b as i64),
        _ => None,
    }
}

/// Reads an optional integer field of an object, with a default.
pub fn int_field(doc: &serde_json::Map<String, Value>, name: &str, default: i64) -> ApiResult<i64> {
    match doc.get(name) {
        None => Ok(default),
        Some(v) => as_int(v).ok_or_else(|| {
            ApiError::invalid_body(format!("The value of the \"{name}\" field must be a int."))
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
        assert!(check_integers(br#"{"a": "123456789012345678901234567890"}"#).is_ok());
        assert!(check_integers(br#"{"a": 1.5e300, "b\"": 2}"#).is_ok());
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
