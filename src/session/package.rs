//! `Package`: one namespace of a session, and the rules for what goes in (names, values
//! that can be read back).

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::SessionError;
use crate::unit_of_work::{Name, Slot, Transaction, RESERVED};

/// Longest package name or key, in bytes.
const MAX_NAME_BYTES: usize = 128;
/// Deepest nesting of arrays and objects in a value. serde_json reads back at most 128
/// levels and the stored record wraps each value in three, so a deeper value would be
/// written and then found unreadable: the whole session lost.
const MAX_VALUE_DEPTH: usize = 100;

/// One package of a [`Session`](crate::Session): typed access to its keys.
///
/// Values are stored as JSON, so any `Serialize` type goes in and any `Deserialize` type
/// comes out.
pub struct Package {
    tx: Rc<RefCell<Transaction>>,
    /// Kept inline up to 24 bytes: a handle costs no allocation.
    name: Name,
    /// Opened by this crate for its own package, which may carry the reserved prefix.
    own: bool,
}

impl Package {
    /// A handler's package: its name may not carry the reserved prefix.
    pub(crate) fn new(tx: Rc<RefCell<Transaction>>, name: Name) -> Self {
        Self {
            tx,
            name,
            own: false,
        }
    }

    /// One of this crate's own packages (named with the reserved prefix).
    pub(crate) fn own(tx: Rc<RefCell<Transaction>>, name: &str) -> Self {
        Self {
            tx,
            name: name.into(),
            own: true,
        }
    }

    /// The package's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value under `key`, or `None`.
    ///
    /// # Errors
    /// An invalid name or key, or a stored value that is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        self.check(key)?;
        let tx = self.tx.borrow();
        tx.data
            .slot(&self.name, key)
            .map(Slot::decode)
            .transpose()
            .map_err(|source| SessionError::Deserialize {
                key: key.to_owned(),
                source,
            })
    }

    /// Stores `value` under `key`.
    ///
    /// # Errors
    /// An invalid name or key, or a value that cannot be JSON (a float NaN or infinity
    /// among them: JSON would store it as `null`) or nests arrays and objects more than 100
    /// levels deep (it could not be read back).
    pub fn insert(&self, key: &str, value: impl Serialize) -> Result<(), SessionError> {
        self.check(key)?;
        let serialize = |source| SessionError::Serialize {
            key: key.to_owned(),
            source,
        };
        super::finite::check(&value).map_err(|e| serialize(serde::ser::Error::custom(e)))?;
        let value = serde_json::to_value(value).map_err(serialize)?;
        let value = readable(key, value)?;
        self.tx.borrow_mut().data.put(&self.name, key, Some(value));
        Ok(())
    }

    /// Removes `key`; `true` if it was there.
    ///
    /// # Errors
    /// An invalid name or key.
    pub fn remove(&self, key: &str) -> Result<bool, SessionError> {
        let present = self.contains_key(key)?;
        self.tx.borrow_mut().data.put(&self.name, key, None);
        Ok(present)
    }

    /// Whether `key` has a value.
    ///
    /// # Errors
    /// An invalid name or key.
    pub fn contains_key(&self, key: &str) -> Result<bool, SessionError> {
        self.check(key)?;
        Ok(self.tx.borrow().data.slot(&self.name, key).is_some())
    }

    /// The package's keys, sorted.
    ///
    /// # Errors
    /// An invalid package name.
    pub fn keys(&self) -> Result<Vec<String>, SessionError> {
        self.validate_name()?;
        Ok(self.tx.borrow().data.keys(&self.name))
    }

    /// Removes every key of this package (and only of this package).
    ///
    /// # Errors
    /// An invalid package name.
    pub fn clear(&self) -> Result<(), SessionError> {
        self.replace(Map::new())
    }

    /// The package's entries as they are now.
    ///
    /// # Errors
    /// An invalid package name, or a stored value that cannot be read (kept as it is).
    pub(crate) fn entries(&self) -> Result<Map<String, Value>, SessionError> {
        self.validate_name()?;
        let tx = self.tx.borrow();
        let entries = tx.data.entries(&self.name).into_iter().flatten();
        entries
            .map(|(key, slot)| match slot.decode() {
                Ok(value) => Ok((key.as_str().to_owned(), value)),
                Err(source) => Err(SessionError::Deserialize {
                    key: key.as_str().to_owned(),
                    source,
                }),
            })
            .collect()
    }

    /// Removes the entries this request loaded (not those it added) and returns them. The
    /// removal does not depend on what was read: a concurrent request that removed them
    /// too is not a conflict.
    pub(crate) fn take_loaded(&self) -> Result<Map<String, Value>, SessionError> {
        self.validate_name()?;
        let mut tx = self.tx.borrow_mut();
        let loaded = tx.data.loaded_entries(&self.name);
        for key in loaded.keys() {
            tx.data.put_blind(&self.name, key, None);
        }
        // A value that cannot be read is removed with the others and not returned: what
        // the caller does with an unreadable entry (a flash message) is to drop it.
        Ok(loaded
            .into_iter()
            .filter_map(|(key, slot)| match slot.decode() {
                Ok(value) => Some((key.into_string(), value)),
                Err(e) => {
                    // As a string field (escaped by the formatter): the key comes from
                    // stored bytes, which must not forge log lines.
                    let key = key.as_str();
                    tracing::warn!(key, error = %e, "unreadable session value dropped");
                    None
                }
            })
            .collect())
    }

    /// Makes the package hold exactly `entries`: each is set (an equal value is not a
    /// change) and every other key removed. All are checked before any is applied.
    pub(crate) fn replace(&self, entries: Map<String, Value>) -> Result<(), SessionError> {
        self.validate_name()?;
        let entries = entries
            .into_iter()
            .map(|(key, value)| {
                validate("key", &key)?;
                let value = readable(&key, value)?;
                Ok((key, value))
            })
            .collect::<Result<Map<_, _>, SessionError>>()?;
        let mut tx = self.tx.borrow_mut();
        for key in tx.data.keys(&self.name) {
            if !entries.contains_key(&key) {
                tx.data.put(&self.name, &key, None);
            }
        }
        for (key, value) in entries {
            tx.data.put(&self.name, &key, Some(value));
        }
        Ok(())
    }

    fn check(&self, key: &str) -> Result<(), SessionError> {
        self.validate_name()?;
        validate("key", key)
    }

    fn validate_name(&self) -> Result<(), SessionError> {
        validate("package name", &self.name)?;
        if !self.own && self.name.starts_with(RESERVED) {
            let reason = "it starts with actix-memcache-session., kept for this crate's own";
            return Err(invalid_name("package name", &self.name, reason));
        }
        Ok(())
    }
}

