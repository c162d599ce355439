//! An object-safe view of any [`SessionStore`], so the middleware and unit of work are
//! compiled once rather than once per store type.

use std::time::Duration;

use futures_util::future::LocalBoxFuture;

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
        Box::pin(SessionStore::load(self, id))
    }

    fn create<'a>(
        &'a self,
        id: &'a SessionId,
        data: &'a [u8],
        ttl: Duration,
    ) -> LocalBoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(SessionStore::create(self, id, data, ttl))
    }

    fn update<'a>(
        &'a self,
        id: &'a SessionId,
        data: &'a [u8],
        version: Version,
        ttl: Duration,
    ) -> LocalBoxFuture<'a, Result<Update, StoreError>> {
        Box::pin(SessionStore::update(self, id, data, version, ttl))
    }

    fn touch<'a>(
        &'a self,
        id: &'a SessionId,
        ttl: Duration,
    ) -> LocalBoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(SessionStore::touch(self, id, ttl))
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> LocalBoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SessionStore::delete(self, id))
    }

    fn delete_if<'a>(
        &'a self,
        id: &'a SessionId,
        version: Version,
    ) -> LocalBoxFuture<'a, Result<Update, StoreError>> {
        Box::pin(SessionStore::delete_if(self, id, version))
    }

    fn accepts(&self, id: &SessionId) -> bool {
        SessionStore::accepts(self, id)
    }

    fn when_down(&self) -> WhenDown {
        SessionStore::when_down(self)
    }
}
