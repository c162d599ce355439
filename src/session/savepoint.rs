//! Savepoints: a marker in the request's changes to roll back to.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use crate::error::SessionError;
use crate::unit_of_work::Transaction;

/// A point in this request's session changes, from
/// [`Session::savepoint`](crate::Session::savepoint).
///
/// [`rollback`](Self::rollback) undoes every change made to the session after it (data,
/// renew, purge) and forgets the hooks registered after it, as if none of it had happened;
/// the request then goes on and commits what came before. Savepoints nest: rolling back
/// to one discards those taken after it. Dropping a savepoint keeps the changes.
///
/// ```
/// use actix_memcache_session::Session;
///
/// async fn import(session: Session) -> actix_web::Result<&'static str> {
///     let prefs = session.package("prefs");
///     prefs.insert("theme", "dark")?;
///     let before_import = session.savepoint();
///     prefs.insert("imported", true)?;
///     if prefs.keys()?.len() > 10 {
///         before_import.rollback()?; // "theme" is still written, "imported" is not
///     }
///     Ok("ok")
/// }
/// ```
pub struct Savepoint {
    tx: Rc<RefCell<Transaction>>,
    serial: u64,
}

impl Savepoint {
    pub(crate) fn new(tx: Rc<RefCell<Transaction>>) -> Self {
        let serial = tx.borrow_mut().savepoint();
        Self { tx, serial }
    }

    /// Restores the session as it was when this savepoint was taken. It stays valid, so
    /// it can be rolled back to again.
    ///
    /// # Errors
    /// [`SessionError::InvalidSavepoint`] when an earlier savepoint was rolled back to
    /// after this one was taken, or the request's unit of work has already ended.
    pub fn rollback(&self) -> Result<(), SessionError> {
        self.tx.borrow_mut().rollback(self.serial)
    }
}

impl Drop for Savepoint {
    fn drop(&mut self) {
        // Only frees the copy; a savepoint dropped while the session is borrowed (it
        // cannot be, outside this crate) would keep its copy until the request ends.
        if let Ok(mut tx) = self.tx.try_borrow_mut() {
            tx.release(self.serial);
        }
    }
}

impl fmt::Debug for Savepoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Savepoint")
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}
