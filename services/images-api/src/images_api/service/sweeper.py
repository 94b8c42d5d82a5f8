"""The sweeper: work whose result is overdue is re-requested (bounded), then failed with a reason.
This also heals a broker that lost its data. Several API instances may run it: SKIP LOCKED splits the rows."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from images_api.service.generation import sweep_overdue_items
from images_api.service.publishing import sweep_overdue_publications
from images_api.settings import ImagesApiSettings
from writer_images.logging import get_logger
from writer_images.outbox import Outbox

log = get_logger(__name__)


class Sweeper:
    def __init__(self, pool: asyncpg.Pool, outbox: Outbox, settings: ImagesApiSettings) -> None:
        self._pool = pool
        self._outbox = outbox
        self._settings = settings
        self._stopping = asyncio.Event()

    async def sweep_once(self) -> int:
        s = self._settings
        async with self._pool.acquire() as conn, conn.transaction():
            items = await sweep_overdue_items(
                conn, self._outbox, s.sweeper_max_rerequests, s.generation_timeout_s, s.model_sizes()
            )
        async with self._pool.acquire() as conn, conn.transaction():
            pubs = await sweep_overdue_publications(
                conn, self._outbox, s.sweeper_max_rerequests, s.publish_timeout_s
            )
        return items + pubs

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sweep_once()
            except Exception as exc:  # database away: try again next round
                log.warning("sweep failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._settings.sweeper_interval_s)

    def stop(self) -> None:
        self._stopping.set()