impl fmt::Debug for Package {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Package").field("name", &self.name).finish()
    }
}

/// `value`, if it can be read back once stored: not nested more than 100 levels deep.
fn readable(key: &str, value: Value) -> Result<Value, SessionError> {
    if deeper_than(&value, MAX_VALUE_DEPTH) {
        let why = format!("nested more than {MAX_VALUE_DEPTH} levels deep");
        return Err(SessionError::Serialize {
            key: key.to_owned(),
            source: serde::ser::Error::custom(why),
        });
    }
    Ok(value)
}

/// Whether `value` nests arrays and objects more than `levels` deep; looks no deeper.
fn deeper_than(value: &Value, levels: usize) -> bool {
    let mut children: Box<dyn Iterator<Item = &Value>> = match value {
        Value::Array(items) => Box::new(items.iter()),
        Value::Object(entries) => Box::new(entries.values()),
        _ => return false,
    };
    levels == 0 || children.any(|child| deeper_than(child, levels - 1))
}

/// Names are 1 to 128 bytes without control characters: they end up in logs and in the
/// stored JSON, where a stray newline or a megabyte-long key is a bug, not data.
fn validate(what: &'static str, name: &str) -> Result<(), SessionError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME_BYTES {
        "it is longer than 128 bytes"
    } else if !plainly_visible(name.as_bytes()) && name.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(invalid_name(what, name, reason))
}

/// Apart and cold, so that the check of a valid name (every call but a bug's) does not
/// set up the frame that building the error needs.
#[cold]
fn invalid_name(what: &'static str, name: &str, reason: &'static str) -> SessionError {
    SessionError::InvalidName {
        what,
        name: name.chars().take(32).collect(),
        reason,
    }
}

