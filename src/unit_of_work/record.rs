//! The stored format: one JSON document per session, with a format version.
//!
//! `{"v":1,"created":1700000000,"packages":{"shop.cart":{"items":3}}}`. JSON keeps the data
//! readable by other languages and safe to decode (no pickled objects); `v` lets a later
//! release change the layout and still recognise what it finds.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::rc::Rc;

use compact_str::CompactString;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use super::by_name::{ByName, Unsorted};
use super::canonical::{range_in, Cursor};
use super::spare::Encoded;

pub(super) const FORMAT: u32 = 1;

/// Room reserved for an encoded session: most fit in it without growing the buffer, and it
/// stays under the 1 KiB from which glibc's malloc leaves its per-thread caches for a slower
/// path.
const ENCODE_CAPACITY: usize = 1000;

/// A package's or an entry's name: most are short enough to be kept inline, so a load
/// allocates nothing for them.
pub(crate) type Name = CompactString;

/// A package's entries.
pub(crate) type Package = BTreeMap<Name, Slot>;

/// One session's data as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    /// Unix seconds when the session was created; the absolute timeout counts from here.
    pub(crate) created: u64,
    packages: ByName<Package>,
}

/// One entry's value: the JSON text as loaded, built into a [`Value`] only when something
/// asks for it, and written back as the same bytes unless it was replaced. A request pays
/// for the values it touches, not for the size of the session.
#[derive(Clone)]
pub(crate) struct Slot {
    /// Where the value's text is in the loaded bytes; `None` for a value set in memory.
    raw: Option<(Rc<Vec<u8>>, Range<usize>)>,
    /// The value, once built; `None` inside if the text, valid JSON, is not a value this
    /// crate can build (nested deeper than serde_json reads, a number beyond `f64`).
    value: OnceCell<Option<Value>>,
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
            created,
            packages: ByName::default(),
        }
    }

    /// Reads the stored bytes: the layout, every package an object, every value valid
    /// JSON. The values are kept as their text (see [`Slot`]).
    pub(crate) fn decode(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        let source = Rc::new(bytes);
        match Self::read_as_written(&source) {
            Some(record) => Ok(record),
            None => Self::read_with_serde(&source),
        }
    }

    /// The bytes read as this crate writes them ([`write`](Self::write)), with
    /// [`Cursor`]; `None` for any other text, even valid JSON, which
    /// [`read_with_serde`](Self::read_with_serde) then reads or refuses. What both read,
    /// they read the same (test `reading_as_written_agrees_with_serde`).
    fn read_as_written(source: &Rc<Vec<u8>>) -> Option<Self> {
        let mut c = Cursor::new(source);
        c.expect(br#"{"v":"#)?;
        (c.natural()? == u64::from(FORMAT)).then_some(())?;
        c.expect(br#","created":"#)?;
        let created = c.natural()?;
        c.expect(br#","packages":{"#)?;
        let mut packages = Unsorted::new();
        while !c.eat(b"}") {
            if !packages.is_empty() {
                c.expect(b",")?;
            }
            let name = Name::from(c.name()?);
            c.expect(b":{")?;
            let mut package = Package::new();
            while !c.eat(b"}") {
                if !package.is_empty() {
                    c.expect(b",")?;
                }
                let key = c.name()?;
                c.expect(b":")?;
                let range = c.value()?;
                package.insert(Name::from(key), Slot::loaded(source, range));
            }
            packages.push((name, package));
        }
        c.expect(b"}")?;
        c.is_at_end().then(|| Self {
            created,
            packages: ByName::from_unsorted(packages),
        })
    }

    /// The bytes read by serde_json: any JSON of the record's shape (fields in any order,
    /// whitespace, unknown fields skipped), or why they are not a session.
    fn read_with_serde(source: &Rc<Vec<u8>>) -> Result<Self, DecodeError> {
        let mut deserializer = serde_json::Deserializer::from_slice(source);
        let (v, record) = RecordSeed(source).deserialize(&mut deserializer)?;
        deserializer.end()?;
        if v != FORMAT {
            return Err(DecodeError::Version(v));
        }
        Ok(record)
    }

    /// The stored bytes, in a buffer of this thread's that goes back when dropped.
    pub(crate) fn encode(&self) -> Encoded {
        Encoded::with(|out| self.write(out))
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.reserve(ENCODE_CAPACITY);
        // Numbers by `itoa`, not `write!`: formatting's machinery was a third of writing a
        // small session.
        let mut number = itoa::Buffer::new();
        out.extend_from_slice(br#"{"v":"#);
        out.extend_from_slice(number.format(FORMAT).as_bytes());
        out.extend_from_slice(br#","created":"#);
        out.extend_from_slice(number.format(self.created).as_bytes());
        out.extend_from_slice(br#","packages":{"#);
        for (i, (name, package)) in self.packages.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_name(out, name);
            out.extend_from_slice(b":{");
            for (j, (key, slot)) in package.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                write_name(out, key);
                out.push(b':');
                slot.write(out);
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"}}");
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// The value under `key`; one that cannot be built reads as `None` (see
    /// [`slot`](Self::slot) for the error).
    pub(crate) fn get(&self, package: &str, key: &str) -> Option<&Value> {
        self.slot(package, key)?.value()
    }

    pub(crate) fn slot(&self, package: &str, key: &str) -> Option<&Slot> {
        self.packages.get(package)?.get(key)
    }

    pub(crate) fn package(&self, name: &str) -> Option<&Package> {
        self.packages.get(name)
    }

    /// Every entry's package and key.
    pub(crate) fn names(&self) -> Vec<(String, String)> {
        let named = self.packages.iter().flat_map(|(package, entries)| {
            let package = package.as_str();
            entries
                .keys()
                .map(move |key| (package.to_owned(), key.as_str().to_owned()))
        });
        named.collect()
    }

    pub(crate) fn keys(&self, package: &str) -> Vec<String> {
        self.packages
            .get(package)
            .map(|p| p.keys().map(|k| k.as_str().to_owned()).collect())
            .unwrap_or_default()
    }

    /// Sets (`Some`) or removes (`None`) one entry; an emptied package is dropped.
    pub(crate) fn put(&mut self, package: &str, key: &str, value: Option<Value>) {
        self.put_slot(package, key, value.map(Slot::from));
    }

    /// Like [`put`](Self::put), with a slot (a value as loaded stays its text).
    pub(crate) fn put_slot(&mut self, package: &str, key: &str, slot: Option<Slot>) {
        match slot {
            // In place when the package or the key is there already: no copy of either
            // name to allocate and drop.
            Some(slot) => match self.packages.get_mut(package) {
                Some(p) => match p.get_mut(key) {
                    Some(there) => *there = slot,
                    None => {
                        p.insert(Name::from(key), slot);
                    }
                },
                None => {
                    let p = BTreeMap::from([(Name::from(key), slot)]);
                    self.packages.insert(package, p);
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

/// Writes a package's or an entry's name as a JSON string. One that needs no escape (no
/// quote, backslash or control character: most names) goes in as its bytes between quotes,
/// as serde_json would write it, without serde_json's writer and its escape table (about
/// 100 instructions a name); any other through serde_json.
fn write_name(out: &mut Vec<u8>, name: &str) {
    if name.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(out, name);
    }
}

impl Slot {
    /// The value whose text is at `range` in `source`.
    fn loaded(source: &Rc<Vec<u8>>, range: Range<usize>) -> Self {
        Self {
            raw: Some((Rc::clone(source), range)),
            value: OnceCell::new(),
        }
    }

    /// The value, built from its text the first time; `None` if it cannot be built.
    pub(crate) fn value(&self) -> Option<&Value> {
        self.value
            .get_or_init(|| serde_json::from_slice(self.text()?).ok())
            .as_ref()
    }

    /// The value as a `T`, read straight from its text when it was not built yet (no
    /// [`Value`] in between).
    pub(crate) fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match (self.value.get(), self.text()) {
            (Some(Some(value)), _) => T::deserialize(value),
            (_, Some(text)) => serde_json::from_slice(text),
            (_, None) => T::deserialize(Value::Null),
        }
    }

    /// The loaded text, if this is a value as loaded.
    fn text(&self) -> Option<&[u8]> {
        let (source, range) = self.raw.as_ref()?;
        source.get(range.clone())
    }

    fn write(&self, out: &mut Vec<u8>) {
        match (self.text(), self.value.get()) {
            (Some(text), _) => out.extend_from_slice(text),
            (None, Some(Some(value))) => {
                let _ = serde_json::to_writer(out, value);
            }
            (None, _) => out.extend_from_slice(b"null"),
        }
    }
}

impl From<Value> for Slot {
    fn from(value: Value) -> Self {
        Self {
            raw: None,
            value: OnceCell::from(Some(value)),
        }
    }
}

/// Equal values: the same text, or the same value built from texts that say nothing more
/// than it (two texts that cannot be built are equal only if they are the same text; nor
/// are two that read as one value only by losing what tells them apart, such as
/// `100000000000000000000001` and `100000000000000000000002`, both 1e23 as an `f64`).
impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        match (self.text(), other.text()) {
            (Some(a), Some(b)) if a == b => true,
            _ => match (self.value(), other.value()) {
                (Some(a), Some(b)) => a == b && self.exact() && other.exact(),
                _ => false,
            },
        }
    }
}

impl Slot {
    /// Whether the value built says all its text does (a value without text does).
    fn exact(&self) -> bool {
        match (self.text(), self.value()) {
            (Some(text), Some(value)) => reads_exactly(text, value),
            _ => true,
        }
    }
}

/// Whether `now` is `before` as stored (each as read from the store, or absent): equal
/// (`==`), and where the texts differ, each read as it says. serde_json reads some floats
/// one unit off, as one value with a neighbour: a merge must not take another writer's
/// change by that unit for none.
pub(crate) fn unchanged(before: Option<&Slot>, now: Option<&Slot>) -> bool {
    match (before, now) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a == b && (a.text() == b.text() || (a.read_as_said() && b.read_as_said()))
        }
        _ => false,
    }
}

impl Slot {
    /// Whether serde_json reads every number of the text as the number it says (a value
    /// without text does).
    fn read_as_said(&self) -> bool {
        self.text()
            .is_none_or(|text| numbers(text, number_read_as_said).is_some())
    }
}

/// Whether `text`, which serde_json read as `value`, says nothing `value` lost: each number
/// is written as serde_json writes the number it reads as (not one past what an `f64`
/// holds, nor `1E2` or `0.10`), and no object names a key twice (the last would win).
/// Another writer's spelling of the same value (spaces, key order, escapes) is exact.
fn reads_exactly(text: &[u8], value: &Value) -> bool {
    numbers(text, number_reads_exactly).is_some_and(|entries| entries == entries_in(value))
}

/// Walks the JSON `text`, asking `each` of every number's text: how many object entries
/// it names, or `None` as soon as `each` says no.
fn numbers(text: &[u8], each: impl Fn(&[u8]) -> bool) -> Option<usize> {
    let mut entries = 0;
    let mut at = 0;
    while let Some(&byte) = text.get(at) {
        match byte {
            b'"' => {
                at += 1;
                while let Some(&byte) = text.get(at) {
                    at += if byte == b'\\' { 2 } else { 1 };
                    if byte == b'"' {
                        break;
                    }
                }
            }
            b':' => {
                entries += 1;
                at += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = at;
                let in_number =
                    |b: &u8| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E');
                while text.get(at).is_some_and(in_number) {
                    at += 1;
                }
                if !each(&text[start..at]) {
                    return None;
                }
            }
            _ => at += 1,
        }
    }
    Some(entries)
}

/// Whether a JSON number's text is how serde_json writes the number it stands for: an
/// integer that fits 64 bits, or a float's shortest text. Floats are read here correctly
/// rounded (serde_json's own reading may be one unit off, which the text does not say).
fn number_reads_exactly(token: &[u8]) -> bool {
    let written = match serde_json::from_slice::<serde_json::Number>(token) {
        Ok(n) if n.is_f64() => correctly_read(token).and_then(serde_json::Number::from_f64),
        n => n.ok(),
    };
    written.is_some_and(|n| n.to_string().as_bytes() == token)
}

/// Whether serde_json reads a JSON number's text as the number it says: a float read
/// correctly rounded (no more than one unit off, its reading can be that one).
fn number_read_as_said(token: &[u8]) -> bool {
    match serde_json::from_slice::<serde_json::Number>(token) {
        Ok(n) if n.is_f64() => n.as_f64() == correctly_read(token),
        n => n.is_ok(),
    }
}

/// A float's text read correctly rounded.
fn correctly_read(token: &[u8]) -> Option<f64> {
    std::str::from_utf8(token).ok()?.parse::<f64>().ok()
}

/// The entries of every object in `value`.
fn entries_in(value: &Value) -> usize {
    match value {
        Value::Object(map) => map.len() + map.values().map(entries_in).sum::<usize>(),
        Value::Array(items) => items.iter().map(entries_in).sum(),
        _ => 0,
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text() {
            Some(text) => write!(f, "Slot({})", String::from_utf8_lossy(text)),
            None => f.debug_tuple("Slot").field(&self.value.get()).finish(),
        }
    }
}

/// Reads `{"v":..,"created":..,"packages":{..}}` out of `source`, each value kept as where
/// its text is. Fields may come in any order; unknown ones are skipped, as serde's derive
/// would.
struct RecordSeed<'s>(&'s Rc<Vec<u8>>);
struct PackagesSeed<'s>(&'s Rc<Vec<u8>>);
struct PackageSeed<'s>(&'s Rc<Vec<u8>>);

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = (u32, Record);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = (u32, Record);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a stored session")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut v, mut created, mut packages) = (None, None, None);
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::V if v.is_none() => v = Some(map.next_value()?),
                Field::Created if created.is_none() => created = Some(map.next_value()?),
                Field::Packages if packages.is_none() => {
                    packages = Some(map.next_value_seed(PackagesSeed(self.0))?);
                }
                Field::V | Field::Created | Field::Packages => {
                    return Err(de::Error::custom("a field given twice"));
                }
                Field::Other => drop(map.next_value::<de::IgnoredAny>()?),
            }
        }
        let v = v.ok_or_else(|| de::Error::missing_field("v"))?;
        let created = created.ok_or_else(|| de::Error::missing_field("created"))?;
        let packages = packages.ok_or_else(|| de::Error::missing_field("packages"))?;
        Ok((v, Record { created, packages }))
    }
}

