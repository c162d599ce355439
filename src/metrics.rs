//! What an operator sees: metrics through the `metrics` facade (feature `metrics`), and
//! the session's outcome on the request's tracing span.
//!
//! Handles are taken when a store or middleware is built (after the application installed
//! its recorder), so recording costs an atomic add, not a registry lookup. Every label
//! comes from a fixed set: never a session id, user, path or key. Without the feature the
//! types are empty and every call compiles to nothing but the span's field.

#[cfg(feature = "metrics")]
use std::time::Instant;

#[cfg(feature = "metrics")]
use metrics::{Counter, Gauge, Histogram, Label, Unit};

use crate::traced;

/// The metrics' names (the table in docs/observability.md).
#[cfg(feature = "metrics")]
mod names {
    /// OpenTelemetry's database client duration, in seconds.
    pub(super) const OPERATION_DURATION: &str = "db.client.operation.duration";
    /// OpenTelemetry's database client connection count.
    pub(super) const CONNECTION_COUNT: &str = "db.client.connection.count";
    /// Session loads, by `result`.
    pub(super) const LOADS: &str = "session.loads";
    /// Session cookies refused, by `reason`.
    pub(super) const COOKIES_REFUSED: &str = "session.cookies.refused";
    /// Units of work ended, by `outcome`.
    pub(super) const COMMITS: &str = "session.commits";
    /// Compare-and-swap retries after a concurrent commit, each rebased.
    pub(super) const MERGE_RETRIES: &str = "session.merge.retries";
    /// Unchanged sessions touched (their cookie due for refresh) or not, by `result`.
    pub(super) const TOUCHES: &str = "session.touches";
    /// Encoded session size, in bytes, at each write.
    pub(super) const SIZE: &str = "session.size";
    /// Servers of a fleet marked down.
    pub(super) const SERVERS_DOWN: &str = "session.server.marked_down";
    /// Servers of a fleet back in service.
    pub(super) const SERVERS_BACK: &str = "session.server.back";
}
#[cfg(feature = "metrics")]
use names::*;

/// The request span's field that gets the unit of work's outcome.
pub(crate) const OUTCOME_FIELD: &str = "session.outcome";

/// An enum of label values, with every value (to take a handle per value at build) and
/// each value's label.
macro_rules! labels {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            #[cfg(feature = "metrics")]
            const ALL: &[Self] = &[$(Self::$variant,)*];

            // Without the feature only the outcome's label is used, on the span.
            #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
            pub(crate) fn label(self) -> &'static str {
                match self {
                    $(Self::$variant => $label,)*
                }
            }
        }
    };
}

labels! {
    /// How a request's session load went.
    Load {
        /// A live session, named by a valid cookie.
        Hit => "hit",
        /// A valid cookie, but no live session under its id (expired, evicted, ended).
        Miss => "miss",
        /// No valid cookie: a new visitor (or a refused cookie, counted apart).
        Fresh => "fresh",
        /// The session's user was signed out everywhere.
        SignedOut => "signed_out",
        /// Its server was down and the store said to start fresh.
        Down => "down",
        /// The store failed: the request got 503.
        Error => "error",
    }
}

labels! {
    /// Why a session cookie was refused.
    Refused {
        /// Not a cookie of this crate's format, or its signature does not verify.
        Invalid => "invalid",
        /// Past its idle timeout.
        Expired => "expired",
        /// Stamped ahead of this server's clock.
        Future => "future",
    }
}

labels! {
    /// How a request's unit of work ended.
    Commit {
        /// Something was written.
        Written => "written",
        /// Nothing to write (at most a touch).
        Unchanged => "unchanged",
        /// The response's status does not commit.
        AbortedByStatus => "aborted_by_status",
        /// The handler failed, panicked or called `Session::abort`.
        AbortedByHandler => "aborted_by_handler",
        /// 409: a concurrent request changed the same key, or ended the session.
        Conflict => "conflict",
        /// 413: over the size limit.
        TooLarge => "too_large",
        /// 403: a login refused at the user's session limit (`OverLimit::RefuseLogin`).
        TooManySessions => "too_many_sessions",
        /// 503: the store failed.
        Unavailable => "unavailable",
        /// Anything else (500).
        Failed => "failed",
    }
}

labels! {
    /// What an unchanged session's commit did about its TTL.
    Touch {
        /// Touched: its cookie was due for refresh.
        Done => "done",
        /// Touched, but gone meanwhile.
        Gone => "gone",
        /// Not due: nothing sent.
        Skipped => "skipped",
        /// The store failed: the response stands, the cookie is kept as it was.
        Failed => "failed",
    }
}

labels! {
    /// A memcached command, as OpenTelemetry's `db.operation.name` names it (a
    /// compare-and-swap is a `set` or `delete` with a CAS token).
    Operation {
        /// A read.
        Get => "get",
        /// Store if absent.
        Add => "add",
        /// Store if the CAS token matches.
        Set => "set",
        /// Reset the TTL.
        Touch => "touch",
        /// Delete, maybe only at a CAS token.
        Delete => "delete",
    }
}

