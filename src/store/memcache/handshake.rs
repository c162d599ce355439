//! Which protocol a new connection speaks: what a server's answer to `version` (and, for
//! a server new enough for the meta protocol, to the meta no-op `mn`) proves. No I/O here;
//! the connection asks, this file decides.
//!
//! The version alone is not proof: through twemproxy `version` is answered by one of the
//! backends (a 1.6.18 says 1.6.18) while any meta command closes the connection, and with
//! that backend down it answers `SERVER_ERROR`. So a server is spoken to in meta only when
//! it names a version whose meta protocol is complete *and* answers `mn` with `MN`.

use super::protocol::{short, Protocol};

/// The oldest memcached whose meta protocol is complete for this client: 1.6.10 brought
/// `ms <key> <datalen>` and `HD`/`NS`/`EX`/`NF`, but until 1.6.18 a miss (`EN`) carries no
/// opaque token (a reply cannot be matched to its request), and on 1.6.10 to 1.6.12 a
/// conditional delete with the right CAS fails.
pub(crate) const META_SINCE: (u32, u32, u32) = (1, 6, 18);

/// What came of asking `mn`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Probe<'a> {
    /// This line (or what was read of one that is no reply).
    Answered(&'a [u8]),
    /// The server closed the connection.
    Closed,
    /// Nothing within the I/O timeout, the connection left open.
    Silent,
}

/// What the answer to `version` decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Speak this protocol; the reason, for the log.
    Speak(Protocol, String),
    /// Ask `mn`: meta if it answers `MN`, else the text protocol on a new connection (or,
    /// with the meta protocol configured, a refusal: see [`after_probe`]).
    ProbeMeta(String),
    /// This server cannot be used as configured; what to log and return.
    Refuse(String),
    /// The server is at its connection limit: unavailable for now, not misconfigured.
    Busy(String),
}

/// What memcached (every release here, `maxconns_fast` being the default) writes to a
/// connection past its limit (`-c`) before closing it.
const AT_LIMIT: &str = "ERROR Too many open connections";

/// Why a server that answered `text` (`said`, shortened) is unavailable for now, if it is
/// at its connection limit.
fn at_limit(text: &str, said: &str) -> Option<String> {
    let why = || format!("memcached is at its connection limit (-c): it answered {said:?}");
    text.starts_with(AT_LIMIT).then(why)
}

/// The version in a `VERSION <x.y.z>` line (missing parts read as 0), or `None` if the
/// line is not one.
fn version(line: &str) -> Option<(u32, u32, u32)> {
    let version = line.strip_prefix("VERSION ")?;
    let mut parts = version.split('.').map(|p| {
        let digits = p.bytes().take_while(u8::is_ascii_digit).count();
        p[..digits].parse::<u32>().unwrap_or(0)
    });
    Some((
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    ))
}

/// What to do after `configured` asked `version` and got `line` (without `\r\n`).
pub(crate) fn after_version(configured: Protocol, line: &[u8]) -> Next {
    let text = String::from_utf8_lossy(line);
    let said = short(&text);
    // memcached itself never answers `version` with an error: this is a proxy whose
    // backend for the key-less command is down. Its other backends may serve.
    let proxy_down = text.starts_with("SERVER_ERROR");
    if let Some(why) = at_limit(&text, &said) {
        return Next::Busy(why);
    }
    let Some(found) = version(&text) else {
        return match (configured, proxy_down) {
            (Protocol::Meta, true) => Next::Refuse(format!(
                "the proxy at this address answered {said:?} to `version`, so the meta \
                 protocol cannot be confirmed; leave the protocol to the default \
                 (Protocol::Auto) or set Protocol::Text"
            )),
            (_, true) => Next::Speak(
                Protocol::Text,
                format!("a proxy answered {said:?} to `version`: the text protocol"),
            ),
            (_, false) => Next::Refuse(format!(
                "the server at this address answered {said:?} to `version`; is it memcached?"
            )),
        };
    };
    let (a, b, c) = META_SINCE;
    let complete = found >= META_SINCE;
    let named = said.trim_start_matches("VERSION ");
    match configured {
        Protocol::Text => Next::Speak(
            Protocol::Text,
            format!("memcached {named}: the text protocol, as configured"),
        ),
        // Probed all the same: a proxy names its backend's version, and would close the
        // connection at every request; refused by name instead (`after_probe`).
        Protocol::Meta if complete => Next::ProbeMeta(format!(
            "memcached {named} answers the meta no-op: the meta protocol, as configured"
        )),
        Protocol::Meta => Next::Refuse(format!(
            "memcached {named} is too old for this client's meta protocol, which needs \
             {a}.{b}.{c} or later; upgrade memcached, or leave the protocol to the default \
             (Protocol::Auto), which speaks the text protocol to it"
        )),
        Protocol::Auto if complete => Next::ProbeMeta(format!(
            "memcached {named} answers the meta no-op: the meta protocol"
        )),
        Protocol::Auto => Next::Speak(
            Protocol::Text,
            format!(
                "memcached {named} is older than {a}.{b}.{c}, whose meta protocol is the \
                 first complete one: the text protocol"
            ),
        ),
    }
}

