//! The handler's side of a request's unit of work: the session data with its savepoints,
//! the hooks to run at the end, and whether the handler aborted.

use crate::error::SessionError;
use crate::hooks::{HookCount, Hooks};
use crate::unit_of_work::{SessionData, SessionStatus};

/// What the handlers of one request share through [`Session`](crate::Session).
pub(crate) struct Transaction {
    pub(crate) data: SessionData,
    pub(crate) hooks: Hooks,
    /// Open savepoints, oldest first.
    savepoints: Vec<Mark>,
    next_savepoint: u64,
    aborted: bool,
}

/// What rolling back to one savepoint restores.
struct Mark {
    serial: u64,
    data: SessionData,
    hooks: HookCount,
}

impl Transaction {
    pub(crate) fn new(data: SessionData) -> Self {
        Self {
            data,
            hooks: Hooks::default(),
            savepoints: Vec::new(),
            next_savepoint: 0,
            aborted: false,
        }
    }

    pub(crate) fn status(&self) -> SessionStatus {
        if self.aborted {
            SessionStatus::Aborted
        } else {
            self.data.status()
        }
    }

    pub(crate) fn abort(&mut self) {
        self.aborted = true;
    }

    /// Opens a savepoint; its serial names it.
    pub(crate) fn savepoint(&mut self) -> u64 {
        let serial = self.next_savepoint;
        self.next_savepoint += 1;
        self.savepoints.push(Mark {
            serial,
            data: self.data.clone(),
            hooks: self.hooks.count(),
        });
        serial
    }

    /// Restores the data and hooks as they were when savepoint `serial` was taken. The
    /// savepoints taken after it are gone; it stays open, to roll back to again.
    pub(crate) fn rollback(&mut self, serial: u64) -> Result<(), SessionError> {
        let Some(at) = self.position(serial) else {
            return Err(SessionError::InvalidSavepoint);
        };
        self.savepoints.truncate(at + 1);
        let mark = &self.savepoints[at];
        self.data = mark.data.clone();
        self.hooks.truncate(mark.hooks);
        Ok(())
    }

    /// Forgets savepoint `serial`, if it is still open.
    pub(crate) fn release(&mut self, serial: u64) {
        if let Some(at) = self.position(serial) {
            self.savepoints.remove(at);
        }
    }

    fn position(&self, serial: u64) -> Option<usize> {
        self.savepoints.iter().position(|m| m.serial == serial)
    }

    /// Hands the data and hooks to the unit of work at the end of the request; `None` for
    /// the data when the handler aborted. The savepoints go too: rolling back to one is an
    /// error from then on, and later changes go nowhere.
    pub(crate) fn finish(&mut self) -> (Option<SessionData>, Hooks) {
        self.savepoints.clear();
        let data = std::mem::replace(&mut self.data, SessionData::fresh());
        let hooks = std::mem::take(&mut self.hooks);
        ((!self.aborted).then_some(data), hooks)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::savepoint::Savepoint;

    #[test]
    fn a_dropped_savepoint_frees_its_copy_and_an_ended_request_refuses_rollback() {
        let tx = Rc::new(RefCell::new(Transaction::new(SessionData::fresh())));
        let outer = Savepoint::new(Rc::clone(&tx));
        {
            let _inner = Savepoint::new(Rc::clone(&tx));
            assert_eq!(tx.borrow().savepoints.len(), 2);
        }
        assert_eq!(tx.borrow().savepoints.len(), 1);
        assert!(outer.rollback().is_ok());
        assert!(
            outer.rollback().is_ok(),
            "a savepoint can be rolled back to again"
        );
        tx.borrow_mut().finish();
        assert!(matches!(
            outer.rollback(),
            Err(SessionError::InvalidSavepoint)
        ));
    }

    #[test]
    fn abort_outlives_a_rollback() {
        let tx = Rc::new(RefCell::new(Transaction::new(SessionData::fresh())));
        let before = Savepoint::new(Rc::clone(&tx));
        tx.borrow_mut().abort();
        before.rollback().unwrap();
        assert_eq!(tx.borrow().status(), SessionStatus::Aborted);
        assert!(tx.borrow_mut().finish().0.is_none(), "nothing to commit");
    }
}
