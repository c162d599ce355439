//! A cursor over the stored format as this crate writes it (no whitespace between its
//! tokens, the fields in their order), token by token, without serde's machinery: the
//! bench's session loads in a little over half the instructions (its entries built
//! included). `record` reads with it first and, where it answers `None`, reads the bytes
//! again with serde_json, which decides. It reads nothing serde_json would refuse, so it
//! decides how fast a session is read, never whether.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize as _;
use serde_json::value::RawValue;

/// Where reading has got to in the stored bytes.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.at..).unwrap_or_default()
    }

    /// Steps over `expected` if the bytes go on with it.
    pub(crate) fn eat(&mut self, expected: &[u8]) -> bool {
        let found = self.rest().starts_with(expected);
        if found {
            self.at += expected.len();
        }
        found
    }

    /// [`eat`](Self::eat), as an `Option` for `?`.
    pub(crate) fn expect(&mut self, expected: &[u8]) -> Option<()> {
        self.eat(expected).then_some(())
    }

    pub(crate) fn is_at_end(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// An unsigned integer without a leading zero, as JSON writes one, if it fits a `u64`.
    pub(crate) fn natural(&mut self) -> Option<u64> {
        let rest = self.rest();
        let len = digits(rest);
        if len == 0 || (len > 1 && rest.first() == Some(&b'0')) {
            return None;
        }
        let n = rest[..len].iter().try_fold(0_u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })?;
        self.at += len;
        Some(n)
    }

    /// A name: a string, read as what it stands for (borrowed from the stored bytes unless
    /// it has an escape).
    pub(crate) fn name(&mut self) -> Option<Cow<'a, str>> {
        if let Some(range) = self.plain_string() {
            let inside = self.bytes.get(range.start + 1..range.end - 1)?;
            return std::str::from_utf8(inside).ok().map(Cow::Borrowed);
        }
        let range = self.raw()?;
        let name = serde_json::from_slice(self.bytes.get(range)?).ok()?;
        Some(Cow::Owned(name))
    }

    /// Any JSON value, as where its text is. A string without escapes, a number, `true`,
    /// `false` and `null` are read here; anything else by serde_json, which checks an
    /// object, an array or an escape as it checks them anywhere.
    pub(crate) fn value(&mut self) -> Option<Range<usize>> {
        let start = self.at;
        let rest = self.rest();
        let len = match rest.first()? {
            b'"' => return self.plain_string().or_else(|| self.raw()),
            b'-' | b'0'..=b'9' => number(rest)?,
            b't' if rest.starts_with(b"true") => 4,
            b'f' if rest.starts_with(b"false") => 5,
            b'n' if rest.starts_with(b"null") => 4,
            b'{' | b'[' => return self.raw(),
            _ => return None,
        };
        self.at += len;
        Some(start..self.at)
    }

    /// A string without an escape, quotes and all, checked as serde_json checks a string.
    fn plain_string(&mut self) -> Option<Range<usize>> {
        let inside = self.rest().strip_prefix(b"\"")?;
        let end = closing_quote(inside)?;
        is_string_text(&inside[..end]).then_some(())?;
        let start = self.at;
        self.at += end + 2;
        Some(start..self.at)
    }

    /// One value read by serde_json, as where its text is: exactly the bytes that follow,
    /// checked by address rather than taken on trust.
    fn raw(&mut self) -> Option<Range<usize>> {
        let rest = self.rest();
        let raw = <&RawValue>::deserialize(&mut serde_json::Deserializer::from_slice(rest)).ok()?;
        let found = range_in(rest, raw.get().as_bytes())?;
        if found.start != 0 {
            return None;
        }
        let start = self.at;
        self.at += found.end;
        Some(start..self.at)
    }
}

/// Where the quote that ends a string without an escape is, `None` if a backslash comes
/// first. `memchr` finds it many bytes at a time, where serde_json's check of a string
/// goes a word at a time: most of what reading a large session costs.
fn closing_quote(inside: &[u8]) -> Option<usize> {
    memchr::memchr2(b'"', b'\\', inside).filter(|&end| inside[end] == b'"')
}

/// Whether the text between a string's quotes, when it has no escape, is one serde_json
/// reads: no control character, UTF-8.
fn is_string_text(text: &[u8]) -> bool {
    // The lowest and the highest byte, rather than the first below 0x20 or past ASCII: a
    // loop without an early exit is one the compiler runs many bytes at a time. ASCII is
    // valid UTF-8: only a text with a byte past it is read again to check.
    let (low, high) = text
        .iter()
        .fold((u8::MAX, 0), |(low, high), &b| (low.min(b), high.max(b)));
    low >= 0x20 && (high < 0x80 || std::str::from_utf8(text).is_ok())
}

