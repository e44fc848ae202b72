//! What the fuzzer sends: one [`Case`] is one self-contained scenario (an
//! optional setup, then hostile requests), serialisable as a corpus file.
//!
//! Cases name the per-case resources with placeholders that are filled in
//! when the case runs, so a corpus file replays against any fresh server:
//!
//! | placeholder     | replaced by                                           |
//! |-----------------|-------------------------------------------------------|
//! | `$PROJECT`      | a project id of its own for every run of the case     |
//! | `$CLIENT`       | a valid `Client-ID`                                   |
//! | `$QUEUE`        | `fuzz` (the queue the setup fills)                    |
//! | `$MESSAGE`      | an unclaimed message of `$QUEUE` (setup)              |
//! | `$CLAIMED`      | a claimed message of `$QUEUE` (setup)                 |
//! | `$CLAIM`        | the claim holding `$CLAIMED` (setup)                  |
//! | `$SUBSCRIPTION` | a webhook subscription of `$QUEUE` (setup)            |
//! | `$TOPIC_MESSAGE` | a message of the topic `$QUEUE` (setup)              |
//! | `$TOPIC_SUBSCRIPTION` | a webhook subscription of the topic `$QUEUE` (setup) |
//! | `$SIGNATURE`    | a valid signature of a grant on `$QUEUE`'s messages,  |
//! |                 | claims and subscriptions (setup)                      |
//! | `$EXPIRES`, `$METHODS`, `$PATHS` | that grant's expiry, methods and     |
//! |                 | paths (comma-separated)                               |
//!
//! Without `setup`, the resource placeholders are replaced by ids that name
//! nothing.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One fuzz case, as stored in the corpus (`{"http": ...}`, `{"http_raw":
/// ...}` or `{"ws": ...}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Case {
    /// A structured HTTP request.
    Http(HttpCase),
    /// A request sent as these exact bytes (placeholders filled in).
    HttpRaw(RawCase),
    /// Structured requests sent one after the other (each on a
    /// connection of its own) in one project: a state one request leaves
    /// is what the next one meets.
    HttpSeq(SeqCase),
    /// A WebSocket connection sending frames in order.
    Ws(WsCase),
}

impl Case {
    /// Whether the case needs the setup (queue, messages, claim, subscription).
    pub fn setup(&self) -> bool {
        match self {
            Case::Http(c) => c.setup,
            Case::HttpRaw(c) => c.setup,
            Case::HttpSeq(c) => c.setup,
            Case::Ws(c) => c.setup,
        }
    }
}

/// A structured HTTP request: serialised as HTTP/1.1 with `Host`,
/// `Connection: close` and the body framed as `framing` says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpCase {
    /// Run the setup first.
    #[serde(default)]
    pub setup: bool,
    /// The method token.
    pub method: Bytes,
    /// The request target: path and query.
    pub target: Bytes,
    /// Header lines, in order (duplicates allowed).
    #[serde(default)]
    pub headers: Vec<(Bytes, Bytes)>,
    /// The body, if any.
    #[serde(default)]
    pub body: Option<Bytes>,
    /// How the body is framed.
    #[serde(default)]
    pub framing: Framing,
}

/// How a structured request frames its body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// `Content-Length` of the body (none without a body).
    #[default]
    Length,
    /// `Transfer-Encoding: chunked`, the body in chunks of this size.
    Chunked(usize),
    /// Chunked, then this text instead of a proper end (a malformed stream).
    BadChunked(Bytes),
    /// No framing header at all (the body bytes still follow).
    None,
}

/// Requests sent in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeqCase {
    /// Run the setup first (the requests' own `setup` is not read).
    #[serde(default)]
    pub setup: bool,
    /// The requests.
    pub requests: Vec<HttpCase>,
}

/// A request sent as raw bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RawCase {
    /// Run the setup first.
    #[serde(default)]
    pub setup: bool,
    /// Whether the request is a HEAD (its answer has no body).
    #[serde(default)]
    pub head: bool,
    /// The bytes.
    pub bytes: Bytes,
}

/// A WebSocket connection sending `frames`, each answered before the next
/// is sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WsCase {
    /// Run the setup (over HTTP) first.
    #[serde(default)]
    pub setup: bool,
    /// The frames.
    pub frames: Vec<WsFrame>,
}

