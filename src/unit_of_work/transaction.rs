//! The handler's side of a request's unit of work: the session data with its savepoints,
//! the hooks to run at the end, and whether the handler aborted.

use super::data::{SessionData, SessionStatus};
use super::hooks::{HookCount, Hooks};
use super::record::Record;
use crate::error::SessionError;
use crate::id::SessionId;

/// What the handlers of one request share through [`Session`](crate::Session).
pub(crate) struct Transaction {
    pub(crate) data: SessionData,
    pub(crate) hooks: Hooks,
    /// Binding a user renews the session (a request's, when the middleware says so; never
    /// the container's).
    pub(crate) renew_on_bind: bool,
    /// The id the commit stored the session under, once it has (for after-commit hooks).
    pub(crate) stored: Option<SessionId>,
    /// Open savepoints, oldest first.
    savepoints: Vec<Mark>,
    next_savepoint: u64,
    aborted: bool,
    /// The request's unit of work has ended: a savepoint taken from now on is never open.
    ended: bool,
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
            renew_on_bind: false,
            stored: None,
            savepoints: Vec::new(),
            next_savepoint: 0,
            aborted: false,
            ended: false,
        }
    }

    pub(crate) fn status(&self) -> SessionStatus {
        if self.aborted {
            SessionStatus::Aborted
        } else {
            self.data.status()
        }
    }

    /// Not aborted, and no hook to run whatever the outcome.
    pub(crate) fn is_plain(&self) -> bool {
        !self.aborted && self.hooks.is_empty()
    }

    /// Whether the request's unit of work has ended: a hook registered from now on is
    /// dropped (nothing would run it, and one holding a `Session` would keep the
    /// transaction alive through itself).
    pub(crate) fn is_ended(&self) -> bool {
        self.ended
    }

    pub(crate) fn abort(&mut self) {
        self.aborted = true;
    }

    /// Opens a savepoint; its serial names it. Once the request ended, none opens (rolling
    /// back to it is an error).
    pub(crate) fn savepoint(&mut self) -> u64 {
        let serial = self.next_savepoint;
        self.next_savepoint += 1;
        if self.ended {
            return serial;
        }
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

    /// Ends the request when nothing is handed over (a quiet commit: not aborted, no hook,
    /// nothing to write): the savepoints go, as in [`finish`](Self::finish), and the data
    /// stays where it is rather than being moved out for nothing. A handle kept past the
    /// request still reads it; what it changes goes nowhere, as after `finish` (the unit of
    /// work takes nothing once ended).
    pub(crate) fn end_quietly(&mut self) {
        debug_assert!(self.is_plain(), "nothing to hand over");
        self.savepoints.clear();
        self.ended = true;
    }

    /// Hands the data and hooks to the unit of work at the end of the request; `None` for
    /// the data when the handler aborted (it stays where it is). The savepoints go too:
    /// rolling back to one is an error from then on, and later changes go nowhere. With
    /// `kept` (a handle outlives the request), a copy stands in for the data until the
    /// commit hands it back, for the handle to read meanwhile.
    pub(crate) fn finish(&mut self, kept: bool) -> (Option<SessionData>, Hooks) {
        self.savepoints.clear();
        self.ended = true;
        let hooks = std::mem::take(&mut self.hooks);
        if self.aborted {
            return (None, hooks);
        }
        // Nothing writes the stand-in; made without a creation time (which would read the
        // clock on every request) when nobody reads it.
        let standin = if kept {
            self.data.clone()
        } else {
            SessionData::with(Record::new(0))
        };
        (Some(std::mem::replace(&mut self.data, standin)), hooks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_savepoint_frees_its_copy_and_an_ended_request_refuses_rollback() {
        let mut tx = Transaction::new(SessionData::fresh());
        let outer = tx.savepoint();
        let inner = tx.savepoint();
        assert_eq!(tx.savepoints.len(), 2);
        tx.release(inner);
        assert_eq!(tx.savepoints.len(), 1);
        assert!(tx.rollback(outer).is_ok());
        assert!(
            tx.rollback(outer).is_ok(),
            "a savepoint can be rolled back to again"
        );
        tx.finish(false);
        assert!(matches!(
            tx.rollback(outer),
            Err(SessionError::InvalidSavepoint)
        ));
    }

    #[test]
    fn abort_outlives_a_rollback() {
        let mut tx = Transaction::new(SessionData::fresh());
        let before = tx.savepoint();
        tx.abort();
        tx.rollback(before).unwrap();
        assert_eq!(tx.status(), SessionStatus::Aborted);
        assert!(tx.finish(false).0.is_none(), "nothing to commit");
    }
}