/// Whether every byte is printable ASCII (0x20 to 0x7E), read eight bytes at a time (the
/// last eight overlapping the others; four and four under eight): then the name holds no
/// control character, and its characters need not be decoded one by one (about 60
/// instructions a name under callgrind). `false` only says to look closer.
fn plainly_visible(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    // A byte below 0x20, 0x7F, or past ASCII sets its high bit in one of the three
    // (the bit-twiddling "has less" and "has zero" tests, exact for ASCII words).
    let visible = |word: u64| {
        let below = word.wrapping_sub(ONES * 0x20) & !word;
        let delete = word ^ (ONES * 0x7F);
        let delete = delete.wrapping_sub(ONES) & !delete;
        (below | delete | word) & HIGH == 0
    };
    let word = |eight: &[u8; 8]| u64::from_ne_bytes(*eight);
    // Four bytes and four of `A` (printable) as a word.
    let half = |four: &[u8; 4]| word(&[four[0], four[1], four[2], four[3], b'A', b'A', b'A', b'A']);
    match (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
        (Some(_), Some(last)) => {
            bytes
                .chunks_exact(8)
                .all(|eight| eight.first_chunk().is_some_and(|e| visible(word(e))))
                && visible(word(last))
        }
        _ => match (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
            (Some(first), Some(last)) => visible(half(first)) && visible(half(last)),
            _ => bytes.iter().all(|b| (0x20..0x7F).contains(b)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[[[...0...]]]` with `levels` arrays.
    fn nested(levels: usize) -> Value {
        (0..levels).fold(0.into(), |inner, _| Value::Array(vec![inner]))
    }

    /// Against a byte-by-byte check, on names of every length to 128 made of bytes on each
    /// side of the edges, every one at every place; and a name with a control character
    /// is refused, one without accepted, as `char::is_control` says.
    #[test]
    fn visible_names_are_found_as_a_byte_by_byte_check_finds_them() {
        let reference = |bytes: &[u8]| bytes.iter().all(|b| (0x20..0x7F).contains(b));
        let edges = [0x00, 0x1F, 0x20, 0x21, 0x41, 0x7E, 0x7F, 0x80, 0xC2, 0xFF];
        let mut looked = 0;
        for len in 0..=MAX_NAME_BYTES {
            for at in 0..len {
                for edge in edges {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = edge;
                    assert_eq!(plainly_visible(&bytes), reference(&bytes), "{bytes:?}");
                    looked += 1;
                }
            }
            assert!(plainly_visible(&vec![b'~'; len]));
        }
        assert!(looked > 80_000);
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let name = format!("package{c}name");
            let refused = validate("key", &name).is_err();
            assert_eq!(refused, c.is_control(), "{c:?}");
        }
    }

    #[test]
    fn depth_is_measured_to_the_limit() {
        assert!(!deeper_than(&nested(0), 0));
        assert!(deeper_than(&nested(1), 0));
        assert!(!deeper_than(&nested(MAX_VALUE_DEPTH), MAX_VALUE_DEPTH));
        assert!(deeper_than(&nested(MAX_VALUE_DEPTH + 1), MAX_VALUE_DEPTH));
        let object = serde_json::json!({"a": 1, "b": {"c": [1]}});
        assert!(!deeper_than(&object, 3) && deeper_than(&object, 2));
    }

    #[test]
    fn the_deepest_value_accepted_reads_back_inside_a_record() {
        use crate::unit_of_work::Record;
        let mut record = Record::new(0);
        record.put("p", "k", Some(nested(MAX_VALUE_DEPTH)));
        let read = |record: &Record| {
            let record = Record::decode(record.encode().to_vec()).unwrap();
            record.slot("p", "k").unwrap().decode::<Value>()
        };
        assert!(read(&record).is_ok());
        record.put("p", "k", Some(nested(130)));
        assert!(read(&record).is_err(), "why the limit exists");
    }

    #[test]
    fn names_are_validated() {
        assert!(validate("key", "items").is_ok());
        assert!(validate("key", &"k".repeat(128)).is_ok());
        for bad in ["", "a\nb", "tab\there", &"k".repeat(129)] {
            assert!(
                matches!(validate("key", bad), Err(SessionError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }
}