/// One frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WsFrame {
    /// A document sent as a JSON text frame.
    Json(Node),
    /// A document sent as a MessagePack binary frame.
    Msgpack(Node),
    /// These characters as a text frame.
    Text(String),
    /// These bytes as a binary frame.
    Binary(Bytes),
}

/// A document of a frame: JSON's values plus what MessagePack (or a JSON
/// text) can carry beyond them.
///
/// In a corpus file a node is plain JSON where it can be; the rest is a
/// one-key object: `{"$u64": n}`, `{"$f32": x}`, `{"$raw": "json text"}`,
/// `{"$badstr": hex}`, `{"$bin": hex}`, `{"$ext": [type, hex]}`,
/// `{"$deep": [depth, objects]}`, `{"$repeat": [text, count]}`, and
/// `{"$map": [[key, value], ...]}` for a map whose keys are not all
/// distinct strings (or start with `$`).
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// null / nil.
    Nil,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer (past `i64::MAX` it is a MessagePack u64).
    U64(u64),
    /// A double.
    F64(f64),
    /// A MessagePack float32 (a double in JSON).
    F32(f32),
    /// A string.
    Str(String),
    /// A number written as this JSON text (`1e400`, 2^64, `-0`...); in
    /// MessagePack the nearest integer or double, else a string.
    Raw(String),
    /// A MessagePack str whose bytes are not UTF-8 (JSON: the lossy text).
    BadStr(Bytes),
    /// A MessagePack bin (JSON: an array of byte values).
    Bin(Bytes),
    /// A MessagePack ext (JSON: null).
    Ext(i8, Bytes),
    /// An array.
    Array(Vec<Node>),
    /// A map (keys of any type in MessagePack; stringified in JSON).
    Map(Vec<(Node, Node)>),
    /// `depth` nested arrays (or one-key objects when `objects`) around 1,
    /// written without recursion (deeper than any stack should go).
    Deep(usize, bool),
    /// A string: `text` repeated `count` times (keeps long strings short
    /// in corpus files).
    Repeat(String, usize),
}

