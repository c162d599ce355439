//! Flash messages: a message set for the next request ("Saved", "Wrong password") and
//! shown once, consumed only when the request that shows it commits.
//!
//! Kept in the package `actix-memcache-session.flash`, one key per message (its send time
//! and a random suffix), so that a request sending a message and another showing older
//! ones change different keys and both land through the per-key merge.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::extractor::Session;
use crate::clock::now_micros;
use crate::error::{described, SessionError};

/// The package flash messages are kept in.
const PACKAGE: &str = "actix-memcache-session.flash";
/// Hex digits of the send time (microseconds) at the start of a message's key.
const TIME_DIGITS: usize = 16;
/// Unread messages a session keeps: sending one more drops the oldest, so a loop that
/// sends without a page that shows them cannot grow the session without bound.
pub(crate) const MAX_UNREAD: usize = 32;

/// How important a [`FlashMessage`] is, least first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Level {
    /// For developers.
    Debug,
    /// Informative.
    Info,
    /// Something the user did worked.
    Success,
    /// Worth the user's attention.
    Warning,
    /// Something the user did failed.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Success => "success",
            Self::Warning => "warning",
            Self::Error => "error",
        })
    }
}

/// A message for the user's next request; see [`Session::send_flash`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlashMessage {
    level: Level,
    content: String,
}

impl FlashMessage {
    /// A message of `level`.
    pub fn new(level: Level, content: impl Into<String>) -> Self {
        Self {
            level,
            content: content.into(),
        }
    }

    /// A [`Level::Debug`] message.
    pub fn debug(content: impl Into<String>) -> Self {
        Self::new(Level::Debug, content)
    }

    /// A [`Level::Info`] message.
    pub fn info(content: impl Into<String>) -> Self {
        Self::new(Level::Info, content)
    }

    /// A [`Level::Success`] message.
    pub fn success(content: impl Into<String>) -> Self {
        Self::new(Level::Success, content)
    }

    /// A [`Level::Warning`] message.
    pub fn warning(content: impl Into<String>) -> Self {
        Self::new(Level::Warning, content)
    }

    /// A [`Level::Error`] message.
    pub fn error(content: impl Into<String>) -> Self {
        Self::new(Level::Error, content)
    }

    /// The message's level.
    pub fn level(&self) -> Level {
        self.level
    }

    /// The message's text.
    pub fn content(&self) -> &str {
        &self.content
    }
}

impl Session {
    /// Keeps `message` for a later request to show with
    /// [`incoming_flashes`](Self::incoming_flashes); like any change, it is stored only if
    /// this request commits. A session keeps at most 32 unread messages: sending one more
    /// drops the oldest (requests sending at once each trim what they loaded, so together
    /// they may leave a few more, until the next send trims them).
    ///
    /// ```
    /// use actix_memcache_session::{FlashMessage, Session};
    /// use actix_web::{http::header, HttpResponse};
    ///
    /// async fn save(session: Session) -> actix_web::Result<HttpResponse> {
    ///     session.package("profile").insert("name", "Ada")?;
    ///     session.send_flash(FlashMessage::success("Saved"))?;
    ///     Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, "/")).finish())
    /// }
    ///
    /// async fn show(session: Session) -> actix_web::Result<String> {
    ///     let shown: Vec<String> = session
    ///         .incoming_flashes()?
    ///         .iter()
    ///         .map(|m| format!("{}: {}", m.level(), m.content()))
    ///         .collect();
    ///     Ok(shown.join("\n"))
    /// }
    /// ```
    ///
    /// # Errors
    /// [`SessionError::Entropy`] when the operating system has no randomness for the
    /// message's key.
    pub fn send_flash(&self, message: FlashMessage) -> Result<(), SessionError> {
        let package = self.own_package(PACKAGE);
        // First, so that an error changes nothing.
        let mut suffix = [0u8; 4];
        getrandom::getrandom(&mut suffix).map_err(|e| SessionError::Entropy(e.into()))?;
        // Keys sort in send order: after every message already there, even one sent in
        // the same microsecond or before the clock stepped back.
        let mut keys = package.keys()?;
        keys.sort_unstable();
        let last = keys.iter().filter_map(|key| sent_at(key)).max();
        // The oldest go, blindly: a request showing them concurrently removes them too.
        let over = (keys.len() + 1).saturating_sub(MAX_UNREAD);
        for oldest in &keys[..over] {
            self.tx.borrow_mut().data.put_blind(PACKAGE, oldest, None);
        }
        let at = now_micros().max(last.map_or(0, |last| last.saturating_add(1)));
        let key = format!("{at:016x}-{:08x}", u32::from_be_bytes(suffix));
        package.insert(&key, message)
    }

    /// The messages earlier requests sent, oldest first. They are removed from the session
    /// if this request commits, so an error page (or a request that aborts) leaves them for
    /// the next one. Messages this request sent are not among them. Calling it again in the
    /// same request returns the same messages; a stored message this release cannot read
    /// is dropped with a warning.
    ///
    /// # Errors
    /// Never in practice: the package name is valid.
    pub fn incoming_flashes(&self) -> Result<Vec<FlashMessage>, SessionError> {
        let entries = self.own_package(PACKAGE).take_loaded()?;
        Ok(entries.into_iter().filter_map(readable).collect())
    }
}