/// One middleware's session metrics.
pub(crate) struct SessionMetrics {
    #[cfg(feature = "metrics")]
    loads: Box<[Counter]>,
    #[cfg(feature = "metrics")]
    refused: Box<[Counter]>,
    #[cfg(feature = "metrics")]
    commits: Box<[Counter]>,
    #[cfg(feature = "metrics")]
    touches: Box<[Counter]>,
    #[cfg(feature = "metrics")]
    merge_retries: Counter,
    #[cfg(feature = "metrics")]
    size: Histogram,
}

#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
impl SessionMetrics {
    pub(crate) fn new() -> Self {
        #[cfg(feature = "metrics")]
        describe();
        Self {
            #[cfg(feature = "metrics")]
            loads: counters(LOADS, "result", Load::ALL, Load::label),
            #[cfg(feature = "metrics")]
            refused: counters(COOKIES_REFUSED, "reason", Refused::ALL, Refused::label),
            #[cfg(feature = "metrics")]
            commits: counters(COMMITS, "outcome", Commit::ALL, Commit::label),
            #[cfg(feature = "metrics")]
            touches: counters(TOUCHES, "result", Touch::ALL, Touch::label),
            #[cfg(feature = "metrics")]
            merge_retries: metrics::counter!(MERGE_RETRIES),
            #[cfg(feature = "metrics")]
            size: metrics::histogram!(SIZE),
        }
    }

    pub(crate) fn load(&self, result: Load) {
        #[cfg(feature = "metrics")]
        self.loads[result as usize].increment(1);
    }

    pub(crate) fn refused(&self, reason: Refused) {
        #[cfg(feature = "metrics")]
        self.refused[reason as usize].increment(1);
    }

    /// Counts the outcome, and records it on the current span (the request's root span,
    /// when it declares the field).
    pub(crate) fn commit(&self, outcome: Commit) {
        #[cfg(feature = "metrics")]
        self.commits[outcome as usize].increment(1);
        if traced::a_subscriber_listens() {
            tracing::Span::current().record(OUTCOME_FIELD, outcome.label());
        }
    }

    pub(crate) fn touch(&self, result: Touch) {
        #[cfg(feature = "metrics")]
        self.touches[result as usize].increment(1);
    }

    pub(crate) fn merge_retry(&self) {
        #[cfg(feature = "metrics")]
        self.merge_retries.increment(1);
    }

    pub(crate) fn size(&self, bytes: usize) {
        #[cfg(feature = "metrics")]
        self.size.record(bytes as f64);
    }
}

impl Commit {
    /// The outcome of a commit that failed with a response of `status`.
    pub(crate) fn failed(status: actix_web::http::StatusCode) -> Self {
        match status.as_u16() {
            403 => Self::TooManySessions,
            409 => Self::Conflict,
            413 => Self::TooLarge,
            503 => Self::Unavailable,
            _ => Self::Failed,
        }
    }
}

/// One memcached server's (or one `r2d2` pool's) metrics, labelled with OpenTelemetry's
/// database client attributes.
pub(crate) struct ServerMetrics {
    #[cfg(feature = "metrics")]
    labels: Vec<Label>,
    #[cfg(feature = "metrics")]
    durations: Box<[Histogram]>,
    #[cfg(feature = "metrics")]
    kind: Kind,
}

/// What else is known: a server's connections and health, or a pool's connections.
#[cfg(feature = "metrics")]
enum Kind {
    Server {
        connections: Gauge,
        down: Counter,
        back: Counter,
    },
    #[cfg(feature = "r2d2")]
    Pool { idle: Gauge, used: Gauge },
}

impl std::fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerMetrics").finish_non_exhaustive()
    }
}