impl Node {
    /// A map with string keys.
    pub fn map<I: IntoIterator<Item = (String, Node)>>(entries: I) -> Node {
        Node::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Node::Str(k), v))
                .collect(),
        )
    }

    /// The node with `fill` applied to every string (placeholders).
    pub fn filled(&self, fill: &dyn Fn(&str) -> String) -> Node {
        match self {
            Node::Str(s) => Node::Str(fill(s)),
            Node::Array(items) => Node::Array(items.iter().map(|n| n.filled(fill)).collect()),
            Node::Map(entries) => Node::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.filled(fill), v.filled(fill)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// The node as JSON text.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Node::Nil | Node::Ext(..) => out.push_str("null"),
            Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Node::Int(i) => out.push_str(&i.to_string()),
            Node::U64(u) => out.push_str(&u.to_string()),
            Node::F64(f) => out.push_str(&json_float(*f)),
            Node::F32(f) => out.push_str(&json_float(f64::from(*f))),
            Node::Raw(text) => out.push_str(text),
            Node::Str(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
            Node::BadStr(b) => out.push_str(
                &serde_json::to_string(&String::from_utf8_lossy(&b.0)).unwrap_or_default(),
            ),
            Node::Bin(b) => {
                out.push('[');
                for (i, byte) in b.0.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&byte.to_string());
                }
                out.push(']');
            }
            Node::Repeat(text, count) => {
                out.push_str(&serde_json::to_string(&text.repeat(*count)).unwrap_or_default())
            }
            Node::Deep(depth, objects) => {
                let (open, close) = if *objects {
                    ("{\"a\":", "}")
                } else {
                    ("[", "]")
                };
                out.push_str(&open.repeat(*depth));
                out.push('1');
                out.push_str(&close.repeat(*depth));
            }
            Node::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Node::Map(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    match k {
                        Node::Str(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
                        other => out
                            .push_str(&serde_json::to_string(&other.to_json()).unwrap_or_default()),
                    }
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }

    /// The node as MessagePack.
    pub fn to_msgpack(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_msgpack(&mut out);
        out
    }

    fn write_msgpack(&self, out: &mut Vec<u8>) {
        use rmp::encode as e;
        // Writing to a Vec cannot fail.
        match self {
            Node::Nil => e::write_nil(out).unwrap(),
            Node::Bool(b) => e::write_bool(out, *b).unwrap(),
            Node::Int(i) => {
                e::write_sint(out, *i).unwrap();
            }
            Node::U64(u) => e::write_u64(out, *u).unwrap(),
            Node::F64(f) => e::write_f64(out, *f).unwrap(),
            Node::F32(f) => e::write_f32(out, *f).unwrap(),
            Node::Raw(text) => {
                if let Ok(i) = text.parse::<i64>() {
                    e::write_sint(out, i).unwrap();
                } else if let Ok(u) = text.parse::<u64>() {
                    e::write_u64(out, u).unwrap();
                } else if let Ok(f) = text.parse::<f64>() {
                    e::write_f64(out, f).unwrap();
                } else {
                    e::write_str(out, text).unwrap();
                }
            }
            Node::Str(s) => e::write_str(out, s).unwrap(),
            Node::BadStr(b) => {
                e::write_str_len(out, b.0.len() as u32).unwrap();
                out.extend_from_slice(&b.0);
            }
            Node::Bin(b) => e::write_bin(out, &b.0).unwrap(),
            Node::Ext(ty, data) => {
                e::write_ext_meta(out, data.0.len() as u32, *ty).unwrap();
                out.extend_from_slice(&data.0);
            }
            Node::Repeat(text, count) => e::write_str(out, &text.repeat(*count)).unwrap(),
            Node::Deep(depth, objects) => {
                for _ in 0..*depth {
                    if *objects {
                        out.extend_from_slice(&[0x81, 0xa1, b'a']);
                    } else {
                        out.push(0x91);
                    }
                }
                out.push(0x01);
            }
            Node::Array(items) => {
                e::write_array_len(out, items.len() as u32).unwrap();
                for item in items {
                    item.write_msgpack(out);
                }
            }
            Node::Map(entries) => {
                e::write_map_len(out, entries.len() as u32).unwrap();
                for (k, v) in entries {
                    k.write_msgpack(out);
                    v.write_msgpack(out);
                }
            }
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("odd hex length".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

impl Node {
    /// The node in its corpus form.
    pub fn to_value(&self) -> serde_json::Value {
        use serde_json::{json, Value};
        match self {
            Node::Nil => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => json!(i),
            Node::U64(u) => json!({ "$u64": u }),
            Node::F64(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => Value::Number(n),
                None => json!({ "$raw": json_float(*f) }),
            },
            Node::F32(f) => json!({ "$f32": f }),
            Node::Str(s) => Value::String(s.clone()),
            Node::Raw(t) => json!({ "$raw": t }),
            Node::BadStr(b) => json!({ "$badstr": hex(&b.0) }),
            Node::Bin(b) => json!({ "$bin": hex(&b.0) }),
            Node::Ext(t, b) => json!({ "$ext": [t, hex(&b.0)] }),
            Node::Deep(depth, objects) => json!({ "$deep": [depth, objects] }),
            Node::Repeat(text, count) => json!({ "$repeat": [text, count] }),
            Node::Array(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Node::Map(entries) => {
                let mut object = serde_json::Map::new();
                let plain = entries.iter().all(|(k, _)| match k {
                    Node::Str(s) => {
                        !s.starts_with('$') && !object.contains_key(s) && {
                            object.insert(s.clone(), Value::Null);
                            true
                        }
                    }
                    _ => false,
                });
                if plain {
                    Value::Object(
                        entries
                            .iter()
                            .map(|(k, v)| match k {
                                Node::Str(s) => (s.clone(), v.to_value()),
                                _ => unreachable!(),
                            })
                            .collect(),
                    )
                } else {
                    json!({ "$map": entries.iter().map(|(k, v)| json!([k.to_value(), v.to_value()])).collect::<Vec<_>>() })
                }
            }
        }
    }

    /// The node of a corpus form.
    pub fn from_value(v: &serde_json::Value) -> Result<Node, String> {
        use serde_json::Value;
        Ok(match v {
            Value::Null => Node::Nil,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Node::Int(i),
                None => Node::F64(n.as_f64().ok_or("a number out of range")?),
            },
            Value::String(s) => Node::Str(s.clone()),
            Value::Array(items) => Node::Array(
                items
                    .iter()
                    .map(Node::from_value)
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(o) => {
                let tagged = if o.len() == 1 { o.iter().next() } else { None };
                match tagged {
                    Some((k, v)) if k == "$u64" => Node::U64(v.as_u64().ok_or("$u64")?),
                    Some((k, v)) if k == "$f32" => Node::F32(v.as_f64().ok_or("$f32")? as f32),
                    Some((k, v)) if k == "$raw" => Node::Raw(v.as_str().ok_or("$raw")?.to_owned()),
                    Some((k, v)) if k == "$badstr" => {
                        Node::BadStr(Bytes(unhex(v.as_str().ok_or("$badstr")?)?))
                    }
                    Some((k, v)) if k == "$bin" => {
                        Node::Bin(Bytes(unhex(v.as_str().ok_or("$bin")?)?))
                    }
                    Some((k, v)) if k == "$ext" => {
                        let t = v[0].as_i64().ok_or("$ext type")? as i8;
                        Node::Ext(t, Bytes(unhex(v[1].as_str().ok_or("$ext data")?)?))
                    }
                    Some((k, v)) if k == "$deep" => Node::Deep(
                        v[0].as_u64().ok_or("$deep depth")? as usize,
                        v[1].as_bool().ok_or("$deep objects")?,
                    ),
                    Some((k, v)) if k == "$repeat" => Node::Repeat(
                        v[0].as_str().ok_or("$repeat text")?.to_owned(),
                        v[1].as_u64().ok_or("$repeat count")? as usize,
                    ),
                    Some((k, v)) if k == "$map" => Node::Map(
                        v.as_array()
                            .ok_or("$map")?
                            .iter()
                            .map(|pair| {
                                Ok((Node::from_value(&pair[0])?, Node::from_value(&pair[1])?))
                            })
                            .collect::<Result<_, String>>()?,
                    ),
                    _ => Node::Map(
                        o.iter()
                            .map(|(k, v)| Ok((Node::Str(k.clone()), Node::from_value(v)?)))
                            .collect::<Result<_, String>>()?,
                    ),
                }
            }
        })
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Node::from_value(&v).map_err(serde::de::Error::custom)
    }
}

/// A finite double as JSON (non-finite ones as the overflowing literal).
fn json_float(f: f64) -> String {
    if f.is_finite() {
        format!("{f:?}")
    } else if f.is_nan() {
        "NaN".into()
    } else if f > 0.0 {
        "1e999".into()
    } else {
        "-1e999".into()
    }
}

/// Bytes stored in a corpus file as text when they are UTF-8, else as
/// `{"hex": "..."}`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl From<&str> for Bytes {
    fn from(s: &str) -> Self {
        Bytes(s.as_bytes().to_vec())
    }
}

impl From<String> for Bytes {
    fn from(s: String) -> Self {
        Bytes(s.into_bytes())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(b: Vec<u8>) -> Self {
        Bytes(b)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum BytesRepr {
    Text(String),
    Hex { hex: String },
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => BytesRepr::Text(text.to_owned()),
            Err(_) => BytesRepr::Hex { hex: hex(&self.0) },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match BytesRepr::deserialize(d)? {
            BytesRepr::Text(t) => Ok(Bytes(t.into_bytes())),
            BytesRepr::Hex { hex } => unhex(&hex).map(Bytes).map_err(serde::de::Error::custom),
        }
    }
}

/// The values a case's placeholders stand for in one run.
#[derive(Clone, Debug)]
pub struct Fill {
    /// `$PROJECT`.
    pub project: String,
    /// `$CLIENT`.
    pub client: String,
    /// `$MESSAGE`.
    pub message: String,
    /// `$CLAIMED`.
    pub claimed: String,
    /// `$CLAIM`.
    pub claim: String,
    /// `$SUBSCRIPTION`.
    pub subscription: String,
    /// `$TOPIC_MESSAGE`.
    pub topic_message: String,
    /// `$TOPIC_SUBSCRIPTION`.
    pub topic_subscription: String,
    /// `$SIGNATURE`, `$EXPIRES`, `$METHODS`, `$PATHS`.
    pub grant: [String; 4],
}

/// The queue every case's setup fills.
pub const QUEUE: &str = "fuzz";

impl Fill {
    /// Placeholders for a case without setup: ids that name nothing.
    pub fn without_setup(project: String, client: String) -> Fill {
        Fill {
            project,
            client,
            message: "5f3c2a1b9d8e7f6a5b4c3d2e".into(),
            claimed: "5f3c2a1b9d8e7f6a5b4c3d2f".into(),
            claim: "5f3c2a1b9d8e7f6a5b4c3d30".into(),
            subscription: "5f3c2a1b9d8e7f6a5b4c3d31".into(),
            topic_message: "5f3c2a1b9d8e7f6a5b4c3d32".into(),
            topic_subscription: "5f3c2a1b9d8e7f6a5b4c3d33".into(),
            grant: [
                "0".repeat(64),
                "2099-01-01T00:00:00".into(),
                "GET".into(),
                format!("/v2/queues/{QUEUE}/messages"),
            ],
        }
    }

    /// `text` with every placeholder replaced.
    pub fn text(&self, text: &str) -> String {
        if !text.contains('$') {
            return text.to_owned();
        }
        text.replace("$PROJECT", &self.project)
            .replace("$CLIENT", &self.client)
            .replace("$QUEUE", QUEUE)
            .replace("$TOPIC_MESSAGE", &self.topic_message)
            .replace("$TOPIC_SUBSCRIPTION", &self.topic_subscription)
            .replace("$MESSAGE", &self.message)
            .replace("$CLAIMED", &self.claimed)
            .replace("$CLAIM", &self.claim)
            .replace("$SUBSCRIPTION", &self.subscription)
            .replace("$SIGNATURE", &self.grant[0])
            .replace("$EXPIRES", &self.grant[1])
            .replace("$METHODS", &self.grant[2])
            .replace("$PATHS", &self.grant[3])
    }

    /// `bytes` with every placeholder replaced (the bytes around them kept
    /// as they are, UTF-8 or not).
    pub fn bytes(&self, bytes: &[u8]) -> Vec<u8> {
        if !bytes.contains(&b'$') {
            return bytes.to_vec();
        }
        let pairs: [(&[u8], &str); 13] = [
            (b"$PROJECT", &self.project),
            (b"$CLIENT", &self.client),
            (b"$QUEUE", QUEUE),
            (b"$TOPIC_MESSAGE", &self.topic_message),
            (b"$TOPIC_SUBSCRIPTION", &self.topic_subscription),
            (b"$MESSAGE", &self.message),
            (b"$CLAIMED", &self.claimed),
            (b"$CLAIM", &self.claim),
            (b"$SUBSCRIPTION", &self.subscription),
            (b"$SIGNATURE", &self.grant[0]),
            (b"$EXPIRES", &self.grant[1]),
            (b"$METHODS", &self.grant[2]),
            (b"$PATHS", &self.grant[3]),
        ];
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        'outer: while i < bytes.len() {
            if bytes[i] == b'$' {
                for (name, value) in &pairs {
                    if bytes[i..].starts_with(name) {
                        out.extend_from_slice(value.as_bytes());
                        i += name.len();
                        continue 'outer;
                    }
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        out
    }
}

impl HttpCase {
    /// The request's bytes with placeholders filled in.
    pub fn to_bytes(&self, fill: &Fill) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&fill.bytes(&self.method.0));
        out.push(b' ');
        out.extend_from_slice(&fill.bytes(&self.target.0));
        out.extend_from_slice(b" HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(&name.0);
            out.extend_from_slice(b": ");
            out.extend_from_slice(&fill.bytes(&value.0));
            out.extend_from_slice(b"\r\n");
        }
        let body = self.body.as_ref().map(|b| fill.bytes(&b.0));
        match (&self.framing, &body) {
            (Framing::Length, None) | (Framing::None, _) => out.extend_from_slice(b"\r\n"),
            (Framing::Length, Some(body)) => {
                out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes())
            }
            (Framing::Chunked(_) | Framing::BadChunked(_), _) => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n")
            }
        }
        let body = body.unwrap_or_default();
        match &self.framing {
            Framing::Length | Framing::None => out.extend_from_slice(&body),
            Framing::Chunked(_) | Framing::BadChunked(_) => {
                let size = match &self.framing {
                    Framing::Chunked(size) => (*size).max(1),
                    _ => 7,
                };
                for chunk in body.chunks(size) {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                match &self.framing {
                    Framing::BadChunked(end) => out.extend_from_slice(&end.0),
                    _ => out.extend_from_slice(b"0\r\n\r\n"),
                }
            }
        }
        out
    }

    /// Whether the request is a HEAD (its answer has no body).
    pub fn is_head(&self) -> bool {
        self.method.0 == b"HEAD"
    }
}
