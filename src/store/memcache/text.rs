//! memcached's classic text protocol, for what does not speak meta: twemproxy and mcrouter,
//! and memcached before 1.6.18. No I/O here.
//!
//! - `gets <key>` reads: `VALUE <key> <flags> <len> <cas>` + data + `END`, or `END`.
//! - `add <key> 0 <exptime> <len>` adds: `STORED`, or `NOT_STORED` when the key exists.
//! - `cas <key> 0 <exptime> <len> <cas>` compare-and-swaps: `STORED`, `EXISTS`, `NOT_FOUND`.
//! - `touch <key> <exptime>`: `TOUCHED`, or `NOT_FOUND`.
//! - `delete <key>`: `DELETED`, or `NOT_FOUND`.
//! - There is no conditional delete: it is a compare-and-swap to an empty item that has
//!   expired already (`EXPIRED`), one command, so nothing removes an item added since.
//!
//! Replies carry no token, so each is checked against the command it answers: only the
//! words that command can get are accepted, and a `VALUE` line must name the key asked
//! for. A `SERVER_ERROR` line fails its own request only (see [`Status::ServerError`]),
//! but for those that say replies are missing or one too many; anything else ends the
//! connection.

use std::io::Write as _;

use super::protocol::{short, Fatal, Op, Request, Status, EXPIRED};

/// Appends `request` to `out`.
pub(crate) fn write(request: &Request<'_>, out: &mut Vec<u8>) {
    let (key, exp) = (request.key, request.exptime);
    let len = request.data.map_or(0, <[u8]>::len);
    // Writing to a Vec cannot fail.
    let _ = match request.op {
        Op::Get | Op::Exists => write!(out, "gets {key}\r\n"),
        Op::Add => write!(out, "add {key} 0 {exp} {len}\r\n"),
        Op::Cas(cas) => write!(out, "cas {key} 0 {exp} {len} {cas}\r\n"),
        Op::Touch => write!(out, "touch {key} {exp}\r\n"),
        Op::Delete => write!(out, "delete {key}\r\n"),
        // Swapped for an empty item that has expired already: gone at once.
        Op::DeleteIf(cas) => write!(out, "cas {key} 0 {EXPIRED} 0 {cas}\r\n"),
    };
    match request.data {
        Some(data) => out.extend_from_slice(data),
        None if matches!(request.op, Op::DeleteIf(_)) => {}
        None => return,
    }
    out.extend_from_slice(b"\r\n");
}

