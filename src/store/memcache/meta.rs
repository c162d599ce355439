//! memcached's meta protocol: how a request is written, and how a reply line reads. No
//! I/O here; the vocabulary both protocols share is in `protocol`, the text protocol in
//! `text`.
//!
//! - `mg <key> v c` reads a value and its CAS token: `VA <len> c<cas>` + data, or `EN`.
//! - `ms <key> <len> T<ttl> ME c` adds: `HD c<cas>`, or `NS` when the key exists.
//! - `ms <key> <len> T<ttl> C<cas>` compare-and-swaps: `HD`, `EX` (stale), `NF` (missing).
//! - `mg <key> T<ttl>` touches: `HD`, or `EN`.
//! - `md <key> [C<cas>]` deletes (if the CAS token matches): `HD`, `EX`, or `NF`.
//!
//! Every command carries an opaque token `O<n>` that memcached echoes in its reply, so a
//! reply is only ever handed to the request it answers. Error lines carry no token: a
//! `SERVER_ERROR` is the failure of the oldest request waiting (replies come in order; a
//! line out of step shows at the next reply, whose token then does not match), but for a
//! proxy's "parsing request" and a storing error come for a read; those and any other
//! error line end the connection, as after them nobody can know how many lines are still
//! coming.

use super::protocol::{short, Fatal, Op, Request, Status};

