//! Wall-clock time in the whole seconds that cookies, records and memcached use.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in whole seconds; a clock before 1970 reads as 0 rather than failing.
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
