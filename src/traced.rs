//! Whether a span made now would reach anyone: `tracing`'s span macros cost even when
//! nothing reads them.

use tracing::dispatcher;
use tracing::subscriber::NoSubscriber;

/// Whether a span made now may be read: by a `tracing` subscriber, or, with none, by a
/// `log` logger at debug level or finer (tracing's `log` feature, which actix-web turns on,
/// writes spans to `log` when no subscriber is set). With neither, a span's macro still
/// builds its fields for the logger and drops the span: about 150 instructions a store
/// operation under callgrind, for nothing.
pub(crate) fn may_be_read() -> bool {
    log::max_level() >= log::LevelFilter::Debug
        || !dispatcher::get_default(|current| current.is::<NoSubscriber>())
}
