//! The Prometheus recorder as `examples/metrics.rs` installs it; the load benchmark
//! (`bench/`) includes this file to measure the same set-up.

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Installs a Prometheus recorder with histograms as buckets (aggregatable across
/// instances, unlike summaries). Call it before building the store and middleware: they
/// take their metric handles then. The caller runs `run_upkeep` (or renders) every few
/// seconds.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("db.client.operation.duration".into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full("session.size".into()),
            &[256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0],
        )?
        .install_recorder()
}