/// Parses the first line of the reply to `op` on `key`, without its `\r\n`. A `VALUE`
/// reply is followed by its data and an `END` line, which the caller reads.
pub(crate) fn parse(line: &[u8], op: Op, key: &str) -> Result<Status, Fatal> {
    let text = String::from_utf8_lossy(line);
    let unexpected = || {
        Fatal(format!(
            "unexpected memcached reply {:?} to {op:?}",
            short(&text)
        ))
    };
    let mut words = text.split(' ');
    let first = words.next().unwrap_or_default();
    let status = match (op, first) {
        (Op::Get | Op::Exists, "VALUE") => return value(&mut words, key).ok_or_else(unexpected),
        (Op::Get | Op::Exists, "END") => Status::Miss,
        (Op::Add | Op::Cas(_) | Op::DeleteIf(_), "STORED") => Status::Done,
        (Op::Add, "NOT_STORED") => Status::NotStored,
        (Op::Cas(_) | Op::DeleteIf(_), "EXISTS") => Status::Exists,
        (Op::Cas(_) | Op::DeleteIf(_) | Op::Delete, "NOT_FOUND") => Status::NotFound,
        (Op::Touch, "TOUCHED") | (Op::Delete, "DELETED") => Status::Done,
        (Op::Touch, "NOT_FOUND") => Status::Miss,
        (Op::Add | Op::Cas(_), "SERVER_ERROR") if text.contains("too large") => {
            return Ok(Status::TooLarge)
        }
        // Only a set is refused for its size: to anything else it answers another request,
        // and the connection is out of step.
        (_, "SERVER_ERROR") if text.contains("too large") => return Err(unexpected()),
        (Op::Get | Op::Exists | Op::Touch | Op::Delete, "SERVER_ERROR")
            if text.contains("storing") =>
        {
            return Err(unexpected())
        }
        // memcached sends it when a `gets` cannot read an item back from extstore, and
        // drops the replies still queued for earlier commands: replies are missing, and
        // nobody can know which.
        (_, "SERVER_ERROR") if text.contains("writing get response") => {
            return Err(Fatal(format!(
                "memcached dropped replies ({:?})",
                short(&text)
            )))
        }
        // memcached's own proxy on 1.6.18 and 1.6.19, when it could not read a write's
        // data, reads that data as a command and answers this for it: a line more than
        // the commands sent, which would shift every later answer onto the wrong command.
        (_, "SERVER_ERROR") if text.contains("parsing request") => {
            return Err(Fatal(format!("memcached error {:?}", short(&text))))
        }
        (_, "SERVER_ERROR") if text.contains("out of memory") => {
            return Ok(Status::ServerError(format!(
                "memcached is out of memory ({:?})",
                short(&text)
            )))
        }
        // One line that fails this request only: a proxy (twemproxy) answers so for a key
        // whose backend is down, in order within a pipelined batch, and keeps the
        // connection.
        (_, "SERVER_ERROR") => {
            return Ok(Status::ServerError(format!(
                "memcached (or the proxy in front of it) answered {:?}",
                short(&text)
            )))
        }
        // Real memcached may follow these with a stray line (a data block read as a
        // command): nobody can know how many lines are still coming.
        (_, "ERROR" | "CLIENT_ERROR") => {
            return Err(Fatal(format!("memcached error {:?}", short(&text))))
        }
        _ => return Err(unexpected()),
    };
    if words.next().is_some() {
        return Err(unexpected());
    }
    Ok(status)
}

