//! Internals for the criterion benchmarks in `bench/` (feature `__bench`). Not API: no
//! stability promise, hidden from the docs.

use serde_json::Value;

use crate::cookie::CookieCodec;
use crate::unit_of_work::{Record, SessionData};
use crate::{Key, SessionId};

/// The cookie codec, as the middleware uses it.
pub struct Codec(CookieCodec);

impl Codec {
    /// A codec for cookie `id` signed with `key`.
    pub fn new(key: Key) -> Self {
        Self(CookieCodec::new("id".into(), key, Vec::new()))
    }

    /// A signed cookie value.
    pub fn sign(&self, id: &SessionId, issued: u64) -> String {
        self.0.encode(id, issued, None, None)
    }

    /// Whether a cookie value verifies.
    pub fn verify(&self, value: &str) -> bool {
        self.0.decode(value).is_ok()
    }
}

/// A stored session with `packages` packages of `keys` keys each, encoded.
pub fn sample(packages: usize, keys: usize) -> Vec<u8> {
    let mut record = Record::new(0);
    for p in 0..packages {
        for k in 0..keys {
            let value = Value::String(format!("value {p}/{k} {}", "x".repeat(40)));
            record.put(&format!("package{p}"), &format!("key{k}"), Some(value));
        }
    }
    record.encode().to_vec()
}

/// Decodes and re-encodes a stored session: the JSON work of a request that writes.
pub fn decode_encode(bytes: &[u8]) -> usize {
    Record::decode(bytes.to_vec()).map_or(0, |r| r.encode().len())
}

/// Decodes a stored session: the JSON work of a request that reads.
pub fn decode(bytes: &[u8]) -> bool {
    Record::decode(bytes.to_vec()).is_ok()
}

/// Loads `loaded`, changes `changes` keys of `package0`, then merges them onto `latest`:
/// the work of one lost compare-and-swap round.
pub fn merge(loaded: &[u8], latest: &[u8], changes: usize) -> bool {
    let (Ok(loaded), Ok(latest)) = (
        Record::decode(loaded.to_vec()),
        Record::decode(latest.to_vec()),
    ) else {
        return false;
    };
    let mut data = SessionData::with(loaded);
    for k in 0..changes {
        data.put("package0", &format!("key{k}"), Some(Value::from(k)));
    }
    data.rebase(latest).is_ok()
}