/// Appends `request` to `out`, tagged with `opaque`: straight into the outbox, piece by
/// piece, with no string per command and no `core::fmt` (its machinery cost about 1,000
/// instructions a command).
pub(crate) fn write(request: &Request<'_>, out: &mut Vec<u8>, opaque: u32) {
    let exp = request.exptime;
    let len = request.data.map_or(0, <[u8]>::len) as u64;
    out.extend_from_slice(match request.op {
        Op::Get | Op::Exists | Op::Touch => b"mg ",
        Op::Add | Op::Cas(_) => b"ms ",
        Op::Delete | Op::DeleteIf(_) => b"md ",
    });
    out.extend_from_slice(request.key.as_bytes());
    match request.op {
        Op::Get => out.extend_from_slice(b" v c"),
        Op::Exists | Op::Delete => {}
        Op::Add => {
            number(out, b" ", len);
            number(out, b" T", exp);
            // The token it is stored with: 0 tells a memcached run with `-C` at once.
            out.extend_from_slice(b" ME c");
        }
        Op::Cas(cas) => {
            number(out, b" ", len);
            number(out, b" T", exp);
            number(out, b" C", cas);
        }
        Op::Touch => number(out, b" T", exp),
        Op::DeleteIf(cas) => number(out, b" C", cas),
    }
    number(out, b" O", opaque.into());
    out.extend_from_slice(b"\r\n");
    if let Some(data) = request.data {
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `prefix` and `value` in decimal.
fn number(out: &mut Vec<u8>, prefix: &[u8], value: u64) {
    out.extend_from_slice(prefix);
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// One reply line: its status and the opaque token it echoed (`None` only for a
/// `SERVER_ERROR` line: [`Status::TooLarge`] or [`Status::ServerError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) status: Status,
    pub(crate) opaque: Option<u32>,
}

impl Line {
    /// Parses one reply line, without its `\r\n`: as bytes, since every answer the client
    /// expects is ASCII (reading it as text cost a third of the reader task's instructions);
    /// error lines and garbage are read as text, for the log.
    pub(crate) fn parse(line: &[u8]) -> Result<Self, Fatal> {
        let mut words = line.split(|&b| b == b' ');
        let status = match words.next().unwrap_or_default() {
            b"VA" => {
                let Some(len) = words.next().and_then(decimal) else {
                    return Err(Fatal(format!(
                        "malformed memcached reply {:?}",
                        short(&String::from_utf8_lossy(line))
                    )));
                };
                Status::Value { len, cas: None }
            }
            b"HD" => Status::Done,
            b"EN" => Status::Miss,
            b"NF" => Status::NotFound,
            b"NS" => Status::NotStored,
            b"EX" => Status::Exists,
            _ => return Self::unexpected(&String::from_utf8_lossy(line)),
        };
        let mut cas = None;
        let mut opaque = None;
        for flag in words {
            match flag.split_first() {
                Some((b'c', n)) => cas = decimal(n),
                Some((b'O', n)) => opaque = decimal(n),
                _ => {}
            }
        }
        let status = match status {
            Status::Value { len, .. } => Status::Value { len, cas },
            Status::Done if cas == Some(0) => Status::DoneWithoutCas,
            other => other,
        };
        Ok(Self { status, opaque })
    }

    /// A line that is no answer to a meta command, and carries no opaque token: a
    /// `SERVER_ERROR` is the failure of the request it answers alone (the oldest waiting,
    /// as replies come in order), as in the text protocol; every other ends the connection.
    fn unexpected(text: &str) -> Result<Self, Fatal> {
        let failed = |status| {
            Ok(Self {
                status,
                opaque: None,
            })
        };
        match text.split(' ').next().unwrap_or_default() {
            "SERVER_ERROR" if text.contains("too large") => failed(Status::TooLarge),
            // memcached swallowed the write's data, and has dropped the item stored under
            // its key (an answer to a write only: see `connection::read_loop`).
            // The message names `STORING` itself, whatever `short` keeps of the line: the
            // reader checks it came for a write.
            "SERVER_ERROR" if text.contains(STORING) => failed(Status::ServerError(format!(
                "memcached is {STORING} an item ({:?}); it has dropped the item stored under \
                 that key",
                short(text)
            ))),
            // memcached's own proxy on 1.6.18 and 1.6.19, when it could not read a write's
            // data, reads that data as a command and answers this for it: a line more than
            // the commands sent.
            "SERVER_ERROR" if text.contains("parsing request") => {
                Err(Fatal(format!("memcached error {:?}", short(text))))
            }
            // memcached's own proxy answers so for a key whose backend is down, and keeps
            // the connection: the other keys' requests go on.
            "SERVER_ERROR" => failed(Status::ServerError(format!(
                "memcached (or the proxy in front of it) answered {:?}",
                short(text)
            ))),
            "ERROR" | "CLIENT_ERROR" => Err(Fatal(format!("memcached error {:?}", short(text)))),
            _ => Err(Fatal(format!(
                "unexpected memcached reply {:?}",
                short(text)
            ))),
        }
    }
}

/// What a `SERVER_ERROR` line says when memcached could not store a write's item, and
/// what [`Status::ServerError`]'s message then says, for the reader's check that it came
/// for a write.
pub(crate) const STORING: &str = "out of memory storing";

/// A number in a reply, read as `str::parse` reads an unsigned one (so `+5` is 5, and one
/// past the type's range is no number), without a check for UTF-8 and the parser's
/// generality: a third of what reading a reply line cost.
fn decimal<T: TryFrom<u64>>(text: &[u8]) -> Option<T> {
    let digits = text.strip_prefix(b"+").unwrap_or(text);
    if digits.is_empty() {
        return None;
    }
    let n = digits.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })?;
    T::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn text(r: &Request<'_>, opaque: u32) -> String {
        let mut out = Vec::new();
        write(r, &mut out, opaque);
        String::from_utf8(out).unwrap()
    }

    fn parse(line: &[u8]) -> Line {
        Line::parse(line).unwrap()
    }

    #[test]
    fn requests_are_meta_commands_with_an_opaque_token() {
        assert_eq!(text(&Request::get("s:abc"), 1), "mg s:abc v c O1\r\n");
        let secs = Duration::from_secs(60);
        assert_eq!(
            text(&Request::add("k", b"xy", secs, || 0).unwrap(), 2),
            "ms k 2 T60 ME c O2\r\nxy\r\n"
        );
        assert_eq!(
            text(&Request::cas("k", b"xy", 77, secs, || 0).unwrap(), 3),
            "ms k 2 T60 C77 O3\r\nxy\r\n"
        );
        assert_eq!(
            text(&Request::touch("k", secs, || 0).unwrap(), 4),
            "mg k T60 O4\r\n"
        );
        assert_eq!(text(&Request::delete("k"), 5), "md k O5\r\n");
        assert_eq!(text(&Request::delete_if("k", 9), 6), "md k C9 O6\r\n");
        assert_eq!(text(&Request::exists("k"), 0), "mg k O0\r\n");
        assert_eq!(
            text(&Request::delete_if("k", u64::MAX), u32::MAX),
            format!("md k C{} O{}\r\n", u64::MAX, u32::MAX)
        );
    }

    #[test]
    fn replies_parse_with_their_opaque_token() {
        assert_eq!(
            parse(b"VA 5 c123 O7"),
            Line {
                status: Status::Value {
                    len: 5,
                    cas: Some(123)
                },
                opaque: Some(7)
            }
        );
        assert_eq!(parse(b"VA 0").status, Status::Value { len: 0, cas: None });
        assert_eq!(parse(b"HD O1").status, Status::Done);
        assert_eq!(parse(b"HD O1").opaque, Some(1));
        assert_eq!(parse(b"HD c7 O1").status, Status::Done);
        assert_eq!(parse(b"HD c0 O1").status, Status::DoneWithoutCas);
        assert_eq!(parse(b"EN O2").status, Status::Miss);
        assert_eq!(parse(b"NF").status, Status::NotFound);
        assert_eq!(parse(b"NF").opaque, None);
        assert_eq!(parse(b"NS O3").status, Status::NotStored);
        assert_eq!(parse(b"EX O4").status, Status::Exists);
        assert_eq!(
            parse(b"SERVER_ERROR object too large for cache"),
            Line {
                status: Status::TooLarge,
                opaque: None
            }
        );
    }

    /// The reading of a reply line as text that `Line::parse` replaced, for the answers
    /// it expects (`None` for any other line): the reference it must agree with.
    fn as_text(line: &[u8]) -> Option<Line> {
        let text = String::from_utf8_lossy(line);
        let mut words = text.split(' ');
        let status = match words.next()? {
            "VA" => Status::Value {
                len: words.next()?.parse().ok()?,
                cas: None,
            },
            "HD" => Status::Done,
            "EN" => Status::Miss,
            "NF" => Status::NotFound,
            "NS" => Status::NotStored,
            "EX" => Status::Exists,
            _ => return None,
        };
        let (mut cas, mut opaque) = (None, None);
        for flag in words {
            match flag.split_at_checked(1) {
                Some(("c", n)) => cas = n.parse().ok(),
                Some(("O", n)) => opaque = n.parse().ok(),
                _ => {}
            }
        }
        let status = match status {
            Status::Value { len, .. } => Status::Value { len, cas },
            Status::Done if cas == Some(0) => Status::DoneWithoutCas,
            other => other,
        };
        Some(Line { status, opaque })
    }

    #[test]
    fn lines_read_as_bytes_agree_with_reading_them_as_text() {
        const STATUS: [&[u8]; 12] = [
            b"VA",
            b"HD",
            b"EN",
            b"NF",
            b"NS",
            b"EX",
            b"VA\xff",
            b"va",
            b"",
            b"V",
            b"SERVER_ERROR",
            b"\xc3\xa9",
        ];
        const NUMBERS: [&[u8]; 23] = [
            b"0",
            b"5",
            b"258",
            b"+5",
            b"+",
            b"++5",
            b"+-1",
            b"007",
            b"+0",
            b"-0",
            b"/",
            b"1:",
            b"99999999999999999999",
            b"-1",
            b"4294967295",
            b"4294967296",
            b"18446744073709551615",
            b"18446744073709551616",
            b"1\xff",
            b"\xd9\xa3",
            b"",
            b"1 ",
            b"0x1",
        ];
        const FLAGS: [&[u8]; 8] = [b"c", b"O", b"t", b"f", b"\xc3\xa9", b"\xc3", b"", b"b"];
        const SPACE: [&[u8]; 4] = [b" ", b" ", b"  ", b"\t"];
        let mut random = crate::fixed_random::FixedRandom::new(0x2545_F491_4F6C_DD1D);
        let mut pick = |n: usize| random.below(n);
        let (mut read, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let mut line = STATUS[pick(STATUS.len())].to_vec();
            for _ in 0..pick(5) {
                line.extend_from_slice(SPACE[pick(SPACE.len())]);
                if pick(3) > 0 {
                    line.extend_from_slice(FLAGS[pick(FLAGS.len())]);
                }
                line.extend_from_slice(NUMBERS[pick(NUMBERS.len())]);
            }
            match (Line::parse(&line), as_text(&line)) {
                (Ok(bytes), Some(text)) => {
                    assert_eq!(bytes, text, "{:?}", String::from_utf8_lossy(&line));
                    read += 1;
                }
                (Err(_), None) => refused += 1,
                // No answer to a command, but the failure of the one it comes for.
                (
                    Ok(Line {
                        status: Status::ServerError(_),
                        opaque: None,
                    }),
                    None,
                ) if line.starts_with(b"SERVER_ERROR") => refused += 1,
                (bytes, text) => panic!(
                    "{:?}: as bytes {bytes:?}, as text {text:?}",
                    String::from_utf8_lossy(&line)
                ),
            }
        }
        // Both kinds were tried, often.
        assert!(
            read > 5_000 && refused > 5_000,
            "{read} read, {refused} refused"
        );
    }

    #[test]
    fn error_lines_and_garbage_are_fatal() {
        for bad in [
            &b"ERROR"[..],
            b"CLIENT_ERROR invalid flag",
            b"SERVER_ERROR parsing request",
            b"VA x",
            b"VALUE k 0 1",
            b"",
            b"\xff\xfe",
        ] {
            assert!(Line::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// As in the text protocol: one request's failure, the connection kept.
    #[test]
    fn a_server_error_line_fails_its_request_alone() {
        for (line, says) in [
            (
                &b"SERVER_ERROR out of memory storing object"[..],
                "dropped the item",
            ),
            (b"SERVER_ERROR backend failure", "backend failure"),
        ] {
            let Ok(Line {
                status: Status::ServerError(why),
                opaque: None,
            }) = Line::parse(line)
            else {
                panic!("{line:?}");
            };
            assert!(why.contains(says), "{why}");
        }
    }
}
