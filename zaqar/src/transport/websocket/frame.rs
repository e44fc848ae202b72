//! Frames of the WebSocket API: decoding requests, encoding responses.
//!
//! A text frame carries JSON and a binary frame carries MessagePack; either
//! holds one object `{"action", "headers", "body"}`. Every answer is written
//! in the encoding of the frame it answers:
//! `{"request": {"action", "body", "headers", "api": "v2"}, "body": ...,
//! "headers": {"status": N}}`.

use serde_json::{Map, Value};

use crate::api::body::check_integers;

/// How a frame's bytes encode its document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// A text frame holding JSON.
    Json,
    /// A binary frame holding MessagePack.
    MessagePack,
}

impl Encoding {
    /// The reference's name of the encoding in decode errors.
    fn label(self) -> &'static str {
        match self {
            Encoding::Json => "text (JSON)",
            Encoding::MessagePack => "binary (MessagePack)",
        }
    }
}

/// A frame that could not be turned into a request: always a 400 whose body
/// is `{"error": <text>}` with the reference's texts.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FrameError {
    /// The bytes are not JSON / MessagePack.
    #[error("Can't decode {} request. {kind}: {detail}", .encoding.label())]
    Undecodable {
        /// The frame's encoding.
        encoding: Encoding,
        /// A short name of the failure (the reference prints an exception type).
        kind: &'static str,
        /// What the decoder said.
        detail: String,
    },
    /// The document is not an object.
    #[error("Unexpected body type. Expected dict or dict like.")]
    NotAnObject,
    /// `action` names no action of the API.
    #[error("{0} is not a valid action")]
    UnknownAction(String),
    /// The frame does not match the action's schema.
    #[error("Schema validation failed.")]
    SchemaInvalid(String),
}

/// Deepest nesting of arrays and maps a frame may have: what a JSON frame
/// may have (serde_json's recursion limit), for MessagePack frames too.
pub const MAX_FRAME_NESTING: usize = 128;

/// Decodes a frame's bytes into its JSON document.
///
/// # Errors
/// [`FrameError::Undecodable`] when the bytes are not a document of the
/// encoding.
pub fn decode(bytes: &[u8], encoding: Encoding) -> Result<Value, FrameError> {
    match encoding {
        Encoding::Json => {
            let text = std::str::from_utf8(bytes).map_err(|e| FrameError::Undecodable {
                encoding,
                kind: "UnicodeDecodeError",
                detail: e.to_string(),
            })?;
            serde_json::from_str(text).map_err(|e| FrameError::Undecodable {
                encoding,
                kind: "JSONDecodeError",
                detail: e.to_string(),
            })
        }
        Encoding::MessagePack => {
            // rmp-serde's own limit (1024 levels) is past what a worker
            // thread's stack holds in a debug build: nest no deeper than
            // a JSON frame may.
            let mut cursor = std::io::Cursor::new(bytes);
            let mut de = rmp_serde::Deserializer::new(&mut cursor);
            de.set_max_depth(MAX_FRAME_NESTING);
            let value: Value = serde::Deserialize::deserialize(&mut de).map_err(
                |e: rmp_serde::decode::Error| FrameError::Undecodable {
                    encoding,
                    kind: "UnpackException",
                    detail: e.to_string(),
                },
            )?;
            // One document per frame: bytes after it make the frame
            // undecodable, as for the reference's unpackb.
            if cursor.position() != bytes.len() as u64 {
                return Err(FrameError::Undecodable {
                    encoding,
                    kind: "ExtraData",
                    detail: "unpack(b) received extra data.".into(),
                });
            }
            Ok(value)
        }
    }
}

/// Whether a JSON text frame holds an integer the api core would refuse
/// (checked on the text, before parsing turns it into a float).
pub fn has_oversized_integer(bytes: &[u8], encoding: Encoding) -> bool {
    encoding == Encoding::Json && check_integers(bytes).is_err()
}

/// Encodes a document for a frame of `encoding`.
///
/// # Errors
/// MessagePack encoding failed (it cannot for documents built from JSON).
pub fn encode(value: &Value, encoding: Encoding) -> Result<Vec<u8>, String> {
    match encoding {
        Encoding::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
        Encoding::MessagePack => rmp_serde::to_vec_named(value).map_err(|e| e.to_string()),
    }
}

/// The request part echoed in every response.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Echo {
    /// The frame's `action` (null when it could not be read).
    pub action: Value,
    /// The frame's `body` (`{}` when absent).
    pub body: Value,
    /// The frame's `headers` (`{}` when absent).
    pub headers: Value,
}

impl Echo {
    /// The echo of an undecodable or non-object frame.
    pub fn empty() -> Self {
        Echo {
            action: Value::Null,
            body: Value::Object(Map::new()),
            headers: Value::Object(Map::new()),
        }
    }

