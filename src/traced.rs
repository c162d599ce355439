//! Whether a span made now, or a field recorded on one, would reach anyone: `tracing`'s
//! span macros cost even when nothing reads them.

use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
use tracing::Level;

/// Whether a debug-level span made now may be read: by a `tracing` subscriber that takes
/// debug level, or by a `log` logger that does (tracing's `log` feature, which actix-http
/// and actix-codec turn on, writes spans to `log` while no subscriber has ever been set in
/// the process). With neither, a span's macro still builds its fields for the logger and
/// drops the span: about 150 instructions a store operation under callgrind, for nothing.
/// These are the gates tracing's macros apply, read first: two atomic loads (the
/// compiled-in levels are constants). Tracing's level is the most verbose of the
/// subscribers alive at its last rebuild (each new `Dispatch`); it may stay above that
/// once one is dropped, which only makes spans that nothing reads.
pub(crate) fn debug_span_may_be_read() -> bool {
    (Level::DEBUG <= STATIC_MAX_LEVEL && Level::DEBUG <= LevelFilter::current())
        || (log::Level::Debug <= log::STATIC_MAX_LEVEL && log::Level::Debug <= log::max_level())
}

/// Whether a field recorded on the current span, whatever its level, may be read: some
/// subscriber takes some level. With none, the current span is no span, and a `log`
/// logger gets nothing from a record.
pub(crate) fn a_subscriber_listens() -> bool {
    STATIC_MAX_LEVEL != LevelFilter::OFF && LevelFilter::current() != LevelFilter::OFF
}
