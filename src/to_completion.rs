//! A future that runs to its end even if whoever awaits it goes away: actix drops a
//! request's future when its client resets the connection, and a commit that stored the
//! change must still run its hooks (the mail that may go out only once), exactly once.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Polls `F` like any future; dropped before `F` completed, it hands `F` to this thread's
/// `LocalSet` (every actix worker runs one) to finish there, its output discarded.
pub(crate) struct ToCompletion<F: Future + 'static> {
    inner: Option<Pin<Box<F>>>,
}

impl<F: Future + 'static> ToCompletion<F> {
    pub(crate) fn new(future: F) -> Self {
        Self {
            inner: Some(Box::pin(future)),
        }
    }
}

impl<F: Future + 'static> Future for ToCompletion<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
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

impl<F: Future + 'static> Drop for ToCompletion<F> {
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
