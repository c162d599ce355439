//! A future that runs to its end even if whoever awaits it goes away: actix drops a
//! request's future when its client resets the connection, and a commit that stored the
//! change must still run its hooks (the mail that may go out only once), exactly once.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::LocalBoxFuture;

use crate::in_box::made_in_box;

/// Polls its future like any other; dropped before that future completed, it hands it to
/// this thread's `LocalSet` (every actix worker runs one) to finish there, its output
/// discarded. The future is boxed here, so that a caller holding a `ToCompletion` holds it
/// without a box of its own.
pub(crate) struct ToCompletion<T: 'static> {
    inner: Option<LocalBoxFuture<'static, T>>,
}

impl<T: 'static> ToCompletion<T> {
    /// The future that `make` makes, made in its box.
    pub(crate) fn new<F: Future<Output = T> + 'static>(make: impl FnOnce() -> F) -> Self {
        Self {
            inner: Some(made_in_box(make)),
        }
    }
}

impl<T: 'static> Future for ToCompletion<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        // Out while it is polled: if it panics, it is dropped with the panic rather than
        // handed on and polled again.
        let Some(mut inner) = this.inner.take() else {
            // Polled after it completed: a caller's bug, never this crate's.
            return Poll::Pending;
        };
        let output = inner.as_mut().poll(cx);
        if output.is_pending() {
            this.inner = Some(inner);
        }
        output
    }
}

impl<T: 'static> Drop for ToCompletion<T> {
    fn drop(&mut self) {
        if let Some(rest) = self.inner.take() {
            finish_elsewhere(rest, "a session's commit or hooks");
        }
    }
}

/// Runs `rest` (`what`, for the log) to its end on this thread's `LocalSet`. tokio has no
/// fallible `spawn_local`, so its panic outside a `LocalSet` is caught and logged.
pub(crate) fn finish_elsewhere(rest: impl Future + 'static, what: &str) {
    let spawned = std::panic::catch_unwind(AssertUnwindSafe(|| {
        tokio::task::spawn_local(async move {
            rest.await;
        })
    }));
    if spawned.is_err() {
        tracing::error!("{what} were cut short: dropped outside a tokio LocalSet");
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::task::Waker;

    use super::*;

    /// Sets its flag when dropped.
    struct Dropped(Rc<Cell<bool>>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }

    #[test]
    fn a_future_that_panicked_is_dropped_not_handed_on() {
        let dropped = Rc::new(Cell::new(false));
        let guard = Dropped(Rc::clone(&dropped));
        let mut future = ToCompletion::new(move || async move {
            let _guard = guard;
            panic!("a bug in the commit");
        });
        let mut cx = Context::from_waker(Waker::noop());
        let polled =
            std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(&mut future).poll(&mut cx)));
        assert!(polled.is_err(), "the panic reaches the caller");
        assert!(dropped.get(), "the future went with its panic");
        assert!(
            Pin::new(&mut future).poll(&mut cx).is_pending(),
            "nothing left to poll, nor to hand on when dropped"
        );
    }
}
