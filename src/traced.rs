//! Whether a span made now would reach anyone: `tracing`'s span macros cost even when
//! nothing reads them.

use tracing::dispatcher;
use tracing::subscriber::NoSubscriber;

/// Whether a span made now may be read: by a `tracing` subscriber, or by a `log` logger at
/// debug level or finer (tracing's `log` feature, which actix-web turns on, writes spans to
/// `log` while no subscriber has ever been set in the process). With neither, a span's
/// macro still builds its fields for the logger and drops the span: about 150
/// instructions a store operation under callgrind, for nothing. (With a logger at debug
/// level once a subscriber was set and gone, the span is made and tracing logs nothing:
/// as before, only not cheaper.)
pub(crate) fn may_be_read() -> bool {
    log::max_level() >= log::LevelFilter::Debug
        || !dispatcher::get_default(|current| current.is::<NoSubscriber>())
}
