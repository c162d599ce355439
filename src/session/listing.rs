//! A user's sessions as a "your devices" page shows them: the listing, the handle that
//! names one, and its label. The roster behind it is the unit of work's
//! (`unit_of_work/roster.rs`, `census.rs`, `enlist.rs`).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::container::Sessions;
use super::extractor::Session;
use crate::error::SessionError;
use crate::unit_of_work::generation::{HANDLE, LABEL, PACKAGE};
use crate::unit_of_work::{Live, UnitOfWork};

/// Bytes a session's label keeps; a longer one is cut at a character boundary.
pub const MAX_LABEL_BYTES: usize = 128;

/// Names one of a user's sessions in the listing, to sign it out: stable for the life of
/// the login (across renewals), and not the session id, so a page listing a user's
/// devices never shows a token that would let anyone in.
///
/// It parses back from its text form (16 hex characters), as a form or a path would
/// carry it:
///
/// ```
/// use actix_memcache_session::SessionHandle;
///
/// assert!("0123456789abcdef".parse::<SessionHandle>().is_ok());
/// assert!("not a handle".parse::<SessionHandle>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionHandle(String);

impl SessionHandle {
    /// The handle's text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SessionHandle {
    type Err = SessionError;

    fn from_str(s: &str) -> Result<Self, SessionError> {
        if crate::unit_of_work::is_token(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(SessionError::InvalidSessionHandle)
        }
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionHandle {
    /// Shows only a prefix, as `SessionId`'s does: a handle signs its session out, for
    /// anyone signed in as its user, and a log of the app's listing must not hand it on.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = self.0.get(..6).unwrap_or(&self.0);
        write!(f, "SessionHandle({prefix}…)")
    }
}

/// One live session of a user, as [`Sessions::of_user`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserSession {
    /// Names the session, to sign it out ([`Session::sign_out_session`],
    /// [`Sessions::sign_out_session`]) or to tell the current one
    /// ([`Session::handle`]).
    pub handle: SessionHandle,
    /// When the session was created or last renewed: the login's time when it renewed
    /// the session (the default), the session's creation when the login kept its id
    /// (`renew_on_bind(false)`, or a binding through `Sessions::open`).
    pub created: SystemTime,
    /// When the session was last used, to the refresh granularity (a quarter of the idle
    /// timeout by default): refreshing the cookie writes it, and so does issuing it again
    /// for another reason (re-signing it under the current key) once it is that old; other
    /// requests write nothing.
    pub last_seen: SystemTime,
    /// Whether it has its own timeouts ("keep me signed in", [`Session::set_timeouts`]).
    pub remember_me: bool,
    /// The label the app gave it ([`Session::set_label`]), such as a device name.
    pub label: Option<String>,
}

impl UserSession {
    fn new(handle: String, live: Live) -> Self {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        Self {
            handle: SessionHandle(handle),
            created: at(live.created),
            last_seen: at(live.seen),
            remember_me: live.remember_me,
            label: live.label,
        }
    }
}

impl Session {
    /// The handle of this session's entry in its user's list of sessions, once a login
    /// (a committed [`bind_user`](Self::bind_user)) listed it; `None` for a session not
    /// bound to a user. A "your devices" page marks the current one with it.
    pub fn handle(&self) -> Option<SessionHandle> {
        let handle: Option<String> = self.own_package(PACKAGE).get(HANDLE).ok()?;
        handle.map(SessionHandle)
    }

    /// Gives this session a label for its user's list of sessions, such as the device or
    /// browser it was signed in from (typically from the `User-Agent` at login). Longer
    /// than [`MAX_LABEL_BYTES`] it is cut. Like any change it is written only if the
    /// request commits.
    ///
    /// # Errors
    /// Never in practice: the package name is valid.
    pub fn set_label(&self, label: &str) -> Result<(), SessionError> {
        let mut end = label.len().min(MAX_LABEL_BYTES);
        while !label.is_char_boundary(end) {
            end -= 1;
        }
        self.own_package(PACKAGE).insert(LABEL, &label[..end])
    }

