//! The stored format: one JSON document per session, with a format version.
//!
//! `{"v":1,"created":1700000000,"packages":{"shop.cart":{"items":3}}}`. JSON keeps the data
//! readable by other languages and safe to decode (no pickled objects); `v` lets a later
//! release change the layout and still recognise what it finds.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

const FORMAT: u32 = 1;

/// Room reserved for an encoded session: most fit in it without growing the buffer, and it
/// stays under the 1 KiB from which glibc's malloc leaves its per-thread caches for a slower
/// path.
const ENCODE_CAPACITY: usize = 1000;

type Package = BTreeMap<String, Value>;

/// One session's data as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    v: u32,
    /// Unix seconds when the session was created; the absolute timeout counts from here.
    pub(crate) created: u64,
    packages: BTreeMap<String, Package>,
}

/// Why stored bytes are not a session.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("stored session is not valid JSON of the expected shape")]
    Json(#[from] serde_json::Error),
    #[error("stored session has format version {0}, this release reads {FORMAT}")]
    Version(u32),
}

impl Record {
    pub(crate) fn new(created: u64) -> Self {
        Self {
            v: FORMAT,
            created,
            packages: BTreeMap::new(),
        }
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let record: Self = serde_json::from_slice(bytes)?;
        if record.v != FORMAT {
            return Err(DecodeError::Version(record.v));
        }
        Ok(record)
    }

    /// Like [`decode`](Self::decode), keeping only the packages named in `wanted`: the
    /// others are checked to be JSON and skipped without building them (reading the
    /// sessions a user has listed needs only whom each belongs to and its timeouts).
    pub(crate) fn decode_only(bytes: &[u8], wanted: &[&str]) -> Result<Self, DecodeError> {
        type Raw<'a> = &'a serde_json::value::RawValue;
        // Every package an object, as `decode` requires; the values of those not wanted
        // are only checked to be JSON.
        #[derive(Deserialize)]
        struct Skimmed<'a> {
            v: u32,
            created: u64,
            #[serde(borrow)]
            packages: BTreeMap<Cow<'a, str>, BTreeMap<Cow<'a, str>, Raw<'a>>>,
        }
        let skimmed: Skimmed<'_> = serde_json::from_slice(bytes)?;
        if skimmed.v != FORMAT {
            return Err(DecodeError::Version(skimmed.v));
        }
        let mut packages = BTreeMap::new();
        for (name, entries) in skimmed.packages {
            if wanted.contains(&name.as_ref()) {
                let mut package = Package::new();
                for (key, raw) in entries {
                    package.insert(key.into_owned(), serde_json::from_str(raw.get())?);
                }
                packages.insert(name.into_owned(), package);
            }
        }
        Ok(Self {
            v: FORMAT,
            created: skimmed.created,
            packages,
        })
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        // serde_json's own start (128 bytes) grows twice for a typical session.
        let mut out = Vec::with_capacity(ENCODE_CAPACITY);
        serde_json::to_writer(&mut out, self).expect("string-keyed JSON values always serialize");
        out
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    pub(crate) fn get(&self, package: &str, key: &str) -> Option<&Value> {
        self.packages.get(package)?.get(key)
    }

    pub(crate) fn package(&self, name: &str) -> Option<&Package> {
        self.packages.get(name)
    }

    pub(crate) fn keys(&self, package: &str) -> Vec<String> {
        self.packages
            .get(package)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Sets (`Some`) or removes (`None`) one entry; an emptied package is dropped.
    pub(crate) fn put(&mut self, package: &str, key: &str, value: Option<Value>) {
        match value {
            // In place when the package or the key is there already: no copy of either
            // name to allocate and drop.
            Some(value) => match self.packages.get_mut(package) {
                Some(p) => match p.get_mut(key) {
                    Some(slot) => *slot = value,
                    None => {
                        p.insert(key.to_owned(), value);
                    }
                },
                None => {
                    let p = BTreeMap::from([(key.to_owned(), value)]);
                    self.packages.insert(package.to_owned(), p);
                }
            },
            None => {
                if let Some(p) = self.packages.get_mut(package) {
                    p.remove(key);
                    if p.is_empty() {
                        self.packages.remove(package);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_with_format_version_and_round_trips() {
        let mut r = Record::new(7);
        r.put("shop.cart", "items", Some(3.into()));
        let bytes = r.encode();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"v":1,"created":7,"packages":{"shop.cart":{"items":3}}}"#
        );
        assert_eq!(Record::decode(&bytes).unwrap(), r);
    }

    #[test]
    fn unknown_format_and_garbage_are_refused() {
        let future = br#"{"v":2,"created":7,"packages":{}}"#;
        assert!(matches!(
            Record::decode(future),
            Err(DecodeError::Version(2))
        ));
        assert!(matches!(
            Record::decode(b"\x80\x04pickle"),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn decode_only_keeps_the_packages_wanted_and_refuses_what_decode_refuses() {
        let mut r = Record::new(7);
        r.put("a", "k", Some(1.into()));
        r.put("b\"c", "k", Some(2.into()));
        r.put("skip", "k", Some(serde_json::json!({"deep": [1, 2]})));
        let bytes = r.encode();
        let only = Record::decode_only(&bytes, &["a", "b\"c"]).unwrap();
        assert_eq!(only.created, 7);
        assert_eq!(only.get("a", "k"), Some(&1.into()));
        assert_eq!(only.get("b\"c", "k"), Some(&2.into()), "an escaped name");
        assert!(only.package("skip").is_none());
        let future = br#"{"v":2,"created":7,"packages":{}}"#;
        assert!(matches!(
            Record::decode_only(future, &[]),
            Err(DecodeError::Version(2))
        ));
        for bad in [
            &b"\x80"[..],
            br#"{"v":1,"created":7,"packages":{"a":[}}"#,
            br#"{"v":1,"created":7,"packages":{"a":1}}"#,
            br#"{"v":1,"created":7,"packages":{"skipped":1}}"#,
        ] {
            assert!(Record::decode_only(bad, &["a"]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn removing_the_last_key_drops_the_package() {
        let mut r = Record::new(0);
        r.put("a", "k", Some(1.into()));
        r.put("a", "k", None);
        assert!(r.is_empty());
        r.put("a", "missing", None);
        assert!(r.is_empty());
    }
}