/// When an operation started (nothing without the feature).
pub(crate) struct Started(#[cfg(feature = "metrics")] Instant);

/// An open connection, counted in the connection gauge until dropped.
pub(crate) struct OpenConnection(#[cfg(feature = "metrics")] Gauge);

#[cfg(feature = "metrics")]
impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
impl ServerMetrics {
    /// The metrics of the memcached server at `host:port`.
    pub(crate) fn server(host: &str, port: u16) -> Self {
        #[cfg(feature = "metrics")]
        {
            let labels = vec![
                Label::from_static_parts("db.system.name", "memcached"),
                Label::new("server.address", host.to_owned()),
                Label::new("server.port", port.to_string()),
            ];
            let kind = Kind::Server {
                connections: metrics::gauge!(CONNECTION_COUNT, labels.clone()),
                down: metrics::counter!(SERVERS_DOWN, labels.clone()),
                back: metrics::counter!(SERVERS_BACK, labels.clone()),
            };
            Self::with(labels, kind)
        }
        #[cfg(not(feature = "metrics"))]
        Self {}
    }

    /// The metrics of an `r2d2` pool, whose servers this crate does not see: only the
    /// system's name labels them.
    #[cfg(feature = "r2d2")]
    pub(crate) fn pool() -> Self {
        #[cfg(feature = "metrics")]
        {
            let labels = vec![Label::from_static_parts("db.system.name", "memcached")];
            let state = |value| with_label(&labels, "db.client.connection.state", value);
            let kind = Kind::Pool {
                idle: metrics::gauge!(CONNECTION_COUNT, state("idle")),
                used: metrics::gauge!(CONNECTION_COUNT, state("used")),
            };
            Self::with(labels, kind)
        }
        #[cfg(not(feature = "metrics"))]
        Self {}
    }

    #[cfg(feature = "metrics")]
    fn with(labels: Vec<Label>, kind: Kind) -> Self {
        describe();
        Self {
            durations: Operation::ALL
                .iter()
                .map(|op| {
                    let labels = with_label(&labels, "db.operation.name", op.label());
                    metrics::histogram!(OPERATION_DURATION, labels)
                })
                .collect(),
            kind,
            labels,
        }
    }

    pub(crate) fn start(&self) -> Started {
        Started(
            #[cfg(feature = "metrics")]
            Instant::now(),
        )
    }

    /// Records how long `op` took, and how it failed if it did (OpenTelemetry's
    /// `error.type`, [`StoreError::error_type`](crate::StoreError)).
    pub(crate) fn operation(&self, op: Operation, started: Started, failed: Option<&'static str>) {
        #[cfg(feature = "metrics")]
        {
            let seconds = started.0.elapsed().as_secs_f64();
            match failed {
                None => self.durations[op as usize].record(seconds),
                // Rare: a handle per error is taken when it happens.
                Some(error_type) => {
                    let mut labels = with_label(&self.labels, "db.operation.name", op.label());
                    labels.push(Label::from_static_parts("error.type", error_type));
                    metrics::histogram!(OPERATION_DURATION, labels).record(seconds);
                }
            }
        }
    }

    /// Counts a connection as open until the returned guard drops.
    pub(crate) fn connection(&self) -> OpenConnection {
        #[cfg(feature = "metrics")]
        match &self.kind {
            Kind::Server { connections, .. } => {
                connections.increment(1.0);
                OpenConnection(connections.clone())
            }
            #[cfg(feature = "r2d2")]
            Kind::Pool { .. } => OpenConnection(Gauge::noop()),
        }
        #[cfg(not(feature = "metrics"))]
        OpenConnection()
    }

    /// Sets a pool's connection counts from `state` (`open` in all, `idle` of them unused),
    /// asked only when there are metrics to set.
    #[cfg(feature = "r2d2")]
    pub(crate) fn pool_state(&self, state: impl FnOnce() -> (u32, u32)) {
        #[cfg(feature = "metrics")]
        if let Kind::Pool { idle, used } = &self.kind {
            let (open, unused) = state();
            idle.set(f64::from(unused));
            used.set(f64::from(open.saturating_sub(unused)));
        }
    }

    /// Counts the server marked down (`up == false`) or back in service.
    pub(crate) fn health(&self, up: bool) {
        #[cfg(feature = "metrics")]
        match &self.kind {
            Kind::Server { down, back, .. } => if up { back } else { down }.increment(1),
            #[cfg(feature = "r2d2")]
            Kind::Pool { .. } => {}
        }
    }
}

/// `labels` and one more.
#[cfg(feature = "metrics")]
fn with_label(labels: &[Label], key: &'static str, value: &'static str) -> Vec<Label> {
    let mut labels = labels.to_vec();
    labels.push(Label::from_static_parts(key, value));
    labels
}

#[cfg(feature = "metrics")]
fn counters<T: Copy>(
    name: &'static str,
    label: &'static str,
    all: &[T],
    value: fn(T) -> &'static str,
) -> Box<[Counter]> {
    all.iter()
        .map(|v| metrics::counter!(name, label => value(*v)))
        .collect()
}

/// Units and descriptions, for recorders that show them; repeating them is harmless.
#[cfg(feature = "metrics")]
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        OPERATION_DURATION,
        Unit::Seconds,
        "Duration of memcached operations"
    );
    describe_gauge!(CONNECTION_COUNT, "Open connections to memcached");
    describe_counter!(LOADS, "Session loads, by result");
    describe_counter!(COOKIES_REFUSED, "Session cookies refused, by reason");
    describe_counter!(COMMITS, "Requests' session units of work, by outcome");
    describe_counter!(
        MERGE_RETRIES,
        "Compare-and-swap retries after concurrent commits"
    );
    describe_counter!(TOUCHES, "Unchanged sessions' TTL refreshes, by result");
    describe_histogram!(SIZE, Unit::Bytes, "Encoded session size at each write");
    describe_counter!(SERVERS_DOWN, "memcached servers marked down");
    describe_counter!(SERVERS_BACK, "memcached servers back in service");
}
