"""The inbox forgets event ids once no redelivery can bring them back, and only those."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from pydantic import ValidationError

from writer_images import inbox
from writer_images.inbox import InboxPruner
from writer_images.settings import ServiceSettings

DAY_S = 24 * 3600


async def _handled(pool: asyncpg.Pool, days_ago: float, count: int) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(count)]
    async with pool.acquire() as conn:
        assert await inbox.claim_many(conn, [(i, "image.generated") for i in ids]) == set(ids)
        await conn.execute(
            "UPDATE inbox SET handled_at = now() - make_interval(secs => $2) WHERE event_id = ANY($1)",
            ids,
            days_ago * DAY_S,
        )
    return ids


async def _kept(pool: asyncpg.Pool) -> set[uuid.UUID]:
    return {r["event_id"] for r in await pool.fetch("SELECT event_id FROM inbox")}


async def test_ids_older_than_the_retention_are_pruned_in_batches_and_newer_ones_kept(
    service_schema: tuple[str, asyncpg.Pool],
) -> None:
    _, pool = service_schema
    await pool.execute(inbox.inbox_retention_ddl())
    old = await _handled(pool, days_ago=15, count=25)
    recent = await _handled(pool, days_ago=13, count=5)

    pruned = await inbox.prune(pool, older_than_s=14 * DAY_S, batch=10)

    assert pruned == 25
    assert await _kept(pool) == set(recent)
    assert not set(old) & await _kept(pool)


async def test_a_pruned_id_that_is_delivered_again_is_handled_again_so_the_retention_must_outlast_the_topics(
    service_schema: tuple[str, asyncpg.Pool],
) -> None:
    _, pool = service_schema
    [event_id] = await _handled(pool, days_ago=15, count=1)
    await inbox.prune(pool, older_than_s=14 * DAY_S)

    async with pool.acquire() as conn:
        assert await inbox.claim(conn, event_id, "image.generated")  # new again: hence the retention's floor


async def test_the_pruner_prunes_at_start_and_then_every_period_until_stopped(
    service_schema: tuple[str, asyncpg.Pool],
) -> None:
    _, pool = service_schema
    await _handled(pool, days_ago=20, count=3)
    pruner = InboxPruner(pool, retention_s=14 * DAY_S, every_s=0.2)
    running = asyncio.create_task(pruner.run())
    try:
        await asyncio.sleep(0.1)
        assert await _kept(pool) == set()
        later = await _handled(pool, days_ago=30, count=2)
        await asyncio.sleep(0.4)
        assert not set(later) & await _kept(pool)
    finally:
        pruner.stop()
        await asyncio.wait_for(running, timeout=5)


def test_a_retention_shorter_than_a_day_is_refused_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WI_INBOX_RETENTION_S", "60")
    with pytest.raises(ValidationError, match="inbox_retention_s"):
        ServiceSettings()
    monkeypatch.setenv("WI_INBOX_RETENTION_S", str(DAY_S))

    assert ServiceSettings().inbox_retention_s == DAY_S
