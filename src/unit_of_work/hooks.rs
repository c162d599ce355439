//! Callbacks a handler registers to run once the request's unit of work has committed or
//! aborted: the mail that may only go out once the change is stored.

use std::error::Error;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;

use crate::error::causes;

type HookFuture = LocalBoxFuture<'static, Result<(), Box<dyn Error>>>;
type Hook = Box<dyn FnOnce() -> HookFuture>;

/// Which way the unit of work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Committed,
    Aborted,
}

/// The hooks of one request, in the order they were registered.
#[derive(Default)]
pub(crate) struct Hooks {
    commit: Vec<Hook>,
    abort: Vec<Hook>,
}

/// How many hooks of each branch there were: what a savepoint rolls back to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HookCount {
    commit: usize,
    abort: usize,
}

impl Hooks {
    pub(crate) fn add<F, Fut, E>(&mut self, on: Outcome, hook: F)
    where
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = Result<(), E>> + 'static,
        E: Into<Box<dyn Error>>,
    {
        let hook: Hook = Box::new(move || Box::pin(hook().map(|r| r.map_err(Into::into))));
        match on {
            Outcome::Committed => self.commit.push(hook),
            Outcome::Aborted => self.abort.push(hook),
        }
    }

    pub(crate) fn count(&self) -> HookCount {
        HookCount {
            commit: self.commit.len(),
            abort: self.abort.len(),
        }
    }

    /// Whether no hook of either branch was registered.
    pub(crate) fn is_empty(&self) -> bool {
        self.commit.is_empty() && self.abort.is_empty()
    }

    /// Whether no hook of `outcome`'s branch was registered.
    pub(crate) fn none_on(&self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Committed => self.commit.is_empty(),
            Outcome::Aborted => self.abort.is_empty(),
        }
    }

    /// Forgets the hooks registered after `count` was taken.
    pub(crate) fn truncate(&mut self, count: HookCount) {
        self.commit.truncate(count.commit);
        self.abort.truncate(count.abort);
    }

    /// Runs the hooks of the branch taken, one after the other. The outcome is settled:
    /// a hook that fails or panics is logged and the others still run.
    pub(crate) async fn run(self, outcome: Outcome) {
        let (hooks, branch) = match outcome {
            Outcome::Committed => (self.commit, "after_commit"),
            Outcome::Aborted => (self.abort, "after_abort"),
        };
        for hook in hooks {
            match AssertUnwindSafe(async move { hook().await })
                .catch_unwind()
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let cause = causes(&*e);
                    tracing::error!(hook = branch, error = %e, %cause, "session hook failed");
                }
                Err(_) => tracing::error!(hook = branch, "session hook panicked"),
            }
        }
    }
}
