//! Whether a span made now would reach anyone: `tracing`'s span macros cost even when
//! nothing reads them.

use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
use tracing::Level;

/// Whether a span at `level` made now may be read, or a field recorded on the current span
/// at `level` or above: by a `tracing` subscriber whose level lets it through, or by a
/// `log` logger at that level (tracing's `log` feature, which actix-web turns on, writes
/// spans to `log` while no subscriber has ever been set in the process). With neither, a
/// span's macro still builds its fields for the logger and drops the span: about 150
/// instructions a store operation under callgrind, for nothing. Both answers are one
/// atomic load: tracing's is the most verbose level of any subscriber made so far, which
/// a subscriber gone need not lower (then spans are made that nothing reads, as before).
pub(crate) fn may_be_read(level: Level) -> bool {
    (level <= STATIC_MAX_LEVEL && level <= LevelFilter::current())
        || log::max_level() >= as_log(level)
}

/// `level` as `log` names it.
fn as_log(level: Level) -> log::LevelFilter {
    match level {
        Level::ERROR => log::LevelFilter::Error,
        Level::WARN => log::LevelFilter::Warn,
        Level::INFO => log::LevelFilter::Info,
        Level::DEBUG => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}