/// A key no session has, read to prove a server that closed the connection at `version`
/// twice serves the text protocol's other commands.
pub(crate) const READ_PROBE: &[u8] = b"gets actix-memcache-session.handshake\r\n";

/// What the answer to [`READ_PROBE`] decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AfterRead {
    /// Speak the text protocol (the reason, for the log); `out_of_step` when the answer
    /// was a value, whose data is still unread: on a new connection then.
    Text { why: String, out_of_step: bool },
    /// This server cannot be used as configured; what to log and return.
    Refuse(String),
    /// The server is at its connection limit: unavailable for now.
    Busy(String),
}

/// What to do when `version` closed the connection twice (once may be a memcached
/// restarting) and a read of [`READ_PROBE`] on a new one was answered `line`: a proxy
/// without the command (twemproxy before 0.5 closes the connection at any command it does
/// not know) answers it, and is spoken to in text. (Whatever closes the connection at the
/// read too is unavailable, not refused: a TCP forwarder whose memcached is restarting.)
pub(crate) fn after_read_probe(configured: Protocol, line: &[u8]) -> AfterRead {
    let text = String::from_utf8_lossy(line);
    let said = short(&text);
    if let Some(why) = at_limit(&text, &said) {
        return AfterRead::Busy(why);
    }
    let out_of_step = text.starts_with("VALUE ");
    if text != "END" && !out_of_step {
        return AfterRead::Refuse(format!(
            "the server at this address closed the connection at `version`, twice, and \
             answered {said:?} to a read; is it memcached?"
        ));
    }
    let why = "the server closed the connection at `version`, twice, and answers a read (a \
               proxy without the command, such as twemproxy before 0.5)";
    match configured {
        Protocol::Meta => AfterRead::Refuse(meta_refused(why, "confirmed")),
        _ => AfterRead::Text {
            why: format!("{why}: the text protocol"),
            out_of_step,
        },
    }
}

/// Why the meta protocol configured cannot be `done` ("spoken", "confirmed") with a server
/// that did `why`, and what to configure instead.
fn meta_refused(why: &str, done: &str) -> String {
    format!(
        "{why}, so the meta protocol configured (Protocol::Meta) cannot be {done}; leave the \
         protocol to the default (Protocol::Auto) or set Protocol::Text"
    )
}

