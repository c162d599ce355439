//! An object-safe view of any [`SessionStore`], so the middleware and unit of work are
//! compiled once rather than once per store type. Each operation runs in a debug-level
//! span: one place covers every store.

use std::future::Future;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use tracing::Instrument;

use crate::id::SessionId;
use crate::in_box::made_in_box;
use crate::store::error::StoreError;
use crate::store::session_store::{SessionStore, Stored, Update, Version, WhenDown};
use crate::traced;

pub(crate) trait ErasedStore {
    fn load<'a>(
        &'a self,
        id: &'a SessionId,
    ) -> LocalBoxFuture<'a, Result<Option<Stored>, StoreError>>;
    fn create<'a>(
        &'a self,
        id: &'a SessionId,
        data: &'a [u8],
        ttl: Duration,
    ) -> LocalBoxFuture<'a, Result<bool, StoreError>>;
    fn update<'a>(
        &'a self,
        id: &'a SessionId,
        data: &'a [u8],
        version: Version,
        ttl: Duration,
    ) -> LocalBoxFuture<'a, Result<Update, StoreError>>;
    fn touch<'a>(
        &'a self,
        id: &'a SessionId,
        ttl: Duration,
    ) -> LocalBoxFuture<'a, Result<bool, StoreError>>;
    fn delete<'a>(&'a self, id: &'a SessionId) -> LocalBoxFuture<'a, Result<(), StoreError>>;
    fn delete_if<'a>(
        &'a self,
        id: &'a SessionId,
        version: Version,
    ) -> LocalBoxFuture<'a, Result<Update, StoreError>>;
    fn accepts(&self, id: &SessionId) -> bool;
    fn when_down(&self) -> WhenDown;
}

impl<S: SessionStore> ErasedStore for S {
    fn load<'a>(
        &'a self,
        id: &'a SessionId,
    ) -> LocalBoxFuture<'a, Result<Option<Stored>, StoreError>> {
        boxed("load", id, || SessionStore::load(self, id))
    }

    fn create<'a>(
        &'a self,
        id: &'a SessionId,
        data: &'a [u8],
        ttl: Duration,
    ) -> LocalBoxFuture<'a, Result<bool, StoreError>> {
        boxed("create", id, || SessionStore::create(self, id, data, ttl))
    }

    fn update<'a>(
        &'a self,
        id: &'a SessionId,
        data: &'a [u8],
        version: Version,
        ttl: Duration,
    ) -> LocalBoxFuture<'a, Result<Update, StoreError>> {
        boxed("update", id, || {
            SessionStore::update(self, id, data, version, ttl)
        })
    }

    fn touch<'a>(
        &'a self,
        id: &'a SessionId,
        ttl: Duration,
    ) -> LocalBoxFuture<'a, Result<bool, StoreError>> {
        boxed("touch", id, || SessionStore::touch(self, id, ttl))
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> LocalBoxFuture<'a, Result<(), StoreError>> {
        boxed("delete", id, || SessionStore::delete(self, id))
    }

    fn delete_if<'a>(
        &'a self,
        id: &'a SessionId,
        version: Version,
    ) -> LocalBoxFuture<'a, Result<Update, StoreError>> {
        boxed("delete_if", id, || {
            SessionStore::delete_if(self, id, version)
        })
    }

    fn accepts(&self, id: &SessionId) -> bool {
        SessionStore::accepts(self, id)
    }

    fn when_down(&self) -> WhenDown {
        SessionStore::when_down(self)
    }
}

/// The future `make` makes, boxed, inside the debug span of one store operation (the id
/// shows only as its short prefix) when a subscriber wants the span. Without one the span
/// is left out: it would cost an enter and an exit on every poll and record nothing. When
/// nothing may read it, it is not even made.
fn boxed<'a, F: Future + 'a>(
    op: &'static str,
    id: &SessionId,
    make: impl FnOnce() -> F,
) -> LocalBoxFuture<'a, F::Output> {
    if !traced::debug_span_may_be_read() {
        return made_in_box(make);
    }
    let span = tracing::debug_span!("session.store", op, id = ?id);
    if span.is_disabled() {
        made_in_box(make)
    } else {
        Box::pin(make().instrument(span))
    }
}
