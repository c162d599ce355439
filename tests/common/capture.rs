//! The test subscriber of the integration binary and `subscriber_at_info.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records the `session.outcome` values recorded on spans, and the store operations' spans,
/// keeping the span stack so that `Span::current()` works.
#[derive(Default)]
pub struct Capture {
    next: AtomicU64,
    spans: Mutex<HashMap<u64, &'static Metadata<'static>>>,
    stack: Mutex<Vec<u64>>,
    /// The `session.outcome` values, in the order recorded.
    pub outcomes: Arc<Mutex<Vec<String>>>,
    /// The `op` of each store operation's span, in the order made.
    pub store_ops: Arc<Mutex<Vec<String>>>,
    /// The most verbose level it takes (all, when `None`).
    pub max_level: Option<LevelFilter>,
}

/// Collects one field's values as text.
struct Field1<'a>(&'a str, Vec<String>);

impl Visit for Field1<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == self.0 {
            self.1.push(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == self.0 {
            self.1.push(format!("{value:?}"));
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.max_level.is_none_or(|max| *metadata.level() <= max)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.max_level
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.spans.lock().unwrap().insert(id, span.metadata());
        if span.metadata().name() == "session.store" {
            let mut op = Field1("op", Vec::new());
            span.record(&mut op);
            self.store_ops.lock().unwrap().extend(op.1);
        }
        Id::from_u64(id)
    }

    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut outcome = Field1("session.outcome", Vec::new());
        values.record(&mut outcome);
        self.outcomes.lock().unwrap().extend(outcome.1);
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, span: &Id) {
        self.stack.lock().unwrap().push(span.into_u64());
    }

    fn exit(&self, _: &Id) {
        self.stack.lock().unwrap().pop();
    }

    fn current_span(&self) -> tracing_core::span::Current {
        let top = self.stack.lock().unwrap().last().copied();
        match top.and_then(|id| Some((id, *self.spans.lock().unwrap().get(&id)?))) {
            Some((id, meta)) => tracing_core::span::Current::new(Id::from_u64(id), meta),
            None => tracing_core::span::Current::none(),
        }
    }
}