/// A field of the record, told apart without allocating its name (a `String` or `Cow`
/// key would: three allocations a load).
enum Field {
    V,
    Created,
    Packages,
    Other,
}

impl<'de> de::Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
                Ok(match name {
                    "v" => Field::V,
                    "created" => Field::Created,
                    "packages" => Field::Packages,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_identifier(FieldVisitor)
    }
}

impl<'de> DeserializeSeed<'de> for PackagesSeed<'_> {
    type Value = ByName<Package>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PackagesSeed<'_> {
    type Value = ByName<Package>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of packages")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut packages = Unsorted::new();
        while let Some(name) = map.next_key::<Name>()? {
            let package = map.next_value_seed(PackageSeed(self.0))?;
            packages.push((name, package));
        }
        Ok(ByName::from_unsorted(packages))
    }
}

impl<'de> DeserializeSeed<'de> for PackageSeed<'_> {
    type Value = Package;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PackageSeed<'_> {
    type Value = Package;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a package: an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let source = self.0;
        let mut package = Package::new();
        while let Some(key) = map.next_key::<Name>()? {
            let raw: &'de RawValue = map.next_value()?;
            // Where the value's text is in `source`: it was read from there, but nothing
            // is taken on trust: a range that is not exactly that text is an error, not a
            // wrong value later.
            let range = range_in(source, raw.get().as_bytes())
                .ok_or_else(|| de::Error::custom("a value outside the stored bytes"))?;
            package.insert(key, Slot::loaded(source, range));
        }
        Ok(package)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_with_format_version_and_round_trips() {
        let mut r = Record::new(7);
        r.put("shop.cart", "items", Some(3.into()));
        r.put("a\"b", "k\n", Some(serde_json::json!({"deep": [1, "x"]})));
        let bytes = r.encode();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"v":1,"created":7,"packages":{"a\"b":{"k\n":{"deep":[1,"x"]}},"shop.cart":{"items":3}}}"#
        );
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap()["v"], 1);
        assert_eq!(Record::decode(bytes.to_vec()).unwrap(), r);
        assert_eq!(
            Record::read_as_written(&Rc::new(bytes.to_vec())),
            Some(r),
            "what this crate writes is read as written"
        );
        assert_eq!(
            &*Record::new(0).encode(),
            br#"{"v":1,"created":0,"packages":{}}"#
        );
    }

    /// A name is written as serde_json writes it, with or without escapes: every ASCII
    /// character inside a name, names past ASCII, and the empty name.
    #[test]
    fn names_are_written_as_serde_json_writes_them() {
        let names = (0..=0x7f_u8)
            .map(|b| format!("a{}b", char::from(b)))
            .chain(["", "é", "\u{7f}", "日本\u{1f600}"].map(String::from));
        for name in names {
            let mut out = Vec::new();
            write_name(&mut out, &name);
            assert_eq!(out, serde_json::to_vec(&name).unwrap(), "{name:?}");
        }
    }

    #[test]
    fn unknown_format_and_garbage_are_refused() {
        let future = br#"{"v":2,"created":7,"packages":{}}"#;
        assert!(matches!(
            Record::decode(future.to_vec()),
            Err(DecodeError::Version(2))
        ));
        for bad in [
            &b"\x80\x04pickle"[..],
            br#"{"v":1,"created":7,"packages":{"a":[}}"#,
            br#"{"v":1,"created":7,"packages":{"a":1}}"#,
            br#"{"v":1,"created":7,"packages":{"a":{"k":1}}} trailing"#,
            br#"{"v":1,"created":7,"packages":{"a":{"k":"\q"}}}"#,
            br#"{"v":1,"created":7,"packages":{"a":{"k":"\u12"}}}"#,
            br#"{"v":1,"created":7,"packages":{"a":{"k":01}}}"#,
            br#"{"v":1,"created":7,"v":1,"packages":{}}"#,
            br#"{"v":1,"packages":{}}"#,
            br#"[1,7,{}]"#,
            b"{\"v\":1,\"created\":7,\"packages\":{\"a\":{\"k\":\"\xff\"}}}",
            b"{\"v\":1,\"created\":7,\"packages\":{\"a\":{\"k\":[\"\xc3\"]}}}",
            b"{\"v\":1,\"created\":7,\"packages\":{\"a\":{\"\xc3\":1}}}",
            b"{\"v\":1,\"created\":7,\"packages\":{\"a\":{\"k\":1}}}\xff",
        ] {
            assert!(
                Record::decode(bad.to_vec()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let unknown = br#"{"x":[1],"v":1,"packages":{},"created":7}"#;
        assert_eq!(Record::decode(unknown.to_vec()).unwrap(), Record::new(7));
    }

    /// Names of every length (kept inline up to 24 bytes, on the heap past that, a
    /// multi-byte character at the edge) and names written with an escape (read as what
    /// they stand for) are found by their text, sorted as strings, and read back equal.
    #[test]
    fn names_short_long_and_escaped_round_trip() {
        let long = "a.package.name.longer.than.twenty.four.bytes";
        let (at_24, at_25, edge) = (
            "x".repeat(24),
            "y".repeat(25),
            format!("{}é", "z".repeat(22)),
        );
        let stored = format!(
            r#"{{"v":1,"created":7,"packages":{{"{long}":{{"k\u00e9":1,"{long}":2,"{at_24}":3,"{at_25}":4,"{edge}":5,"{long}\u00e9":6}},"p":{{"k":3}}}}}}"#
        );
        let mut r = Record::decode(stored.into_bytes()).unwrap();
        assert_eq!(r.get(long, "ké"), Some(&serde_json::json!(1)));
        assert_eq!(r.get(long, long), Some(&serde_json::json!(2)));
        assert_eq!(r.get(long, &at_24), Some(&serde_json::json!(3)));
        assert_eq!(r.get(long, &at_25), Some(&serde_json::json!(4)));
        assert_eq!(r.get(long, &edge), Some(&serde_json::json!(5)));
        let escaped_long = format!("{long}é");
        assert_eq!(r.get(long, &escaped_long), Some(&serde_json::json!(6)));
        let mut sorted = vec![
            long.to_owned(),
            escaped_long,
            "ké".to_owned(),
            at_24,
            at_25,
            edge,
        ];
        sorted.sort();
        assert_eq!(r.keys(long), sorted);
        r.put("p", long, Some(4.into()));
        let again = Record::decode(r.encode().to_vec()).unwrap();
        assert_eq!(again, r);
        assert_eq!(again.get("p", long), Some(&serde_json::json!(4)));
    }

    #[test]
    fn values_stay_their_text_until_asked_and_are_written_back_as_it() {
        // Text as another writer may store it: spaces, an escape, a float written long.
        let stored =
            br#"{"v":1,"created":7,"packages":{"p":{"a": [1, 2] ,"b":"\u00e9","c":1.50}}}"#;
        let mut r = Record::decode(stored.to_vec()).unwrap();
        assert!(
            r.slot("p", "a").unwrap().value.get().is_none(),
            "not built yet"
        );
        assert_eq!(r.slot("p", "b").unwrap().decode::<String>().unwrap(), "é");
        assert!(
            r.slot("p", "b").unwrap().value.get().is_none(),
            "read without a Value"
        );
        assert_eq!(r.get("p", "c"), Some(&serde_json::json!(1.5)));
        r.put("q", "k", Some(1.into()));
        assert_eq!(
            std::str::from_utf8(&r.encode()).unwrap(),
            r#"{"v":1,"created":7,"packages":{"p":{"a":[1, 2],"b":"\u00e9","c":1.50},"q":{"k":1}}}"#,
            "untouched values, built or not, are their bytes"
        );
        r.put("p", "b", Some("é".into()));
        assert!(
            r.encode().windows(4).any(|w| w == "\"é\"".as_bytes()),
            "a set value is encoded"
        );
    }

    #[test]
    fn a_value_that_cannot_be_built_reads_as_an_error_and_is_kept() {
        let deep = format!("{}0{}", "[".repeat(200), "]".repeat(200));
        let stored = format!(
            r#"{{"v":1,"created":7,"packages":{{"p":{{"deep":{deep},"huge":1e400,"ok":1}}}}}}"#
        );
        let r = Record::decode(stored.clone().into_bytes()).unwrap();
        for key in ["deep", "huge"] {
            let slot = r.slot("p", key).unwrap();
            assert!(slot.decode::<Value>().is_err(), "{key}");
            assert_eq!(slot.value(), None, "{key}");
            assert_eq!(r.get("p", key), None, "{key}");
        }
        assert_eq!(r.slot("p", "ok").unwrap().decode::<u32>().unwrap(), 1);
        assert_eq!(&*r.encode(), stored.as_bytes(), "written back as it was");
        let again = Record::decode(stored.into_bytes()).unwrap();
        assert_eq!(
            again.slot("p", "deep"),
            r.slot("p", "deep"),
            "the same text"
        );
        assert_ne!(again.slot("p", "deep"), again.slot("p", "huge"));
    }

    #[test]
    fn slots_compare_by_value() {
        let stored = br#"{"v":1,"created":7,"packages":{"p":{"a":{"x":1, "y":2},"b":"\u00e9"}}}"#;
        let r = Record::decode(stored.to_vec()).unwrap();
        let a = r.slot("p", "a").unwrap();
        assert_eq!(a, &Slot::from(serde_json::json!({"y": 2, "x": 1})));
        assert_eq!(r.slot("p", "b").unwrap(), &Slot::from(Value::from("é")));
        assert_ne!(a, &Slot::from(Value::from(1)));
        // Texts that read as one value only by losing what tells them apart are not equal.
        let slot = |text: &str| {
            let stored = format!(r#"{{"v":1,"created":7,"packages":{{"p":{{"k":{text}}}}}}}"#);
            Record::decode(stored.into_bytes())
                .unwrap()
                .slot("p", "k")
                .unwrap()
                .clone()
        };
        for (a, b) in [
            ("100000000000000000000001", "100000000000000000000002"),
            ("100000000000000000000001", "1e23"),
            ("0.1000000000000000000001", "0.1"),
            (r#"{"a":1,"a":2}"#, r#"{"a":3,"a":2}"#),
            (r#"[{"a":1,"a":2}]"#, r#"[{"a":2}]"#),
        ] {
            assert_eq!(
                slot(a).value(),
                slot(b).value(),
                "{a} and {b} read as one value"
            );
            assert_ne!(slot(a), slot(b), "{a} and {b}");
        }
        // Another spelling of one value is still that value.
        for (a, b) in [
            (
                r#"{"b":[1, 2.5],"a":"\u00e9:"}"#,
                r#"{"a":"é:","b":[1,2.5]}"#,
            ),
            ("-3", "-3"),
            ("1e23", "1e23"),
            (r#""1E2 \" 0.10""#, r#""1E2 \u0022 0.10""#),
        ] {
            assert_eq!(slot(a), slot(b), "{a} and {b}");
        }
        assert_eq!(slot("2.5e-7"), Slot::from(serde_json::json!(2.5e-7)));
        // A float read back and set again is the value already there (serde_json reads
        // this one, which it writes so, one unit off).
        let float = slot("51.248178375505404");
        assert_eq!(Slot::from(float.value().unwrap().clone()), float);
    }

    /// A string value without escapes is read by the quicker path; it is checked as
    /// serde_json checks any string: a control character or bytes that are not UTF-8 are
    /// refused, a quote or backslash sends it down the ordinary path.
    #[test]
    fn plain_strings_are_checked_like_any_other() {
        let record = |value: &[u8]| {
            let mut bytes = br#"{"v":1,"created":7,"packages":{"p":{"k":"#.to_vec();
            bytes.extend_from_slice(value);
            bytes.extend_from_slice(b"}}}");
            Record::decode(bytes)
        };
        for bad in [
            &b"\"a\x01b\""[..],
            b"\"a\nb\"",
            b"\"\x1f\"",
            b"\"\x00\"",
            b"\"\xff\"",
            b"\"\xc3\"",
            b"\"abc}}}",
            b"\"abc,\"j\":1",
            b"\"a\\q\"",
        ] {
            assert!(record(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        for (good, read) in [
            (&b"\"\""[..], ""),
            (b"\"a\x7fb\"", "a\u{7f}b"),
            (b"\"\xc3\xa9 \xf0\x9f\x98\x80\"", "\u{e9} \u{1f600}"),
            (b"\"a\\\"b\"", "a\"b"),
            (b"\"a\\\\\"", "a\\"),
            (b" \t\n\r\"x\" ", "x"),
        ] {
            let r =
                record(good).unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(good)));
            let slot = r.slot("p", "k").unwrap();
            assert_eq!(slot.decode::<String>().unwrap(), read);
            assert_eq!(
                slot.text().unwrap(),
                good.trim_ascii(),
                "its text, quotes and all"
            );
        }
    }

    /// Packages stored out of order, one given twice, read as serde_json reads them into a
    /// map (the last of a name wins), and written back in name order.
    #[test]
    fn packages_in_any_order_read_as_a_map_would() {
        let stored =
            br#"{"v":1,"created":7,"packages":{"q":{"k":1},"a":{},"p":{"x":2},"q":{"k":3,"j":4}}}"#;
        #[derive(serde::Deserialize)]
        struct Reference {
            packages: BTreeMap<String, BTreeMap<String, Value>>,
        }
        let reference: Reference = serde_json::from_slice(stored).unwrap();
        let r = Record::decode(stored.to_vec()).unwrap();
        let names: Vec<&str> = r.packages.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "p", "q"]);
        for (name, package) in &reference.packages {
            for (key, value) in package {
                assert_eq!(r.get(name, key), Some(value), "{name}/{key}");
            }
            assert_eq!(r.keys(name), package.keys().cloned().collect::<Vec<_>>());
        }
        assert_eq!(r.get("q", "k"), Some(&Value::from(3)), "the last q");
        assert_eq!(
            std::str::from_utf8(&r.encode()).unwrap(),
            r#"{"v":1,"created":7,"packages":{"a":{},"p":{"x":2},"q":{"j":4,"k":3}}}"#
        );
    }

    /// Against serde_json itself, on records made of random pieces: a record is read if and
    /// only if serde_json reads it into the same shape, and every value is the text
    /// serde_json finds for it.
    #[test]
    fn decoding_agrees_with_serde_json() {
        #[derive(serde::Deserialize)]
        struct Reference<'a> {
            #[allow(dead_code)]
            v: u32,
            created: u64,
            #[serde(borrow)]
            packages: BTreeMap<String, BTreeMap<String, &'a RawValue>>,
        }
        const SPACE: [&str; 6] = ["", "", " ", "\t\n", "\r", "\x0b"];
        const KEYS: [&str; 8] = [
            "\"k\"",
            "\"k\"",
            "\"j\"",
            "\"\"",
            "\"\u{e9}\"",
            "\"\\u006b\"",
            "\"a\\\"b\"",
            "\"\x01\"",
        ];
        const PIECES: [&[u8]; 16] = [
            b"a",
            b"abc ",
            b"\"",
            b"\\",
            b"\\\"",
            b"\\n",
            b"\\u00e9",
            b"\\u12",
            b"\x01",
            b"\x1f",
            b"\x7f",
            b"\xc3\xa9",
            b"\xc3",
            b"\xff",
            b"}",
            b"\n",
        ];
        const OTHERS: [&[u8]; 8] = [
            b"1",
            b"-0.5e3",
            b"01",
            b"[1, \"x\"]",
            b"{\"a\":null}",
            b"true",
            b"nul",
            b"\"\"",
        ];
        let mut random = crate::fixed_random::FixedRandom::new(0x9E37_79B9_7F4A_7C15);
        let mut next = |n: usize| random.below(n);
        let (mut read, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let mut bytes = br#"{"v":1,"created":7,"packages":{"p":{"#.to_vec();
            for entry in 0..1 + next(3) {
                if entry > 0 {
                    bytes.push(b',');
                }
                bytes.extend_from_slice(KEYS[next(KEYS.len())].as_bytes());
                bytes.extend_from_slice(SPACE[next(SPACE.len())].as_bytes());
                bytes.push(b':');
                bytes.extend_from_slice(SPACE[next(SPACE.len())].as_bytes());
                if next(4) == 0 {
                    bytes.extend_from_slice(OTHERS[next(OTHERS.len())]);
                } else {
                    bytes.push(b'"');
                    for _ in 0..next(5) {
                        bytes.extend_from_slice(PIECES[next(PIECES.len())]);
                    }
                    if next(8) > 0 {
                        bytes.push(b'"');
                    }
                }
            }
            bytes.extend_from_slice(b"}}}");
            let ours = Record::decode(bytes.clone());
            let theirs = serde_json::from_slice::<Reference<'_>>(&bytes);
            let shown = String::from_utf8_lossy(&bytes);
            match (ours, theirs) {
                (Ok(ours), Ok(theirs)) => {
                    read += 1;
                    assert_eq!(ours.created, theirs.created, "{shown}");
                    let package = &theirs.packages["p"];
                    let keys: Vec<String> = package.keys().cloned().collect();
                    assert_eq!(ours.keys("p"), keys, "{shown}");
                    for (key, raw) in package {
                        let slot = ours.slot("p", key).unwrap();
                        assert_eq!(slot.text(), Some(raw.get().as_bytes()), "{shown}");
                    }
                }
                (Err(_), Err(_)) => refused += 1,
                (ours, theirs) => panic!(
                    "{shown}: ours {:?}, serde_json {:?}",
                    ours.map(|_| ()),
                    theirs.map(|_| ())
                ),
            }
        }
        assert!(
            read > 1_000 && refused > 1_000,
            "both kinds met: {read} read, {refused} refused"
        );
    }

    /// The two readers against each other, on records as this crate writes them (names
    /// with and without escapes, values of every kind, as written or kept from another
    /// writer) and on those records with bytes changed, removed or added: every record as
    /// written is read as written; whatever that reads, serde_json reads the same, each
    /// value at the same place.
    #[test]
    fn reading_as_written_agrees_with_serde() {
        const NAMES: [&str; 8] = [
            "p",
            "shop.cart",
            "",
            "a\"b",
            "k\n",
            "\u{e9}",
            "\u{7f}",
            "a.name.longer.than.24.bytes",
        ];
        const VALUES: [&str; 16] = [
            "0",
            "-1.5e3",
            "1e400",
            "12345678901234567890123",
            "true",
            "false",
            "null",
            "\"abc\"",
            "\"\"",
            "\"a\\\"b\"",
            "\"\\u00e9\"",
            "\"\u{e9}\u{1f600}\"",
            "[1, {\"a\": null}]",
            "{}",
            "[[[[[[[[]]]]]]]]",
            "{\"x\":{\"y\":\"z\"}}",
        ];
        const CREATED: [u64; 4] = [0, 7, 1_700_000_000, u64::MAX];
        const BYTES: &[u8] = b"\"\\,:{}[] \t\r\n0129-+eE.antu/\x00\x01\x7f\x80\xc3\xff";
        fn same(a: &Record, b: &Record) -> bool {
            let slots = |r: &Record| -> Vec<(String, String, Option<Range<usize>>)> {
                let mut all = Vec::new();
                for (name, package) in r.packages.iter() {
                    for (key, slot) in package {
                        let range = slot.raw.as_ref().map(|(_, range)| range.clone());
                        all.push((name.to_string(), key.to_string(), range));
                    }
                }
                all
            };
            a.created == b.created && a == b && slots(a) == slots(b)
        }
        let mut random = crate::fixed_random::FixedRandom::new(0x2545_F491_4F6C_DD1D);
        let mut next = |n: usize| random.below(n);
        let (mut read, mut left) = (0, 0);
        for _ in 0..20_000 {
            let mut bytes = format!(
                r#"{{"v":1,"created":{},"packages":{{"#,
                CREATED[next(CREATED.len())]
            )
            .into_bytes();
            for p in 0..next(4) {
                if p > 0 {
                    bytes.push(b',');
                }
                write_name(&mut bytes, NAMES[next(NAMES.len())]);
                bytes.extend_from_slice(b":{");
                for k in 0..next(4) {
                    if k > 0 {
                        bytes.push(b',');
                    }
                    write_name(&mut bytes, NAMES[next(NAMES.len())]);
                    bytes.push(b':');
                    bytes.extend_from_slice(VALUES[next(VALUES.len())].as_bytes());
                }
                bytes.push(b'}');
            }
            bytes.extend_from_slice(b"}}");
            let source = Rc::new(bytes.clone());
            let shown = String::from_utf8_lossy(&bytes);
            let as_written = Record::read_as_written(&source)
                .unwrap_or_else(|| panic!("as written, not read as written: {shown}"));
            let theirs = Record::read_with_serde(&source).unwrap();
            assert!(same(&as_written, &theirs), "{shown}");
            for _ in 0..1 + next(2) {
                let at = next(bytes.len() + 1);
                let byte = BYTES[next(BYTES.len())];
                match next(4) {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 if at < bytes.len() => drop(bytes.remove(at)),
                    2 => bytes.insert(at, byte),
                    _ => bytes.truncate(at),
                }
            }
            let source = Rc::new(bytes.clone());
            let shown = String::from_utf8_lossy(&bytes);
            match Record::read_as_written(&source) {
                Some(ours) => {
                    read += 1;
                    let theirs = Record::read_with_serde(&source)
                        .unwrap_or_else(|e| panic!("{shown}: read as written, serde: {e}"));
                    assert!(same(&ours, &theirs), "{shown}");
                }
                None => left += 1,
            }
        }
        assert!(
            read > 1_000 && left > 1_000,
            "both kinds met among the changed: {read} read, {left} left to serde_json"
        );
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
