//! The session layer's error, and the HTTP answer for each case.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::store::error::StoreError;

/// What went wrong with a session; each case maps to a clear HTTP answer, so `?` works in
/// handlers.
///
/// The response body is a fixed sentence per case: it never echoes a key, a package name
/// or the store's own error text. Those go to the log (`tracing`) when the response is
/// made: 5xx at level error, with the chain of causes; 403, 409 and 413 at info and 400 at
/// debug, with the error's own message.
///
/// | case | status |
/// |---|---|
/// | [`InvalidName`](Self::InvalidName), [`InvalidSessionId`](Self::InvalidSessionId), [`InvalidSessionHandle`](Self::InvalidSessionHandle) | 400 |
/// | [`Conflict`](Self::Conflict), [`Ended`](Self::Ended) | 409 |
/// | [`TooManySessions`](Self::TooManySessions) | 403 |
/// | [`TooLarge`](Self::TooLarge), store's [`StoreError::TooLarge`] | 413 |
/// | store's [`StoreError::InvalidConfig`] (a setting found not to work at request time) | 500 |
/// | other [`Store`](Self::Store) errors | 503, with `Retry-After` |
/// | [`SignedOut`](Self::SignedOut) | the status of the failure it wraps |
/// | the rest | 500 |
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A package name or key is empty, too long, or holds a control character, or a
    /// handler's package name starts with `actix-memcache-session.` (this crate's own).
    #[error("invalid session {what} {name:?}: {reason}")]
    InvalidName {
        /// `"package name"` or `"key"`.
        what: &'static str,
        /// The offending name (truncated).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value could not be turned into JSON.
    #[error("session value for key {key:?} cannot be stored as JSON")]
    Serialize {
        /// The key being written.
        key: String,
        /// The serializer's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A stored value does not have the type asked for.
    #[error("session value for key {key:?} does not have the requested type")]
    Deserialize {
        /// The key being read.
        key: String,
        /// The deserializer's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A [`TypedPackage`](crate::TypedPackage)'s type does not serialize to a JSON
    /// object, or the stored package does not fit it.
    #[error("session package {package:?} does not fit its declared type")]
    PackageType {
        /// The package.
        package: String,
        /// The serializer's or deserializer's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// The encoded session exceeds the configured size limit; nothing was written.
    #[error("session data is {size} bytes, over the {limit}-byte limit; nothing was saved")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A concurrent request changed a key this request changed too, or the commit's retry
    /// budget ran out merging with concurrent commits to other keys, or the session
    /// changed users (another user's login on it) since this request read it, or a user's
    /// roster kept changing under a login's compare-and-swap; nothing was written.
    #[error("session keys changed by a concurrent request; nothing was saved, retry")]
    Conflict,
    /// The session was ended (purged) or signed out since this request read it, or what
    /// the store holds for it no longer reads as a session; nothing was written (but see
    /// [`Session::sign_out_other_sessions`](crate::Session::sign_out_other_sessions) and
    /// [`Session::sign_out_everywhere`](crate::Session::sign_out_everywhere) after a key
    /// rotation).
    #[error("session ended by a concurrent request; nothing was saved")]
    Ended,
    /// A login was refused: the user already has as many sessions as
    /// [`max_sessions_per_user`](crate::MemcacheSessionBuilder::max_sessions_per_user)
    /// allows, with [`OverLimit::RefuseLogin`](crate::OverLimit::RefuseLogin). No session
    /// is left signed in: the user's item may have been made first, as any login makes it,
    /// and with fallback keys a login withdrawn after it listed itself removes its entry
    /// and its session again, best effort. The user can sign out one of them first.
    #[error("signed in on {limit} devices already, the most allowed: sign out of one first")]
    TooManySessions {
        /// The limit.
        limit: usize,
    },
    /// The store failed; says how, in the store's words.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The sign-out the request asked for (of every session of its user, of every other
    /// one, or of the sessions it named) happened, but the rest of its change failed: those
    /// sessions are signed out; nothing else was saved. Answers as the failure it wraps.
    #[error("the sign-out happened, but the rest of the change failed")]
    SignedOut(#[source] Box<SessionError>),
    /// No randomness from the operating system, for a new session id, a flash message's
    /// key, or a login's handle or generation.
    #[error("no randomness from the operating system")]
    Entropy(#[source] std::io::Error),
    /// Text that is not a session id, given to
    /// [`SessionId::from_str`](crate::SessionId).
    #[error("not a session id")]
    InvalidSessionId,
    /// Text that is not a session handle, given to
    /// [`SessionHandle::from_str`](crate::SessionHandle).
    #[error("not a session handle")]
    InvalidSessionHandle,
    /// [`Savepoint::rollback`](crate::Savepoint::rollback) on a savepoint that an earlier
    /// rollback discarded, or after the request's unit of work ended.
    #[error("the savepoint was discarded by a rollback to an earlier one, or the request ended")]
    InvalidSavepoint,
    /// `Session` was extracted in an app without the `MemcacheSession` middleware.
    #[error("the MemcacheSession middleware is not installed for this route")]
    MissingMiddleware,
}

/// Seconds a client should wait before retrying while the store is unavailable.
const RETRY_AFTER_SECS: &str = "1";

impl ResponseError for SessionError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::SignedOut(failure) => failure.status_code(),
            Self::InvalidName { .. } | Self::InvalidSessionId | Self::InvalidSessionHandle => {
                StatusCode::BAD_REQUEST
            }
            Self::Conflict | Self::Ended => StatusCode::CONFLICT,
            Self::TooManySessions { .. } => StatusCode::FORBIDDEN,
            Self::TooLarge { .. } | Self::Store(StoreError::TooLarge { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            // A setting that cannot work (a `Distribution` naming a server the fleet lacks):
            // retrying will not help, so not 503.
            Self::Store(StoreError::InvalidConfig(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %self, cause = %logged_causes(self), "session error");
        } else if status == StatusCode::BAD_REQUEST {
            tracing::debug!(error = %self, "session error");
        } else {
            tracing::info!(error = %self, "session error");
        }
        let mut res = HttpResponse::build(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            res.insert_header((
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            ));
        }
        res.content_type("text/plain; charset=utf-8")
            .body(self.public_message())
    }
}

impl SessionError {
    /// What the client is told: nothing it sent and nothing the store said.
    fn public_message(&self) -> String {
        let fixed = match self {
            Self::SignedOut(failure) => {
                return format!(
                    "the sign-out happened, but the rest was not saved: {}",
                    failure.public_message()
                )
            }
            Self::InvalidName { what, reason, .. } => {
                return format!("invalid session {what}: {reason}")
            }
            Self::Serialize { .. } => "a session value cannot be stored as JSON",
            Self::Deserialize { .. } => "a session value does not have the requested type",
            Self::PackageType { .. } => "a session package does not fit its declared type",
            Self::Store(StoreError::TooLarge { .. }) => {
                "session data exceeds the store's item limit; nothing was saved"
            }
            Self::Store(_) => "session store unavailable",
            Self::TooLarge { .. }
            | Self::Conflict
            | Self::Ended
            | Self::TooManySessions { .. }
            | Self::Entropy(_)
            | Self::InvalidSavepoint
            | Self::InvalidSessionId
            | Self::InvalidSessionHandle
            | Self::MissingMiddleware => return self.to_string(),
        };
        fixed.to_owned()
    }
}

/// The causes as the error log shows them: a value that did not read as the type asked is
/// described, not quoted.
fn logged_causes(error: &SessionError) -> String {
    match error {
        SessionError::Deserialize { source, .. } | SessionError::PackageType { source, .. } => {
            described(source)
        }
        _ => causes(error),
    }
}

/// A serde_json error for a log, without the value it quotes (a session holds tokens): its
/// kind and where.
pub(crate) fn described(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {} (the value is not logged)",
        e.classify(),
        e.line(),
        e.column()
    )
}

/// The chain of causes under an error, for logs: `"a: b: c"`.
pub(crate) fn causes(error: &dyn std::error::Error) -> String {
    let mut chain = Vec::new();
    let mut next = error.source();
    while let Some(cause) = next {
        chain.push(cause.to_string());
        next = cause.source();
    }
    chain.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_name_the_whole_chain_for_the_log() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = SessionError::Store(StoreError::Unavailable(Box::new(refused)));
        assert_eq!(e.to_string(), "session store unavailable");
        assert_eq!(causes(&e), "refused");
    }

    fn body(e: &SessionError) -> String {
        let body = e.error_response().into_body();
        let bytes = actix_web::body::to_bytes(body);
        let bytes = futures_util::FutureExt::now_or_never(bytes)
            .unwrap()
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn bodies_never_echo_keys_or_store_text() {
        let secret = "<script>steal()</script>";
        let json_error = serde_json::from_str::<u8>("x").unwrap_err();
        for e in [
            SessionError::InvalidName {
                what: "key",
                name: secret.into(),
                reason: "it contains a control character",
            },
            SessionError::Deserialize {
                key: secret.into(),
                source: json_error,
            },
            SessionError::Store(StoreError::Protocol(secret.into())),
            SessionError::Store(StoreError::Unsupported(secret.into())),
            SessionError::Store(StoreError::Unavailable(secret.into())),
            SessionError::SignedOut(Box::new(SessionError::Store(StoreError::Protocol(
                secret.into(),
            )))),
        ] {
            assert!(e.to_string().contains(secret) || causes(&e).contains(secret));
            let body = body(&e);
            assert!(!body.contains(secret), "{body}");
            assert!(!body.is_empty());
        }
    }

    #[test]
    fn store_outage_is_503_with_retry_after() {
        let e = SessionError::Store(StoreError::Unavailable("down".into()));
        let res = e.error_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers().get(header::RETRY_AFTER).unwrap(), "1");
        let too_large = SessionError::Store(StoreError::TooLarge { size: 9 });
        assert_eq!(too_large.status_code(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_described_in_the_log_not_quoted() {
        let mismatch = || serde_json::from_str::<u32>(r#""secret-token""#).unwrap_err();
        assert!(
            mismatch().to_string().contains("secret-token"),
            "serde quotes it"
        );
        for e in [
            SessionError::Deserialize {
                key: "k".into(),
                source: mismatch(),
            },
            SessionError::PackageType {
                package: "p".into(),
                source: mismatch(),
            },
        ] {
            let logged = logged_causes(&e);
            assert!(!logged.contains("secret-token"), "{logged}");
            assert!(logged.contains("Data error at line 1"), "{logged}");
        }
        let e = SessionError::Store(StoreError::Protocol("a reply out of step".into()));
        assert_eq!(logged_causes(&e), causes(&e));
    }

    #[test]
    fn a_setting_that_cannot_work_is_500_not_a_retry() {
        let e = SessionError::Store(StoreError::InvalidConfig("no server 3".into()));
        let res = e.error_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(res.headers().get(header::RETRY_AFTER).is_none());
    }
}
