//! Wall-clock time: the whole seconds that cookies, records and memcached use, and the
//! microseconds that order flash messages.

use std::time::{SystemTime, UNIX_EPOCH};

/// How far, in seconds, a time stamped by another server of the same site (a cookie's, a
/// session's creation, a login's) may lie ahead of this server's clock, a few seconds off.
/// Further ahead, it was stamped by a clock that ran wrong, and is not trusted.
pub(crate) const CLOCK_SKEW: u64 = 60;

/// Unix time in whole seconds; a clock before 1970 reads as 0 rather than failing.
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix time in microseconds; 0 before 1970, like [`now_unix`].
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
