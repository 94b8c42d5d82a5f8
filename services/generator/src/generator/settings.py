"""Generator settings (environment variables prefixed `WI_`)."""

from __future__ import annotations

import os

from writer_images.settings import JobSettings


class GeneratorSettings(JobSettings):
    service_name: str = "generator"
    http_port: int = 8001
    db_pool_max: int = 20  # jobs hold a connection only between awaits, but 32 of them share the pool
    consumer_group: str = "generator"
    # Each job commits its notices and its result in transactions of their own: relaying what 20 ms gather
    # halves the relay's round trips and broker requests per image, for 20 ms on a path measured in seconds.
    outbox_linger_s: float = 0.02
    # Results come back from the render pool one at a time, a few ms apart under load: a result waits this
    # long for others to share its commit statement (a statement per image cost ≈0.4 core-ms of Postgres and
    # client CPU; 25 ms groups ≈4 and saved ≈0.15 core-ms more than 10 ms), for 25 ms on a path measured in
    # seconds. 0 commits each result as it comes.
    result_linger_s: float = 0.025

    # Providers. The request event names provider, model, size and format; how to reach them is ours.
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    provider_timeout_s: float = 120.0
    replay_deadline_s: float = (
        600.0  # deadline given to requests replayed from the DLQ  # generation often takes 10–60 s
    )
    render_workers: int = os.cpu_count() or 1

    # Rate limits per provider key (`openai:<model>`, `local`), shared by every instance through Postgres.
    # 0 means unlimited. The burst is the bucket's capacity: how many calls may start at once after a pause.
    openai_images_per_minute: float = 5.0
    openai_burst: int = 1
    local_images_per_minute: float = 0.0
    local_burst: int = 1

    # Concurrency: per process, per account (job group) and per provider.
    # Enough jobs in flight to keep the render pool's queue full while others wait on Postgres or storage.
    job_concurrency: int = 32
    per_account_limit: int = 16
    openai_concurrency: int = 8
    local_concurrency: int = 0  # 0: twice the render workers, enough to keep every core busy

    # Job leases and retries of a failed generation attempt.

    def provider_concurrency(self, provider: str) -> int:
        if provider == "openai":
            return max(1, self.openai_concurrency)
        return self.local_concurrency or 2 * max(1, self.render_workers)

    def rate_limit(self, provider: str) -> tuple[float, int]:
        """(images per minute, burst) for a provider; a rate of 0 means unlimited."""
        if provider == "openai":
            return self.openai_images_per_minute, self.openai_burst
        return self.local_images_per_minute, self.local_burst
