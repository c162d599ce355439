//! An object-safe view of any [`SessionStore`], so the middleware and unit of work are
//! compiled once rather than once per store type. Each operation runs in a debug-level
//! span: one place covers every store.

use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use tracing::Instrument;

use crate::id::SessionId;
use crate::store::{SessionStore, StoreError, Stored, Update, Version, WhenDown};

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
        Box::pin(SessionStore::load(self, id).instrument(span("load", id)))
    }

    fn create<'a>(
        &'a self,
        id: &'a SessionId,
        data: &'a [u8],
        ttl: Duration,
    ) -> LocalBoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(SessionStore::create(self, id, data, ttl).instrument(span("create", id)))
    }

    fn update<'a>(
        &'a self,
        id: &'a SessionId,
        data: &'a [u8],
        version: Version,
        ttl: Duration,
    ) -> LocalBoxFuture<'a, Result<Update, StoreError>> {
        Box::pin(SessionStore::update(self, id, data, version, ttl).instrument(span("update", id)))
    }

    fn touch<'a>(
        &'a self,
        id: &'a SessionId,
        ttl: Duration,
    ) -> LocalBoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(SessionStore::touch(self, id, ttl).instrument(span("touch", id)))
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> LocalBoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SessionStore::delete(self, id).instrument(span("delete", id)))
    }

    fn delete_if<'a>(
        &'a self,
        id: &'a SessionId,
        version: Version,
    ) -> LocalBoxFuture<'a, Result<Update, StoreError>> {
        Box::pin(SessionStore::delete_if(self, id, version).instrument(span("delete_if", id)))
    }

    fn accepts(&self, id: &SessionId) -> bool {
        SessionStore::accepts(self, id)
    }

    fn when_down(&self) -> WhenDown {
        SessionStore::when_down(self)
    }
}

/// The span of one store operation; the id shows only as its short prefix.
fn span(op: &'static str, id: &SessionId) -> tracing::Span {
    tracing::debug_span!("session.store", op, id = ?id)
}
