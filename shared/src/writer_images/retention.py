"""Retention: rows that are needed only for a while (handled event ids, finished jobs) are deleted in batches,
once an hour, by a `Pruner` running beside the service's other workers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import asyncpg

from writer_images.logging import get_logger

log = get_logger(__name__)

BATCH = 10_000


async def delete_in_batches(
    pool: asyncpg.Pool, table: str, older: str, older_than_s: float, batch: int
) -> int:
    """Delete the rows of `table` for which `older` holds (SQL in which `$1` is `older_than_s`, in seconds),
    `batch` per transaction so that no lock is held long; returns how many went."""
    deleted_in_all = 0
    while True:
        async with pool.acquire() as conn:
            deleted: int = await conn.fetchval(
                f"""
                WITH gone AS (
                    DELETE FROM {table} WHERE ctid = ANY(ARRAY(
                        SELECT ctid FROM {table} WHERE {older} LIMIT $2
                    ))
                    RETURNING 1
                )
                SELECT count(*) FROM gone
                """,
                older_than_s,
                batch,
            )
        deleted_in_all += deleted
        if deleted < batch:
            return deleted_in_all


class Pruner:
    """Runs `prune(pool)` at start and then every `every_s` until stopped; a failure (the database away)
    waits for the next turn."""

    def __init__(
        self, pool: asyncpg.Pool, table: str, prune: Callable[[asyncpg.Pool], Awaitable[int]], every_s: float
    ) -> None:
        self._pool = pool
        self._table = table
        self._prune = prune
        self._every_s = every_s
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                pruned = await self._prune(self._pool)
                if pruned:
                    log.info("old rows pruned", table=self._table, count=pruned)
            except Exception as exc:  # database away: try again next time
                log.warning("prune failed", table=self._table, error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._every_s)

    def stop(self) -> None:
        self._stopping.set()