/// The rest of `VALUE <key> <flags> <len> <cas>`, if it names `key` and is well formed.
fn value<'a>(words: &mut impl Iterator<Item = &'a str>, key: &str) -> Option<Status> {
    if words.next()? != key {
        return None;
    }
    let _flags: u32 = words.next()?.parse().ok()?;
    let len = words.next()?.parse().ok()?;
    let cas = words.next()?.parse().ok()?;
    if words.next().is_some() {
        return None;
    }
    Some(Status::Value {
        len,
        cas: Some(cas),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn written(r: &Request<'_>) -> String {
        let mut out = Vec::new();
        write(r, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn requests_are_text_commands() {
        let secs = Duration::from_secs(60);
        assert_eq!(written(&Request::get("s:a")), "gets s:a\r\n");
        assert_eq!(written(&Request::exists("s:a")), "gets s:a\r\n");
        assert_eq!(
            written(&Request::add("k", b"xy", secs, || 0).unwrap()),
            "add k 0 60 2\r\nxy\r\n"
        );
        assert_eq!(
            written(&Request::cas("k", b"xy", 77, secs, || 0).unwrap()),
            "cas k 0 60 2 77\r\nxy\r\n"
        );
        assert_eq!(
            written(&Request::touch("k", secs, || 0).unwrap()),
            "touch k 60\r\n"
        );
        assert_eq!(written(&Request::delete("k")), "delete k\r\n");
        assert_eq!(
            written(&Request::delete_if("k", 9)),
            "cas k 0 2592001 0 9\r\n\r\n",
            "an empty item that has expired already"
        );
    }

    #[test]
    fn replies_parse_for_the_command_they_answer() {
        let ok = |line: &[u8], op| parse(line, op, "k").unwrap();
        assert_eq!(
            ok(b"VALUE k 0 5 123", Op::Get),
            Status::Value {
                len: 5,
                cas: Some(123)
            }
        );
        assert_eq!(ok(b"END", Op::Get), Status::Miss);
        assert_eq!(ok(b"STORED", Op::Add), Status::Done);
        assert_eq!(ok(b"NOT_STORED", Op::Add), Status::NotStored);
        assert_eq!(ok(b"EXISTS", Op::Cas(1)), Status::Exists);
        assert_eq!(ok(b"NOT_FOUND", Op::Cas(1)), Status::NotFound);
        assert_eq!(ok(b"STORED", Op::DeleteIf(1)), Status::Done);
        assert_eq!(ok(b"TOUCHED", Op::Touch), Status::Done);
        assert_eq!(ok(b"NOT_FOUND", Op::Touch), Status::Miss);
        assert_eq!(ok(b"DELETED", Op::Delete), Status::Done);
        assert_eq!(ok(b"NOT_FOUND", Op::Delete), Status::NotFound);
        assert_eq!(
            ok(b"SERVER_ERROR object too large for cache", Op::Cas(1)),
            Status::TooLarge
        );
    }

    /// A reply another command would get, another key's value, a malformed or absurd
    /// `VALUE` line, or an error line: the connection is out of step, or the server is not
    /// one to trust.
    #[test]
    fn replies_that_do_not_fit_their_command_are_fatal() {
        for (line, op) in [
            (&b"VALUE other 0 5 1"[..], Op::Get),
            (b"VALUE k 0 5", Op::Get),
            (b"VALUE k 0 -5 1", Op::Get),
            (b"VALUE k 0 18446744073709551616 1", Op::Get),
            (b"VALUE k x 5 1", Op::Get),
            (b"VALUE k 0 5 1 extra", Op::Get),
            (b"STORED", Op::Get),
            (b"DELETED", Op::Cas(1)),
            (b"END", Op::Delete),
            (b"TOUCHED", Op::Add),
            (b"NOT_STORED", Op::Cas(1)),
            (b"STORED extra", Op::Add),
            (b"SERVER_ERROR object too large for cache", Op::Get),
            (b"SERVER_ERROR object too large for cache", Op::Delete),
            (b"SERVER_ERROR out of memory storing object", Op::Get),
            (b"SERVER_ERROR out of memory storing object", Op::Touch),
            // Any command's: the replies before it were dropped with it.
            (b"SERVER_ERROR out of memory writing get response", Op::Get),
            (
                b"SERVER_ERROR out of memory writing get response",
                Op::Cas(1),
            ),
            (
                b"SERVER_ERROR out of memory writing get response",
                Op::DeleteIf(1),
            ),
            (b"SERVER_ERROR out of memory writing get response", Op::Add),
            (b"SERVER_ERROR parsing request", Op::Cas(1)),
            (b"SERVER_ERROR parsing request", Op::Get),
            (
                b"SERVER_ERROR out of memory writing get response",
                Op::Touch,
            ),
            (b"ERROR", Op::Touch),
            (b"CLIENT_ERROR bad data chunk", Op::Add),
            (b"", Op::Get),
            (b"\xff\xfe", Op::Delete),
        ] {
            assert!(parse(line, op, "k").is_err(), "{line:?} to {op:?}");
        }
    }

    /// A proxy's `SERVER_ERROR` for a key whose backend is down is one line for one
    /// request: that request fails, and the connection stays.
    #[test]
    fn a_server_error_fails_its_request_only() {
        for op in [
            Op::Get,
            Op::Add,
            Op::Cas(1),
            Op::Touch,
            Op::Delete,
            Op::DeleteIf(1),
        ] {
            let Ok(Status::ServerError(why)) = parse(b"SERVER_ERROR Connection refused", op, "k")
            else {
                panic!("{op:?}")
            };
            assert!(why.contains("Connection refused"), "{why}");
        }
        let oom = parse(b"SERVER_ERROR out of memory storing object", Op::Add, "k");
        let Ok(Status::ServerError(why)) = oom else {
            panic!("{oom:?}")
        };
        assert!(why.contains("out of memory"), "{why}");
    }
}