    /// The echo of a decoded object frame.
    pub fn of(doc: &Map<String, Value>) -> Self {
        let headers = match doc.get("headers") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(h) => h.clone(),
        };
        Echo {
            action: doc.get("action").cloned().unwrap_or(Value::Null),
            body: doc
                .get("body")
                .cloned()
                .unwrap_or_else(|| Value::Object(Map::new())),
            headers,
        }
    }

    /// The echo of a frame the server sends on its own (a late reply).
    pub fn action(action: &str) -> Self {
        Echo {
            action: Value::String(action.to_owned()),
            ..Echo::empty()
        }
    }
}

/// Builds the response document for `echo` with `status` and `body`; its
/// headers are the status alone, as the reference's (the request id is in
/// the server's log lines for the frame).
pub fn response(echo: Echo, status: u16, body: Value) -> Value {
    let mut request = Map::new();
    request.insert("action".into(), echo.action);
    request.insert("body".into(), echo.body);
    request.insert("headers".into(), echo.headers);
    request.insert("api".into(), Value::String("v2".into()));
    let mut headers = Map::new();
    headers.insert("status".into(), Value::from(status));
    let mut doc = Map::new();
    doc.insert("request".into(), Value::Object(request));
    doc.insert("body".into(), body);
    doc.insert("headers".into(), Value::Object(headers));
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_messagepack_round_trip() {
        let doc = json!({"action": "queue_list", "headers": {"Client-ID": "x"}, "body": {"limit": 5, "z": 1.5, "a": [true, null]}});
        for enc in [Encoding::Json, Encoding::MessagePack] {
            let bytes = encode(&doc, enc).unwrap();
            assert_eq!(decode(&bytes, enc).unwrap(), doc);
        }
        // Key order survives (message bodies keep the order they were sent in).
        let text = encode(&json!({"b": 1, "a": 2}), Encoding::Json).unwrap();
        assert_eq!(text, br#"{"b":1,"a":2}"#);
    }

    #[test]
    fn undecodable_frames_name_their_encoding() {
        let e = decode(b"{nope", Encoding::Json).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Can't decode text (JSON) request. JSONDecodeError: "),
            "{e}"
        );
        let e = decode(&[0xc1], Encoding::MessagePack).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Can't decode binary (MessagePack) request. "),
            "{e}"
        );
        // "123": the integer 49, then bytes no document owns.
        let e = decode(b"123", Encoding::MessagePack).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Can't decode binary (MessagePack) request. ExtraData: unpack(b) received extra data."
        );
        let e = decode(&[0xff, 0xfe], Encoding::Json).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Can't decode text (JSON) request. UnicodeDecodeError: "),
            "{e}"
        );
    }

    /// Defect (found by the fuzz harness): a MessagePack frame could nest
    /// 1024 levels (rmp-serde's default), and decoding ~1000 levels
    /// overflowed a debug build's worker stack and aborted the server; a
    /// JSON frame stops at 128.
    #[test]
    fn messagepack_frames_nest_no_deeper_than_json_ones() {
        for depth in [
            100,
            MAX_FRAME_NESTING - 1,
            MAX_FRAME_NESTING,
            MAX_FRAME_NESTING + 1,
            1000,
        ] {
            let json = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let mut msgpack = vec![0x91u8; depth - 1];
            msgpack.push(0x90);
            assert_eq!(
                decode(json.as_bytes(), Encoding::Json).is_ok(),
                decode(&msgpack, Encoding::MessagePack).is_ok(),
                "depth {depth}"
            );
        }
        assert!(decode(&[0x91; 100_000], Encoding::MessagePack).is_err());
    }

    #[test]
    fn framing_error_texts_are_the_references() {
        assert_eq!(
            FrameError::NotAnObject.to_string(),
            "Unexpected body type. Expected dict or dict like."
        );
        assert_eq!(
            FrameError::UnknownAction("nope".into()).to_string(),
            "nope is not a valid action"
        );
        assert_eq!(
            FrameError::SchemaInvalid("x".into()).to_string(),
            "Schema validation failed."
        );
    }

    #[test]
    fn oversized_integers_are_caught_before_parsing() {
        assert!(has_oversized_integer(
            br#"{"a": 123456789012345678901234567890}"#,
            Encoding::Json
        ));
        assert!(!has_oversized_integer(br#"{"a": 12}"#, Encoding::Json));
    }

    #[test]
    fn responses_echo_the_request() {
        let doc = json!({"action": "queue_get", "headers": {"Client-ID": "c"}, "body": {"queue_name": "q"}});
        let echo = Echo::of(doc.as_object().unwrap());
        let r = response(echo, 200, json!({"a": 1}));
        assert_eq!(
            r,
            json!({
                "request": {"action": "queue_get", "body": {"queue_name": "q"}, "headers": {"Client-ID": "c"}, "api": "v2"},
                "body": {"a": 1},
                "headers": {"status": 200},
            })
        );
        let r = response(Echo::empty(), 400, json!({"error": "e"}));
        assert_eq!(
            r["request"],
            json!({"action": null, "body": {}, "headers": {}, "api": "v2"})
        );
    }
}
