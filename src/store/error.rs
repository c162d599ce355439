//! The store layer's error.

use std::error::Error;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached or did not answer in time.
    #[error("session store unavailable")]
    Unavailable(#[source] Box<dyn Error + Send + Sync>),
    /// The store refuses an item this large; nothing was written.
    #[error("session data of {size} bytes exceeds the store's item limit")]
    TooLarge {
        /// Bytes that were to be written; from [`load`](crate::SessionStore::load), the
        /// stored item's full length (never more: the middleware trusts it to tell a user
        /// item that no instance reads as one from one that another may).
        size: usize,
    },
    /// A setting the store refuses: at build (a bad URL, key prefix, pool size, timeout,
    /// weight, item size or failure limit), or found at request time (a `Distribution`
    /// naming a server the fleet does not have).
    #[error("invalid session store configuration: {0}")]
    InvalidConfig(String),
    /// The store answered something this crate does not understand.
    #[error("session store protocol error: {0}")]
    Protocol(String),
    /// The store cannot be used as it is run: a memcached too old for, or a proxy that
    /// refuses, a forced `Protocol::Meta`; one with compare-and-swap disabled (`-C`); a
    /// clock not set yet (before 2020) for a lifetime over 30 days; an r2d2 pool this
    /// crate refuses; or a store used outside the runtime it needs. Says which, and what
    /// to change.
    #[error("session store unusable: {0}")]
    Unsupported(String),
}

/// The cause of a [`StoreError::Unavailable`] that a server (or the proxy in front of it)
/// answered for that request alone (`SERVER_ERROR`: a proxy whose backend for the key is
/// down or did not answer in time, a memcached out of memory): another key may well be
/// served. A write that failed so may still land: a proxy that timed out had sent it on.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ServerAnswered(pub(crate) String);

/// The cause of a [`StoreError::Unavailable`] for a request never sent (its server marked
/// down, no connection to send it on, or the read asked first of a server tried again
/// failed): a write that failed so did not land.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct NotSent(pub(crate) Box<dyn Error + Send + Sync>);

impl StoreError {
    /// This error, for a request that was never sent: see [`NotSent`].
    pub(crate) fn not_sent(self) -> Self {
        match self {
            Self::Unavailable(cause) => Self::Unavailable(Box::new(NotSent(cause))),
            other => other,
        }
    }

    /// The kind of failure, from a fixed set, as OpenTelemetry's `error.type` labels it on
    /// the metrics: `timeout`, `unavailable`, `too_large`, `invalid_config`, `protocol` or
    /// `unsupported`.
    pub(crate) fn error_type(&self) -> &'static str {
        match self {
            Self::Unavailable(cause) => {
                let cause = cause.downcast_ref::<NotSent>().map_or(&**cause, |n| &*n.0);
                match cause
                    .downcast_ref::<std::io::Error>()
                    .map(std::io::Error::kind)
                {
                    Some(std::io::ErrorKind::TimedOut) => "timeout",
                    // A reply out of step, or not memcached's: the connection ended on it.
                    Some(std::io::ErrorKind::InvalidData) => "protocol",
                    _ => "unavailable",
                }
            }
            Self::TooLarge { .. } => "too_large",
            Self::InvalidConfig(_) => "invalid_config",
            Self::Protocol(_) => "protocol",
            Self::Unsupported(_) => "unsupported",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    /// What a failed operation is timed as: a reply out of step is the protocol's
    /// failure, not the server's being away.
    #[test]
    fn an_error_is_timed_by_its_kind() {
        let unavailable = |kind| StoreError::Unavailable(Box::new(io::Error::new(kind, "x")));
        assert_eq!(unavailable(io::ErrorKind::TimedOut).error_type(), "timeout");
        assert_eq!(
            unavailable(io::ErrorKind::InvalidData).error_type(),
            "protocol"
        );
        let refused = unavailable(io::ErrorKind::ConnectionRefused);
        assert_eq!(refused.error_type(), "unavailable");
        assert_eq!(StoreError::Protocol("x".into()).error_type(), "protocol");
    }
}