/// Where `text` is in `source`, if it is a slice of it (checked by address).
pub(crate) fn range_in(source: &[u8], text: &[u8]) -> Option<Range<usize>> {
    let at = (text.as_ptr() as usize).wrapping_sub(source.as_ptr() as usize);
    let range = at..at.checked_add(text.len())?;
    let found = source.get(range.clone())?;
    (found.as_ptr() == text.as_ptr()).then_some(range)
}

/// How many ASCII digits `bytes` starts with.
fn digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// The length of the JSON number `bytes` starts with:
/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`. What follows it is the
/// caller's to check.
fn number(bytes: &[u8]) -> Option<usize> {
    let mut at = usize::from(bytes.first() == Some(&b'-'));
    match bytes.get(at)? {
        b'0' => at += 1,
        b'1'..=b'9' => at += digits(&bytes[at..]),
        _ => return None,
    }
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        let n = digits(&bytes[at..]);
        if n == 0 {
            return None;
        }
        at += n;
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let n = digits(&bytes[at..]);
        if n == 0 {
            return None;
        }
        at += n;
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers as JSON writes them, and where each ends; what is not one, `None`.
    #[test]
    fn numbers_end_where_json_says() {
        for (text, len) in [
            ("0,", 1),
            ("-0}", 2),
            ("12", 2),
            ("01", 1),
            ("1.50,", 4),
            ("-2.5e+3}", 7),
            ("1E400", 5),
            ("7e-0", 4),
        ] {
            assert_eq!(number(text.as_bytes()), Some(len), "{text}");
        }
        for text in ["", "-", "+1", ".5", "1.", "1.e3", "1e", "1e+", "-a", "a"] {
            assert_eq!(number(text.as_bytes()), None, "{text}");
        }
    }

    /// Of any length: `memchr` reads short and long texts in different ways.
    #[test]
    fn strings_end_at_their_quote_at_any_length() {
        for len in 0..40 {
            let text = "x".repeat(len);
            assert_eq!(closing_quote(format!("{text}\",\"").as_bytes()), Some(len));
            assert_eq!(closing_quote(format!("{text}\\\"\"").as_bytes()), None);
            assert_eq!(closing_quote(text.as_bytes()), None);
        }
    }

    #[test]
    fn naturals_fit_and_have_no_leading_zero() {
        let read = |text: &str| Cursor::new(text.as_bytes()).natural();
        assert_eq!(read("0,"), Some(0));
        assert_eq!(read("18446744073709551615}"), Some(u64::MAX));
        for text in ["", "00", "07", "-1", "18446744073709551616", "x"] {
            assert_eq!(read(text), None, "{text}");
        }
    }

    /// Values read here, values left to serde_json, and values neither reads.
    #[test]
    fn values_are_read_here_or_by_serde_json() {
        fn read(text: &[u8]) -> Option<&[u8]> {
            Cursor::new(text).value().map(|range| &text[range])
        }
        for (text, value) in [
            (&b"\"abc\",\"j\""[..], &b"\"abc\""[..]),
            (b"\"a\\\"b\"}", b"\"a\\\"b\""),
            (b"true}", b"true"),
            (b"false,", b"false"),
            (b"null", b"null"),
            (b"-1.5e3,", b"-1.5e3"),
            (b"{\"a\": [1, {}]},", b"{\"a\": [1, {}]}"),
            (b"[\"\\u00e9\"]}", b"[\"\\u00e9\"]"),
        ] {
            assert_eq!(read(text), Some(value), "{}", String::from_utf8_lossy(text));
        }
        for text in [
            &b""[..],
            b" 1",
            b"\"a\x01\"",
            b"\"\xff\"",
            b"\"abc",
            b"\"a\\q\"",
            b"tru",
            b"nil",
            b"[1,}",
            b"}",
        ] {
            assert_eq!(read(text), None, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn names_are_read_as_what_they_stand_for() {
        let read = |text: &[u8]| {
            let mut cursor = Cursor::new(text);
            cursor.name().map(Cow::into_owned)
        };
        assert_eq!(read(b"\"shop.cart\":").as_deref(), Some("shop.cart"));
        assert_eq!(read(b"\"a\\\"b\\u00e9\":").as_deref(), Some("a\"b\u{e9}"));
        for text in [&b"1:"[..], b"{}:", b"\"a\nb\":", b"\"a", b" \"a\":"] {
            assert_eq!(read(text), None, "{}", String::from_utf8_lossy(text));
        }
    }
}
