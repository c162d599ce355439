//! The `Session` extractor and its package-scoped handles.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::SessionError;
use crate::unit_of_work::{SessionData, SessionStatus, UnitOfWork};

/// Longest package name or key, in bytes.
const MAX_NAME_BYTES: usize = 128;

/// The current request's session: session -> package -> key -> JSON value.
///
/// Extracting it loads the session from the store (once per request); everything after
/// that works on an in-memory copy, and the middleware writes the changes when the
/// response is a success. Clones share the same session.
///
/// ```
/// use actix_memcache_session::Session;
///
/// async fn add_to_cart(session: Session) -> actix_web::Result<String> {
///     let cart = session.package("shop.cart");
///     let n: u32 = cart.get("items")?.unwrap_or(0);
///     cart.insert("items", n + 1)?;
///     Ok(format!("{}", n + 1))
/// }
/// ```
#[derive(Clone)]
pub struct Session {
    data: Rc<RefCell<SessionData>>,
}

impl Session {
    /// The entries of one package: an application's or library's own namespace, so that
    /// code sharing a session cannot clobber each other's keys. Names are checked when
    /// the handle is used.
    pub fn package(&self, name: impl Into<String>) -> Package {
        Package {
            data: Rc::clone(&self.data),
            name: name.into(),
        }
    }

    /// Moves the session's data to a new id and retires the old one; call it when the
    /// user's privileges change (at login) so that an id seen before cannot be used after.
    pub fn renew(&self) {
        self.data.borrow_mut().renew();
    }

    /// Deletes the session and removes the cookie (at logout). Data written after this in
    /// the same request goes into a new session.
    pub fn purge(&self) {
        self.data.borrow_mut().purge();
    }

    /// What this request has done to the session so far.
    pub fn status(&self) -> SessionStatus {
        self.data.borrow().status()
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl FromRequest for Session {
    type Error = SessionError;
    type Future = LocalBoxFuture<'static, Result<Self, SessionError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let uow = req.extensions().get::<Rc<UnitOfWork>>().cloned();
        let Some(uow) = uow else {
            return Box::pin(async { Err(SessionError::MissingMiddleware) });
        };
        if let Some(data) = uow.loaded() {
            return Box::pin(async { Ok(Session { data }) });
        }
        let cookie = uow.config().incoming(req);
        Box::pin(async move {
            match uow.load(cookie).await {
                Ok(data) => Ok(Session { data }),
                Err(e) => {
                    tracing::error!(error = %e, cause = %crate::error::causes(&e), "cannot load session");
                    Err(e)
                }
            }
        })
    }
}

/// One package of a [`Session`]: typed access to its keys.
///
/// Values are stored as JSON, so any `Serialize` type goes in and any `Deserialize` type
/// comes out.
pub struct Package {
    data: Rc<RefCell<SessionData>>,
    name: String,
}

impl Package {
    /// The package's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value under `key`, or `None`.
    ///
    /// # Errors
    /// An invalid name or key, or a stored value that is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        self.check(key)?;
        let data = self.data.borrow();
        data.get(&self.name, key)
            .map(|value| T::deserialize(value))
            .transpose()
            .map_err(|source| SessionError::Deserialize {
                key: key.to_owned(),
                source,
            })
    }

    /// Stores `value` under `key`.
    ///
    /// # Errors
    /// An invalid name or key, or a value that cannot be JSON.
    pub fn insert(&self, key: &str, value: impl Serialize) -> Result<(), SessionError> {
        self.check(key)?;
        let value = serde_json::to_value(value).map_err(|source| SessionError::Serialize {
            key: key.to_owned(),
            source,
        })?;
        self.data.borrow_mut().put(&self.name, key, Some(value));
        Ok(())
    }

    /// Removes `key`; `true` if it was there.
    ///
    /// # Errors
    /// An invalid name or key.
    pub fn remove(&self, key: &str) -> Result<bool, SessionError> {
        let present = self.contains_key(key)?;
        self.data.borrow_mut().put(&self.name, key, None);
        Ok(present)
    }

    /// Whether `key` has a value.
    ///
    /// # Errors
    /// An invalid name or key.
    pub fn contains_key(&self, key: &str) -> Result<bool, SessionError> {
        self.check(key)?;
        Ok(self.data.borrow().get(&self.name, key).is_some())
    }

    /// The package's keys, sorted.
    ///
    /// # Errors
    /// An invalid package name.
    pub fn keys(&self) -> Result<Vec<String>, SessionError> {
        validate("package name", &self.name)?;
        Ok(self.data.borrow().keys(&self.name))
    }

    /// Removes every key of this package (and only of this package).
    ///
    /// # Errors
    /// An invalid package name.
    pub fn clear(&self) -> Result<(), SessionError> {
        let keys = self.keys()?;
        let mut data = self.data.borrow_mut();
        for key in keys {
            data.put(&self.name, &key, None);
        }
        Ok(())
    }

    fn check(&self, key: &str) -> Result<(), SessionError> {
        validate("package name", &self.name)?;
        validate("key", key)
    }
}

impl fmt::Debug for Package {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Package").field("name", &self.name).finish()
    }
}

/// Names are 1 to 128 bytes without control characters: they end up in logs and in the
/// stored JSON, where a stray newline or a megabyte-long key is a bug, not data.
fn validate(what: &'static str, name: &str) -> Result<(), SessionError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME_BYTES {
        "it is longer than 128 bytes"
    } else if name.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(SessionError::InvalidName {
        what,
        name: name.chars().take(32).collect(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate("key", "items").is_ok());
        assert!(validate("key", &"k".repeat(128)).is_ok());
        for bad in ["", "a\nb", "tab\there", &"k".repeat(129)] {
            assert!(
                matches!(validate("key", bad), Err(SessionError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }
}
