//! `enable_checksum`: the MD5 of each body, computed over the same text the
//! reference hashes (Python's `json.dumps` with its default separators and
//! ASCII escaping), so checksums agree between the two implementations.

use md5::{Digest, Md5};
use serde_json::Value;

/// `MD5:<hex>` of the body.
pub fn checksum(body: &Value) -> String {
    let mut text = String::new();
    python_dumps(body, &mut text);
    let digest = Md5::digest(text.as_bytes());
    let mut out = String::with_capacity(4 + 32);
    out.push_str("MD5:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Writes `v` as Python's `json.dumps(v)` would.
pub fn python_dumps(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                out.push_str(&python_float(f));
            } else {
                out.push_str(&n.to_string());
            }
        }
        Value::String(s) => python_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_dumps(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_string(k, out);
                out.push_str(": ");
                python_dumps(item, out);
            }
            out.push('}');
        }
    }
}

fn python_float(f: f64) -> String {
    // Python's repr: shortest round-trip digits, exponent form outside
    // 1e-4..1e16, always a fractional part otherwise.
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let s = format!("{f:?}");
        if s.contains('.') || s.contains('e') {
            s
        } else {
            format!("{s}.0")
        }
    }
}

fn python_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python_json_dumps() {
        let mut s = String::new();
        python_dumps(
            &json!({"b": [1, 2.5, "é\n"], "a": null, "c": {"d": true}}),
            &mut s,
        );
        assert_eq!(
            s,
            r#"{"b": [1, 2.5, "\u00e9\n"], "a": null, "c": {"d": true}}"#
        );
        let mut s = String::new();
        python_dumps(&json!([1e20, 1.0, 0.0001, "😀"]), &mut s);
        assert_eq!(s, r#"[1e+20, 1.0, 0.0001, "\ud83d\ude00"]"#);
    }

    #[test]
    fn checksum_of_a_string_body() {
        // md5 of the 7 bytes `"hello"` including quotes.
        assert_eq!(
            checksum(&json!("hello")),
            "MD5:5deaee1c1332199e5b5bc7c5e4f7f0c2"
        );
    }
}
