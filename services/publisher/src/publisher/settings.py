"""Publisher settings (environment variables prefixed `WI_`)."""

from __future__ import annotations

from writer_images.retry import RetryPolicy
from writer_images.settings import JobSettings, SiteSecretsSettings

SCHEMA = "publisher"


class PublisherSettings(JobSettings, SiteSecretsSettings):
    service_name: str = "publisher"
    http_port: int = 8002
    # One group for every publisher instance (docs/architecture.md); tests give each publisher under test its own.
    consumer_group: str = "publisher"
    db_pool_max: int = 20
    # WordPress hosts fall over under bulk publishing: at most this many requests in flight per site.
    per_site_limit: int = 2
    # Publish jobs per site at once: more than the request limit, so that one job's database work overlaps
    # another's WordPress calls while the host still sees at most `per_site_limit` requests.
    per_site_jobs: int = 4
    # Idempotent WordPress requests (reads, updates of a known id) are retried in place this many times.
    wp_request_attempts: int = 3
    wp_request_backoff_base_s: float = 0.25
    wp_connect_timeout_s: float = 5.0
    wp_timeout_s: float = 30.0
    # Large media get longer: upload time grows with the file and a slow host.
    wp_media_timeout_s: float = 120.0

    def request_retry(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.wp_request_attempts, base_s=self.wp_request_backoff_base_s, max_s=5.0
        )
