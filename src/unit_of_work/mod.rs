//! The unit of work: one per request. It loads the session lazily, records which
//! (package, key) entries the handler changed, and at the end either commits them with
//! compare-and-swap, merging with concurrent commits, or is dropped having written nothing.
//!
//! The module is layered bottom-up:
//! - `by_name`, `spare`, `canonical`, `record`: the stored JSON format (its packages kept by
//!   name, its bytes written into buffers kept per thread, read token by token as this crate
//!   writes it).
//! - `roster`: a user's item as stored (their generation and the sessions listed in it).
//! - `timeouts`, `generation`: the rules of a session's own timeouts and of sessions bound
//!   to a user, which the load and the commit apply.
//! - `change_set`, `data`: the entries a request changed, and the in-memory copy with the
//!   merge rules.
//! - `hooks`, `transaction`: the handler's side (data, savepoints, hooks, abort).
//! - `load`: the unit of work, and reading the session once.
//! - `census`, `enlist`: which of a user's listed sessions are live, and changing the list
//!   (a login within the user's limit, a renewal, signing one out).
//! - `commit`: writing it, retrying within a budget (`crate::backoff`), then the hooks.

mod by_name;
mod canonical;
mod census;
mod change_set;
mod commit;
mod data;
mod enlist;
pub(crate) mod generation;
mod hooks;
mod load;
mod record;
mod roster;
mod spare;
pub(crate) mod timeouts;
mod transaction;

pub(crate) use census::Live;
pub(crate) use commit::CookieAction;
// For unit tests elsewhere, the benchmarks and the test helpers.
#[cfg(any(test, feature = "__bench", feature = "testing"))]
pub(crate) use data::SessionData;
pub use data::SessionStatus;
pub(crate) use data::RESERVED;
pub(crate) use hooks::Outcome;
pub(crate) use load::{Level, UnitOfWork};
pub(crate) use record::Name;
#[cfg(any(test, feature = "__bench"))]
pub(crate) use record::Record;
pub(crate) use record::Slot;
pub(crate) use roster::is_token;
pub(crate) use transaction::Transaction;
