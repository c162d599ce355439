//! The session layer's error, and the HTTP answer for each case.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::store::StoreError;

/// What went wrong with a session; each case maps to a clear HTTP answer, so `?` works in
/// handlers.
///
/// | case | status |
/// |---|---|
/// | [`InvalidName`](Self::InvalidName) | 400 |
/// | [`Conflict`](Self::Conflict), [`Ended`](Self::Ended) | 409 |
/// | [`TooLarge`](Self::TooLarge), store's [`StoreError::TooLarge`] | 413 |
/// | other [`Store`](Self::Store) errors | 503, with `Retry-After` |
/// | the rest | 500 |
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A package name or key is empty, too long, or holds a control character.
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
    /// The encoded session exceeds the configured size limit; nothing was written.
    #[error("session data is {size} bytes, over the {limit}-byte limit; nothing was saved")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A concurrent request changed a key this request changed too; nothing was written.
    #[error("session keys changed by a concurrent request; nothing was saved, retry")]
    Conflict,
    /// A concurrent request ended (purged) the session; nothing was written.
    #[error("session ended by a concurrent request; nothing was saved")]
    Ended,
    /// The store failed; says how, in the store's words.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No randomness for a new session id.
    #[error("cannot generate a session id")]
    Entropy(#[source] std::io::Error),
    /// `Session` was extracted in an app without the `MemcacheSession` middleware.
    #[error("the MemcacheSession middleware is not installed for this route")]
    MissingMiddleware,
}

/// Seconds a client should wait before retrying while the store is unavailable.
const RETRY_AFTER_SECS: &str = "1";

impl ResponseError for SessionError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidName { .. } => StatusCode::BAD_REQUEST,
            Self::Conflict | Self::Ended => StatusCode::CONFLICT,
            Self::TooLarge { .. } | Self::Store(StoreError::TooLarge { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut res = HttpResponse::build(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            res.insert_header((
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            ));
        }
        res.content_type("text/plain; charset=utf-8")
            .body(self.to_string())
    }
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

    #[test]
    fn store_outage_is_503_with_retry_after() {
        let e = SessionError::Store(StoreError::Unavailable("down".into()));
        let res = e.error_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers().get(header::RETRY_AFTER).unwrap(), "1");
        let too_large = SessionError::Store(StoreError::TooLarge { size: 9 });
        assert_eq!(too_large.status_code(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
