//! Message bodies encrypted at rest (queues with `_enable_encrypt_messages`).
//!
//! A body is sealed with AES-256-GCM and stored as a JSON string:
//!
//! ```text
//! "zqenc1:" base64( key_id[4] || nonce[12] || ciphertext || tag[16] )
//! ```
//!
//! - base64 is the standard alphabet with padding (RFC 4648 §4);
//! - the plaintext is the body's JSON text exactly as posted (UTF-8);
//! - the key is SHA-256 of a configured secret (`[transport]
//!   message_encryption_key`), and its id the first 4 bytes of
//!   SHA-256(`"zaqar-message-key-id:"` || key);
//! - the nonce is random (96 bits) for every body;
//! - the associated data is the ASCII prefix `zqenc1` followed by the key
//!   id, so the header cannot be altered without the tag failing.
//!
//! `message_encryption_key` may list several secrets, comma-separated: the
//! first seals new bodies, every one of them opens (key rotation: put the
//! new secret first and keep the old ones until their messages are gone).
//! Any other implementation with AES-256-GCM, SHA-256 and base64 reads the
//! format from this description alone (doc/source/api.rst repeats it).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::config::TransportConfig;

/// The prefix of a sealed body's string.
pub const PREFIX: &str = "zqenc1:";
/// The associated-data prefix (then the key id).
const AAD_PREFIX: &[u8] = b"zqenc1";
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a body could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// No key is configured (or the algorithm is not one we have).
    #[error("no usable message encryption key is configured ({0})")]
    NoKey(String),
    /// The body was sealed with a key this server does not have.
    #[error("the body was sealed with key id {0}, which is not configured")]
    UnknownKey(String),
    /// The sealed body is damaged, or the key does not open it.
    #[error("the sealed body does not open: {0}")]
    Corrupt(&'static str),
}

struct Key {
    id: [u8; KEY_ID_LEN],
    cipher: Aes256Gcm,
}

/// The configured keys: the first seals, all open.
pub struct Keyring {
    keys: Vec<Key>,
    problem: Option<String>,
}

impl Keyring {
    /// The keys of `[transport] message_encryption_algorithms` and
    /// `message_encryption_key`.
    pub fn from_config(t: &TransportConfig) -> Keyring {
        if !t
            .message_encryption_algorithms
            .eq_ignore_ascii_case("AES256")
        {
            return Keyring {
                keys: Vec::new(),
                problem: Some(format!(
                    "message_encryption_algorithms = {} is not supported (AES256 is)",
                    t.message_encryption_algorithms
                )),
            };
        }
        Keyring::from_secrets(&t.message_encryption_key)
    }

    /// The keys of comma-separated secrets.
    pub fn from_secrets(secrets: &str) -> Keyring {
        let keys: Vec<Key> = secrets
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|secret| {
                let key: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
                let mut h = Sha256::new();
                h.update(b"zaqar-message-key-id:");
                h.update(key);
                let digest = h.finalize();
                let mut id = [0u8; KEY_ID_LEN];
                id.copy_from_slice(&digest[..KEY_ID_LEN]);
                Key {
                    id,
                    cipher: Aes256Gcm::new(&key.into()),
                }
            })
            .collect();
        let problem = keys
            .is_empty()
            .then(|| "message_encryption_key is empty".to_owned());
        Keyring { keys, problem }
    }

    /// Seals `body` with the first key.
    ///
    /// # Errors
    /// [`CryptoError::NoKey`] without a usable key.
    pub fn seal(&self, body: &RawValue) -> Result<Box<RawValue>, CryptoError> {
        let key = self
            .keys
            .first()
            .ok_or_else(|| CryptoError::NoKey(self.problem.clone().unwrap_or_default()))?;
        let nonce_bytes: [u8; NONCE_LEN] = rand_nonce();
        let aad = aad(&key.id);
        let sealed = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce_bytes),
                Payload {
                    msg: body.get().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Corrupt("encryption failed"))?;
        let mut envelope = Vec::with_capacity(KEY_ID_LEN + NONCE_LEN + sealed.len());
        envelope.extend_from_slice(&key.id);
        envelope.extend_from_slice(&nonce_bytes);
        envelope.extend_from_slice(&sealed);
        let text = format!("{PREFIX}{}", STANDARD.encode(envelope));
        serde_json::value::to_raw_value(&text).map_err(|_| CryptoError::Corrupt("encoding failed"))
    }

    /// Opens `body` when it is sealed (`Ok(None)` when it is not).
    ///
    /// # Errors
    /// The key is missing or wrong, or the sealed body is damaged.
    pub fn open(&self, body: &RawValue) -> Result<Option<Box<RawValue>>, CryptoError> {
        let Some(encoded) = sealed_text(body) else {
            return Ok(None);
        };
        let envelope = STANDARD
            .decode(encoded)
            .map_err(|_| CryptoError::Corrupt("not base64"))?;
        if envelope.len() < KEY_ID_LEN + NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Corrupt("too short"));
        }
        let (id, rest) = envelope.split_at(KEY_ID_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let key = self.keys.iter().find(|k| k.id == id).ok_or_else(|| {
            if self.keys.is_empty() {
                CryptoError::NoKey(self.problem.clone().unwrap_or_default())
            } else {
                CryptoError::UnknownKey(id.iter().map(|b| format!("{b:02x}")).collect())
            }
        })?;
        let plain = key
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad(&key.id),
                },
            )
            .map_err(|_| CryptoError::Corrupt("authentication failed"))?;
        let text = String::from_utf8(plain).map_err(|_| CryptoError::Corrupt("not UTF-8"))?;
        RawValue::from_string(text)
            .map(Some)
            .map_err(|_| CryptoError::Corrupt("not JSON"))
    }
}

