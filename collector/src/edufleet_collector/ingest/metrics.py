"""Prometheus metrics of ingest, registered on the default registry.

The web app serves the same registry, so a process running both exposes one
``/metrics``. Names follow ``edufleet_ingest_<what>_<unit>``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0,
    60.0, 300.0, 3600.0,
)  # fmt: skip

messages = Counter(
    "edufleet_ingest_messages_total",
    "Messages received from the broker, by topic kind",
    ["kind"],
)
rejected = Counter(
    "edufleet_ingest_rejected_total",
    "Messages (or samples within them) refused at the edge, by reason",
    ["reason"],
)
samples = Counter(
    "edufleet_ingest_samples_total", "Telemetry samples written to the database"
)
duplicate_samples = Counter(
    "edufleet_ingest_duplicate_samples_total",
    "Telemetry samples already stored (redelivered or replayed), skipped",
)
batch_messages = Histogram(
    "edufleet_ingest_batch_messages",
    "Messages per committed batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000),
)
commit_seconds = Histogram(
    "edufleet_ingest_commit_seconds",
    "Time to write and commit one batch",
    buckets=LATENCY_BUCKETS,
)
broker_to_commit_seconds = Histogram(
    "edufleet_ingest_broker_to_commit_seconds",
    "From a message's arrival at ingest to the commit of its batch",
    buckets=LATENCY_BUCKETS,
)
sample_lag_seconds = Histogram(
    "edufleet_ingest_sample_lag_seconds",
    "From a telemetry sample's own timestamp to its commit",
    buckets=LATENCY_BUCKETS,
)
database_errors = Counter(
    "edufleet_ingest_database_errors_total",
    "Failed batch writes (each is retried), by error class",
    ["error"],
)
pending = Gauge(
    "edufleet_ingest_pending_messages",
    "Messages received and waiting for a batch (bounded by the Receive Maximum)",
)
tickets_opened = Counter(
    "edufleet_ingest_tickets_opened_total",
    "Tickets the tickets service opened or reopened for ingested events",
    ["source"],
)
silent_devices = Counter(
    "edufleet_ingest_silent_devices_total",
    "Devices the silence detector marked silent, by whether it counted as a fault",
    ["fault"],
)
