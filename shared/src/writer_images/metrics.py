"""Prometheus metrics shared by every service (one registry per process, served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_HANDLED = Counter(
    "wi_events_handled_total", "Events handled by consumers", ["group", "event_type", "outcome"]
)
EVENTS_DEAD_LETTERED = Counter("wi_events_dead_lettered_total", "Messages sent to a DLQ", ["group", "topic"])
CONSUMER_LAG = Gauge("wi_consumer_lag", "Messages behind the partition end", ["group", "topic", "partition"])
OUTBOX_BACKLOG = Gauge("wi_outbox_backlog", "Rows waiting in the outbox", ["schema"])
OUTBOX_RELAYED = Counter("wi_outbox_relayed_total", "Rows relayed from the outbox to Kafka", ["schema"])
JOBS = Counter("wi_jobs_total", "Jobs finished by the job runner", ["queue", "outcome"])
HTTP_LATENCY = Histogram(
    "wi_http_request_duration_seconds", "HTTP request latency", ["service", "method", "route", "status"]
)
PROVIDER_LATENCY = Histogram(
    "wi_provider_latency_seconds", "Image provider call latency", ["provider", "model", "outcome"]
)
PROVIDER_COST = Counter("wi_provider_cost_usd_total", "Estimated provider spend", ["provider", "model"])
