//! memcached's meta protocol: how a request is written, and how a reply line reads. No
//! I/O here; the vocabulary both protocols share is in `protocol`, the text protocol in
//! `text`.
//!
//! - `mg <key> v c` reads a value and its CAS token: `VA <len> c<cas>` + data, or `EN`.
//! - `ms <key> <len> T<ttl> ME` adds: `HD`, or `NS` when the key exists.
//! - `ms <key> <len> T<ttl> C<cas>` compare-and-swaps: `HD`, `EX` (stale), `NF` (missing).
//! - `mg <key> T<ttl>` touches: `HD`, or `EN`.
//! - `md <key> [C<cas>]` deletes (if the CAS token matches): `HD`, `EX`, or `NF`.
//!
//! Every command carries an opaque token `O<n>` that memcached echoes in its reply, so a
//! reply is only ever handed to the request it answers. Error lines carry no token: after
//! one, nobody can know how many lines are still coming, so they end the connection.

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
            out.extend_from_slice(b" ME");
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

/// One reply line: its status and the opaque token it echoed (`None` only for
/// [`Status::TooLarge`], an error line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) status: Status,
    pub(crate) opaque: Option<u32>,
}

impl Line {
    /// Parses one reply line, without its `\r\n`.
    pub(crate) fn parse(line: &[u8]) -> Result<Self, Fatal> {
        let text = String::from_utf8_lossy(line);
        let mut words = text.split(' ');
        let status = match words.next().unwrap_or_default() {
            "VA" => {
                let Some(len) = words.next().and_then(|w| w.parse().ok()) else {
                    return Err(Fatal(format!(
                        "malformed memcached reply {:?}",
                        short(&text)
                    )));
                };
                Status::Value { len, cas: None }
            }
            "HD" => Status::Done,
            "EN" => Status::Miss,
            "NF" => Status::NotFound,
            "NS" => Status::NotStored,
            "EX" => Status::Exists,
            "SERVER_ERROR" if text.contains("too large") => {
                return Ok(Self {
                    status: Status::TooLarge,
                    opaque: None,
                })
            }
            "SERVER_ERROR" if text.contains("out of memory") => {
                return Err(Fatal(format!(
                    "memcached is out of memory ({:?}); it has dropped the item stored under \
                     that key",
                    short(&text)
                )))
            }
            "ERROR" | "CLIENT_ERROR" | "SERVER_ERROR" => {
                return Err(Fatal(format!("memcached error {:?}", short(&text))))
            }
            _ => {
                return Err(Fatal(format!(
                    "unexpected memcached reply {:?}",
                    short(&text)
                )))
            }
        };
        let mut cas = None;
        let mut opaque = None;
        for flag in words {
            match flag.split_at_checked(1) {
                Some(("c", n)) => cas = n.parse().ok(),
                Some(("O", n)) => opaque = n.parse().ok(),
                _ => {}
            }
        }
        let status = match status {
            Status::Value { len, .. } => Status::Value { len, cas },
            other => other,
        };
        Ok(Self { status, opaque })
    }
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
            text(&Request::add("k", b"xy", secs, 0), 2),
            "ms k 2 T60 ME O2\r\nxy\r\n"
        );
        assert_eq!(
            text(&Request::cas("k", b"xy", 77, secs, 0), 3),
            "ms k 2 T60 C77 O3\r\nxy\r\n"
        );
        assert_eq!(text(&Request::touch("k", secs, 0), 4), "mg k T60 O4\r\n");
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

    #[test]
    fn error_lines_and_garbage_are_fatal() {
        for bad in [
            &b"ERROR"[..],
            b"CLIENT_ERROR invalid flag",
            b"SERVER_ERROR temporary failure",
            b"VA x",
            b"VALUE k 0 1",
            b"",
            b"\xff\xfe",
        ] {
            assert!(Line::parse(bad).is_err(), "{bad:?}");
        }
        let oom = Line::parse(b"SERVER_ERROR out of memory storing object").unwrap_err();
        assert!(oom.0.contains("dropped the item"), "{}", oom.0);
    }
}