/// The base64 part of a sealed body, if `body` is one.
fn sealed_text(body: &RawValue) -> Option<String> {
    // Every body read passes here: a plain prefix test, no formatting.
    let text = body.get();
    if !text
        .strip_prefix('"')
        .is_some_and(|t| t.starts_with(PREFIX))
    {
        return None;
    }
    let s: String = serde_json::from_str(text).ok()?;
    s.strip_prefix(PREFIX).map(String::from)
}

fn aad(id: &[u8]) -> Vec<u8> {
    let mut aad = AAD_PREFIX.to_vec();
    aad.extend_from_slice(id);
    aad
}

fn rand_nonce() -> [u8; NONCE_LEN] {
    // Two v4 UUIDs come from the OS's randomness (getrandom).
    let a = uuid::Uuid::new_v4();
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(&a.as_bytes()[..NONCE_LEN]);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn sealed_bodies_open_with_any_configured_key() {
        let old = Keyring::from_secrets("old-secret");
        let body = raw(r#"{"a": [1, "é"]}"#);
        let sealed = old.seal(&body).unwrap();
        assert!(sealed.get().starts_with("\"zqenc1:"));
        assert!(!sealed.get().contains("é"));
        let rotated = Keyring::from_secrets("new-secret, old-secret");
        assert_eq!(rotated.open(&sealed).unwrap().unwrap().get(), body.get());
        // plain bodies pass through
        assert!(rotated.open(&raw(r#""hello""#)).unwrap().is_none());
        // a key this server lacks, none at all, and tampering
        let other = Keyring::from_secrets("new-secret");
        assert!(matches!(
            other.open(&sealed),
            Err(CryptoError::UnknownKey(_))
        ));
        assert!(matches!(
            Keyring::from_secrets("").open(&sealed),
            Err(CryptoError::NoKey(_))
        ));
        let text: String = serde_json::from_str(sealed.get()).unwrap();
        let mut bytes = STANDARD.decode(text.strip_prefix(PREFIX).unwrap()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered =
            serde_json::value::to_raw_value(&format!("{PREFIX}{}", STANDARD.encode(bytes)))
                .unwrap();
        assert!(matches!(old.open(&tampered), Err(CryptoError::Corrupt(_))));
        // two seals of one body differ (fresh nonces)
        assert_ne!(old.seal(&body).unwrap().get(), sealed.get());
    }

    #[test]
    fn the_documented_layout() {
        let ring = Keyring::from_secrets("k");
        let sealed = ring.seal(&raw("1")).unwrap();
        let text: String = serde_json::from_str(sealed.get()).unwrap();
        let bytes = STANDARD.decode(text.strip_prefix(PREFIX).unwrap()).unwrap();
        assert_eq!(bytes.len(), KEY_ID_LEN + NONCE_LEN + 1 + TAG_LEN);
        let key: [u8; 32] = Sha256::digest(b"k").into();
        let mut h = Sha256::new();
        h.update(b"zaqar-message-key-id:");
        h.update(key);
        assert_eq!(&bytes[..4], &h.finalize()[..4]);
    }
}
