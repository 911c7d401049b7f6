"""The model server's Prometheus metrics (``GET /metrics``), in a registry of its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Latency buckets (seconds), dense around the 20 ms goal.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1.0)


@dataclass
class ServingMetrics:
    """Every metric the server exports; one instance per app."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "trainyard_serving_requests",
            "Prediction requests, by pipeline and HTTP status",
            ["pipeline", "status"],
            registry=r,
        )
        self.errors = Counter(
            "trainyard_serving_errors",
            "Prediction requests that failed (4xx refused input or 5xx), by pipeline and kind",
            ["pipeline", "kind"],
            registry=r,
        )
        self.latency = Histogram(
            "trainyard_serving_request_seconds",
            "Time to answer a prediction request, by pipeline",
            ["pipeline"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rows = Counter(
            "trainyard_serving_predicted_rows",
            "Rows predicted, by pipeline",
            ["pipeline"],
            registry=r,
        )
        self.model_version = Gauge(
            "trainyard_serving_model_version",
            "The registered model version serving each pipeline",
            ["pipeline"],
            registry=r,
        )
        self.model_swaps = Counter(
            "trainyard_serving_model_swaps",
            "Times a pipeline's served model was replaced by a newly loaded champion",
            ["pipeline"],
            registry=r,
        )
        self.model_load_failures = Counter(
            "trainyard_serving_model_load_failures",
            "Failed alias lookups or loads (the previous version kept serving)",
            ["pipeline"],
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "trainyard_serving_webhook_deliveries",
            "Authentic MLflow webhook deliveries, by whether they named a followed champion",
            ["followed"],
            registry=r,
        )
        self.log_backlog_rows = Gauge(
            "trainyard_serving_prediction_log_backlog_rows",
            "Logged predictions not yet written to S3",
            registry=r,
        )
        self.log_flush_failures = Counter(
            "trainyard_serving_prediction_log_flush_failures",
            "Prediction log flushes to S3 that failed (retried at the next flush)",
            registry=r,
        )
        self.log_dropped_rows = Counter(
            "trainyard_serving_prediction_log_dropped_rows",
            "Logged predictions dropped because the backlog was full (S3 unreachable too long)",
            registry=r,
        )
        self.log_spilled_rows = Counter(
            "trainyard_serving_prediction_log_spilled_rows",
            "Logged predictions S3 refused at shutdown, kept on local disk for the next start",
            registry=r,
        )
        self.log_recovered_rows = Counter(
            "trainyard_serving_prediction_log_recovered_rows",
            "Logged predictions taken back from local disk at start (spilled at a shutdown)",
            registry=r,
        )
        self.log_written_rows = Counter(
            "trainyard_serving_prediction_log_written_rows",
            "Logged predictions written to S3",
            registry=r,
        )
