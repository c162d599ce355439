//! The least a recorder can do per sample: counters and gauges are atomics, a histogram is
//! a count and a sum. The `memcache-metrics-atomic` server installs it, to tell this crate's
//! own instrumentation (handles, clock reads) from the cost of the Prometheus exporter,
//! which keeps every histogram sample until it renders.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

#[derive(Default)]
struct CountAndSum {
    count: AtomicU64,
    sum: AtomicU64,
}

impl HistogramFn for CountAndSum {
    fn record(&self, value: f64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let add = |bits| Some((f64::from_bits(bits) + value).to_bits());
        // Never fails: the closure always returns `Some`.
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, add);
    }
}

struct AtomicRecorder;

impl Recorder for AtomicRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(AtomicU64::new(0)))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(AtomicU64::new(0)))
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(CountAndSum::default()))
    }
}

/// Installs the recorder (before the store and middleware take their handles).
pub(crate) fn install() -> std::io::Result<()> {
    metrics::set_global_recorder(AtomicRecorder).map_err(std::io::Error::other)
}
