//! A future that runs to its end even if whoever awaits it goes away: actix drops a
//! request's future when its client resets the connection, and a commit that stored the
//! change must still run its hooks (the mail that may go out only once), exactly once.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::LocalBoxFuture;

/// Polls its future like any other; dropped before that future completed, it hands it to
/// this thread's `LocalSet` (every actix worker runs one) to finish there, its output
/// discarded. Boxed here, and only here: wrapping all that a request still awaits, it is
/// that request's one allocation for it.
pub(crate) struct ToCompletion<T: 'static> {
    inner: Option<LocalBoxFuture<'static, T>>,
}

impl<T: 'static> ToCompletion<T> {
    pub(crate) fn new(future: impl Future<Output = T> + 'static) -> Self {
        Self {
            inner: Some(Box::pin(future)),
        }
    }
}

impl<T: 'static> Future for ToCompletion<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            // Polled after it completed: a caller's bug, never this crate's.
            return Poll::Pending;
        };
        let output = std::task::ready!(inner.as_mut().poll(cx));
        this.inner = None;
        Poll::Ready(output)
    }
}

impl<T: 'static> Drop for ToCompletion<T> {
    fn drop(&mut self) {
        if let Some(rest) = self.inner.take() {
            finish_elsewhere(rest);
        }
    }
}

/// Runs `rest` to its end on this thread's `LocalSet`. tokio has no fallible
/// `spawn_local`, so its panic outside a `LocalSet` is caught and logged.
pub(crate) fn finish_elsewhere(rest: impl Future + 'static) {
    let spawned = std::panic::catch_unwind(AssertUnwindSafe(|| {
        tokio::task::spawn_local(async move {
            rest.await;
        })
    }));
    if spawned.is_err() {
        tracing::error!(
            "a session's commit or hooks were cut short: dropped outside a tokio LocalSet"
        );
    }
}
