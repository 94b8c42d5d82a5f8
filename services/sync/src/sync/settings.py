"""Sync service settings (environment variables prefixed `WI_`)."""

from __future__ import annotations

from writer_images.settings import SiteSecretsSettings


class SyncSettings(SiteSecretsSettings):
    service_name: str = "sync"
    http_port: int = 8003
    consumer_group: str = "sync"

    # Webhook receiver. The bridge plugin's bodies are a few hundred bytes; 64 KiB leaves room for long titles.
    webhook_max_body_bytes: int = 64 * 1024
    webhook_tolerance_s: int = 300
    # A retried webhook keeps its id for as long as the plugin retries (50 attempts, minutes apart): keep ids a week.
    webhook_retention_s: int = 7 * 24 * 3600

    # The relay waits this long after a wake-up so that webhooks (one event per commit) go out in batches:
    # at a few hundred webhooks per second this halves the relay's share of the CPU, for +50 ms of latency.
    outbox_linger_s: float = 0.05  # webhooks commit one event per transaction: relay them in small batches

    # Reconciler: every site is polled every `reconcile_interval_s`; failures back off per site.
    reconcile_enabled: bool = True
    reconcile_interval_s: float = 300.0
    reconcile_tick_s: float = 1.0
    reconcile_concurrency: int = 4
    reconcile_page_size: int = 100
    reconcile_max_pages: int = 1000
    reconcile_timeout_s: float = 15.0
    # Posts modified within the same second as the watermark are fetched again (modified_after is exclusive
    # and WordPress keeps seconds); what was already seen emits nothing.
    reconcile_overlap_s: int = 1
    # WordPress lists by local time, which runs back when clocks go back: a pass starts that much before its
    # watermark (see sync.domain.site_time). For a site whose time zone cannot be read, this much.
    reconcile_unknown_zone_setback_s: int = 2 * 3600
    reconcile_backoff_base_s: float = 5.0
    reconcile_backoff_max_s: float = 900.0

    # Operators call POST /v1/sync/reconcile/{site_id} with `Authorization: Bearer <token>`; empty disables it.
    operator_token: str = ""
