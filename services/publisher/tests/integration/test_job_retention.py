"""The publisher deletes its finished jobs once their retention has passed, and keeps everything else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from publisher.settings import SCHEMA
from writer_images.testing.waiting import eventually


async def test_the_publisher_deletes_finished_jobs_once_their_retention_has_passed(
    harness_factory: Callable[[dict[str, str]], Any], fresh_database_url: str
) -> None:
    harness = harness_factory({"WI_JOB_RETENTION_S": "3600"})
    harness.start()  # its schema, migrated
    harness.stop()
    conn = await asyncpg.connect(fresh_database_url, server_settings={"search_path": SCHEMA})
    try:
        await conn.execute(
            """
            INSERT INTO jobs (queue, dedupe_key, group_key, payload, status, updated_at, run_after) VALUES
                ('publish', 'old-done', 'site-1', '{}', 'done', now() - interval '2 hours', now()),
                ('publish', 'old-failed', 'site-1', '{}', 'failed', now() - interval '2 hours', now()),
                ('publish', 'recent-done', 'site-1', '{}', 'done', now() - interval '10 minutes', now()),
                -- waiting for a retry tomorrow (not run here), its row untouched for two hours: kept
                ('publish', 'waiting', 'site-1', '{}', 'ready', now() - interval '2 hours', now() + interval '1 day')
            """
        )

        harness.start()  # the pruner's first turn comes as the service starts
        # Only these four rows are read: a new consumer group reads the session's earlier publish requests from
        # the shared broker and may add jobs of its own meanwhile (a CI run failed on an exact table).
        ours = ["old-done", "old-failed", "recent-done", "waiting"]

        async def kept() -> set[str]:
            rows = await conn.fetch("SELECT dedupe_key FROM jobs WHERE dedupe_key = ANY($1)", ours)
            return {row["dedupe_key"] for row in rows}

        await eventually(
            kept, lambda left: left == {"recent-done", "waiting"}, what="the prune", timeout_s=10
        )
    finally:
        await conn.close()