    /// Signs out one of this session's user's sessions, named by the handle the listing
    /// gave, when the request commits ("sign out the phone" from the laptop): it finds out
    /// at its next request, which then starts with an empty session. This session's own
    /// handle [`purge`](Self::purge)s it. Only a session of the same user can be named; a
    /// handle not listed (already ended, or another user's) ends nothing.
    ///
    /// The entry goes before the rest of the change is written, with compare-and-swap: if
    /// the rest fails, the other session stays signed out
    /// ([`SessionError::SignedOut`], when it signed one out: the others named went with it
    /// or were listed nowhere, so none named is left signed in). A failure
    /// before that (a session listed under an old key whose item fails), or of the rest when
    /// this session's own handle was named too (it goes only with the rest), is that
    /// failure: some of the sessions named may be signed out, and trying again finishes
    /// it. A session that was itself signed out since it was read ends nobody (409).
    pub fn sign_out_session(&self, handle: &SessionHandle) {
        self.tx.borrow_mut().data.dismiss(handle.as_str());
    }
}

impl Sessions {
    /// The live sessions of `user`, oldest login first: those bound to `user` (by
    /// [`Session::bind_user`]) that are still signed in and within their timeouts.
    /// Each listed session was read to say so; the list never relies on the record of
    /// logins alone, and clears it of sessions found ended.
    ///
    /// ```
    /// use actix_memcache_session::{Session, Sessions};
    ///
    /// async fn devices(session: Session, sessions: Sessions) -> actix_web::Result<String> {
    ///     let Some(user) = session.user()? else {
    ///         return Ok("not signed in".into());
    ///     };
    ///     let current = session.handle();
    ///     let mut page = String::new();
    ///     for s in sessions.of_user(&user).await? {
    ///         let here = if Some(&s.handle) == current.as_ref() { " (this one)" } else { "" };
    ///         let label = s.label.as_deref().unwrap_or("unknown device");
    ///         page += &format!("{label}{here}: sign out with {}\n", s.handle);
    ///     }
    ///     Ok(page)
    /// }
    /// ```
    ///
    /// # Errors
    /// The store failing, or a listed session's server not answering (the list would not
    /// be complete); [`SessionError::Conflict`] when the user's logins and sign-outs kept
    /// changing the list while its dead entries were being removed (try again).
    pub async fn of_user(&self, user: &str) -> Result<Vec<UserSession>, SessionError> {
        let uow = UnitOfWork::new(self.backend.clone());
        let mut listed: Vec<UserSession> = uow
            .live_sessions(user)
            .await?
            .into_iter()
            .map(|(handle, live)| UserSession::new(handle, live))
            .collect();
        listed.sort_by_key(|s| s.created);
        Ok(listed)
    }

    /// Signs out `user`'s session `handle` now, and says whether it was listed: it finds
    /// out at its next request. A handle of another user's session ends nothing.
    ///
    /// # Errors
    /// The store failing, or [`SessionError::Conflict`] when the user's logins and
    /// sign-outs kept changing the list through every try. The session may be signed out
    /// all the same: a write whose reply was lost may have landed, and with fallback keys
    /// one key's item may have changed and another's not. Trying again is safe, and may
    /// then answer `false`: the session is signed out either way, by this try or the one
    /// before.
    pub async fn sign_out_session(
        &self,
        user: &str,
        handle: &SessionHandle,
    ) -> Result<bool, SessionError> {
        let uow = UnitOfWork::new(self.backend.clone());
        let mut ended = false;
        for item in self.backend.config.codec.user_items(user) {
            ended |= uow.end_listed(&item, handle.as_str(), None).await?;
        }
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_most_of_the_handle() {
        let handle: SessionHandle = "0123456789abcdef".parse().unwrap();
        assert_eq!(format!("{handle:?}"), "SessionHandle(012345…)");
        assert_eq!(
            handle.to_string(),
            "0123456789abcdef",
            "shown whole where asked"
        );
    }
}
