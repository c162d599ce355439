//! The session a handler holds: the `Session` extractor, its packages (typed too),
//! savepoints, flash messages, the container for sessions by id, and the methods for a
//! session's own timeouts and for sessions bound to a user. Everything here changes the
//! unit of work's in-memory copy; the unit of work writes it.

mod container;
mod extractor;
mod finite;
mod flash;
#[cfg(feature = "testing")]
mod for_tests;
mod lifetime;
mod listing;
mod package;
mod savepoint;
mod typed;
mod user;

pub use container::{OpenSession, Sessions};
pub use extractor::Session;
pub use flash::{FlashMessage, Level};
pub use listing::{SessionHandle, UserSession, MAX_LABEL_BYTES};
pub use package::Package;
pub use savepoint::Savepoint;
pub use typed::TypedPackage;
