import Foundation
import Metrics
import Prometheus

/// swift-metrics bootstrapped once per process with the Prometheus backend; every series the
/// worker records lands in the registry `/metrics` serves.
enum MetricsBackend {
    static func bootstrap() -> PrometheusCollectorRegistry { shared }

    private static let shared: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Stages take from a fraction of a second (a send) to many minutes (a task running).
        factory.durationHistogramBuckets["crynux_stage_duration_seconds"] =
            [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600].map { .milliseconds(Int64($0 * 1000)) }
        factory.valueHistogramBuckets["crynux_claim_batch_size"] = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
        MetricsSystem.bootstrap(factory)
        return registry
    }()
}