/// What came of asking `mn` (`probe`) decides after [`Next::ProbeMeta`] for `configured`:
/// only `MN` is the meta protocol. `Err` is the text protocol (on a new
/// connection: whatever answered may not be in step), or, where the meta protocol is
/// configured, a refusal, each saying why.
pub(crate) fn after_probe(configured: Protocol, probe: Probe<'_>) -> Result<(), Next> {
    let answered = match probe {
        Probe::Answered(b"MN") => return Ok(()),
        Probe::Answered(other) => format!(
            "answered {:?} to the meta no-op (a proxy)",
            short(&String::from_utf8_lossy(other))
        ),
        Probe::Closed => {
            "closed the connection at the meta no-op (a proxy, such as twemproxy)".to_owned()
        }
        Probe::Silent => "did not answer the meta no-op in time (a proxy)".to_owned(),
    };
    let why = format!("the server names a version with the meta protocol but {answered}");
    Err(match configured {
        Protocol::Meta => Next::Refuse(meta_refused(&why, "spoken")),
        _ => Next::Speak(Protocol::Text, format!("{why}: the text protocol")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speaks(configured: Protocol, line: &[u8]) -> Protocol {
        match after_version(configured, line) {
            Next::Speak(protocol, _) => protocol,
            Next::ProbeMeta(_) => Protocol::Meta,
            other => panic!("{configured:?} did not take {line:?}: {other:?}"),
        }
    }

    fn refused(configured: Protocol, line: &[u8]) -> String {
        match after_version(configured, line) {
            Next::Refuse(why) => why,
            other => panic!("{configured:?} took {line:?}: {other:?}"),
        }
    }

    #[test]
    fn by_default_meta_is_probed_from_1_6_18_and_text_spoken_before() {
        for new in [
            "VERSION 1.6.18",
            "VERSION 1.6.45",
            "VERSION 1.10.0",
            "VERSION 2.0.0-rc1",
        ] {
            assert!(
                matches!(
                    after_version(Protocol::Auto, new.as_bytes()),
                    Next::ProbeMeta(_)
                ),
                "{new}"
            );
        }
        for old in [
            "VERSION 1.6.17",
            "VERSION 1.6.10",
            "VERSION 1.6.9",
            "VERSION 1.5.22",
        ] {
            assert_eq!(
                speaks(Protocol::Auto, old.as_bytes()),
                Protocol::Text,
                "{old}"
            );
        }
    }

    #[test]
    fn a_proxy_whose_backend_is_down_is_spoken_to_in_text() {
        let line = b"SERVER_ERROR Connection refused";
        assert_eq!(speaks(Protocol::Auto, line), Protocol::Text);
        assert_eq!(speaks(Protocol::Text, line), Protocol::Text);
        assert!(refused(Protocol::Meta, line).contains("Protocol::Text"));
    }

    #[test]
    fn a_forced_protocol_is_kept_or_refused_by_name() {
        assert_eq!(speaks(Protocol::Text, b"VERSION 1.6.45"), Protocol::Text);
        assert!(matches!(
            after_version(Protocol::Meta, b"VERSION 1.6.18"),
            Next::ProbeMeta(_)
        ));
        let old = refused(Protocol::Meta, b"VERSION 1.6.14");
        assert!(old.contains("1.6.14") && old.contains("1.6.18"), "{old}");
        assert!(
            old.contains("Protocol::Auto"),
            "points at the default: {old}"
        );
    }

    #[test]
    fn what_is_not_memcached_is_refused() {
        for configured in [Protocol::Auto, Protocol::Meta, Protocol::Text] {
            for line in [&b"ERROR"[..], b"", b"HTTP/1.1 400 Bad Request", b"\xff\xfe"] {
                assert!(
                    refused(configured, line).contains("is it memcached"),
                    "{configured:?} {line:?}"
                );
            }
        }
    }

    /// memcached past its connection limit answers any first command so, then closes: the
    /// server is busy, not something other than memcached.
    #[test]
    fn a_server_at_its_connection_limit_is_busy() {
        for configured in [Protocol::Auto, Protocol::Meta, Protocol::Text] {
            match after_version(configured, b"ERROR Too many open connections") {
                Next::Busy(why) => assert!(why.contains("-c"), "{why}"),
                other => panic!("{configured:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn only_mn_proves_the_meta_protocol() {
        let text = |probe| match after_probe(Protocol::Auto, probe) {
            Err(Next::Speak(Protocol::Text, why)) => why,
            other => panic!("{probe:?}: {other:?}"),
        };
        assert!(after_probe(Protocol::Auto, Probe::Answered(b"MN")).is_ok());
        assert!(after_probe(Protocol::Meta, Probe::Answered(b"MN")).is_ok());
        assert!(text(Probe::Answered(b"ERROR")).contains("ERROR"));
        assert!(text(Probe::Answered(b"MN O1")).contains("MN… (5 bytes)"));
        assert!(text(Probe::Closed).contains("closed"));
        assert!(text(Probe::Silent).contains("in time"));
    }

    /// Where the meta protocol is configured, a proxy that names a meta-capable version is
    /// refused by name, not spoken to in meta (which would close the connection at every
    /// request).
    #[test]
    fn a_failed_probe_of_a_forced_meta_protocol_is_refused_by_name() {
        for probe in [Probe::Closed, Probe::Answered(b"ERROR")] {
            match after_probe(Protocol::Meta, probe) {
                Err(Next::Refuse(why)) => assert!(
                    why.contains("Protocol::Meta") && why.contains("Protocol::Auto"),
                    "{why}"
                ),
                other => panic!("{probe:?}: {other:?}"),
            }
        }
    }
}