fn readable((key, value): (String, Value)) -> Option<FlashMessage> {
    FlashMessage::deserialize(value)
        .inspect_err(|e| {
            tracing::warn!(key, error = %described(e), "unreadable flash message dropped");
        })
        .ok()
}

/// When the message under `key` was sent, in microseconds.
fn sent_at(key: &str) -> Option<u64> {
    u64::from_str_radix(key.get(..TIME_DIGITS)?, 16).ok()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::unit_of_work::{Record, SessionData, Transaction};

    /// The contents of the messages stored, in key order.
    fn stored(session: &Session) -> Vec<String> {
        let package = session.own_package(PACKAGE);
        let keys = package.keys().unwrap();
        let message = |key: &String| package.get::<FlashMessage>(key).unwrap().unwrap();
        keys.iter().map(|key| message(key).content).collect()
    }

    #[test]
    fn keys_sort_in_send_order_even_behind_a_clock_that_stepped_back() {
        let mut record = Record::new(0);
        let ahead = now_micros() + 3_600_000_000;
        let message = serde_json::to_value(FlashMessage::info("from the future")).unwrap();
        record.put(PACKAGE, &format!("{ahead:016x}-00000000"), Some(message));
        let session = Session::new(Rc::new(RefCell::new(Transaction::new(SessionData::with(
            record,
        )))));
        for n in 0..5 {
            session
                .send_flash(FlashMessage::info(n.to_string()))
                .unwrap();
        }
        assert_eq!(
            stored(&session),
            ["from the future", "0", "1", "2", "3", "4"]
        );
        let incoming = session.incoming_flashes().unwrap();
        assert_eq!(incoming, [FlashMessage::info("from the future")]);
    }

    #[test]
    fn unreadable_messages_are_dropped_and_consumed() {
        let mut record = Record::new(0);
        record.put(
            PACKAGE,
            "0000000000000001-0",
            Some(Value::from("not a message")),
        );
        let ok = serde_json::to_value(FlashMessage::error("kept")).unwrap();
        record.put(PACKAGE, "0000000000000002-0", Some(ok));
        let session = Session::new(Rc::new(RefCell::new(Transaction::new(SessionData::with(
            record,
        )))));
        assert_eq!(
            session.incoming_flashes().unwrap(),
            [FlashMessage::error("kept")]
        );
        assert!(session.own_package(PACKAGE).keys().unwrap().is_empty());
    }

    /// A stored key is logged as a string field, which a log formatter quotes and escapes:
    /// a server's bytes cannot forge log lines through it.
    #[test]
    fn an_unreadable_messages_key_is_logged_as_a_string() {
        use std::sync::{Arc, Mutex};
        use tracing_core::field::{Field, Visit};
        use tracing_core::span::{Attributes, Id, Record as Values};
        use tracing_core::{Event, Metadata, Subscriber};

        #[derive(Clone, Default)]
        struct Keys(Arc<Mutex<Vec<String>>>);
        impl Visit for Keys {
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "key" {
                    self.0.lock().unwrap().push(format!("str {value}"));
                }
            }
            fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
                if field.name() == "key" {
                    self.0.lock().unwrap().push(format!("debug {value:?}"));
                }
            }
        }
        impl Subscriber for Keys {
            fn enabled(&self, _: &Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &Attributes<'_>) -> Id {
                Id::from_u64(1)
            }
            fn record(&self, _: &Id, _: &Values<'_>) {}
            fn record_follows_from(&self, _: &Id, _: &Id) {}
            fn event(&self, event: &Event<'_>) {
                event.record(&mut self.clone());
            }
            fn enter(&self, _: &Id) {}
            fn exit(&self, _: &Id) {}
        }

        let stored =
            format!(r#"{{"v":1,"created":0,"packages":{{"{PACKAGE}":{{"x\nforged":1e400}}}}}}"#);
        let record = Record::decode(stored.into_bytes()).unwrap();
        let session = Session::new(Rc::new(RefCell::new(Transaction::new(SessionData::with(
            record,
        )))));
        let keys = Keys::default();
        // With a second dispatcher alive, tracing asks this thread's subscriber rather than
        // cache "never" from another test's thread (tokio-rs/tracing#3611; see
        // docs/observability.md).
        let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
        tracing::subscriber::with_default(keys.clone(), || {
            assert!(session.incoming_flashes().unwrap().is_empty());
        });
        assert_eq!(*keys.0.lock().unwrap(), ["str x\nforged"]);
    }

    /// Sending past the cap drops the oldest unread messages, keeping the newest in order.
    #[test]
    fn unread_messages_are_capped_oldest_dropped() {
        let session = Session::new(Rc::new(RefCell::new(
            Transaction::new(SessionData::fresh()),
        )));
        for n in 0..MAX_UNREAD + 8 {
            session
                .send_flash(FlashMessage::info(n.to_string()))
                .unwrap();
        }
        let newest: Vec<String> = (8..MAX_UNREAD + 8).map(|n| n.to_string()).collect();
        assert_eq!(stored(&session), newest);
    }

    #[test]
    fn levels_are_stored_by_name() {
        let stored = serde_json::to_string(&FlashMessage::warning("w")).unwrap();
        assert_eq!(stored, r#"{"level":"warning","content":"w"}"#);
        assert_eq!(Level::Success.to_string(), "success");
        assert!(Level::Debug < Level::Error);
    }
}
