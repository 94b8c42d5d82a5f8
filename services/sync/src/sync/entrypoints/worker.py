"""The reconciler as a runtime worker: every due site gets a pass, a few at a time, each on its own."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg

from sync.adapters import repository
from sync.service.reconcile import Reconciler
from sync.settings import SyncSettings
from writer_images.logging import get_logger

log = get_logger(__name__)

_PRUNE_EVERY_S = 3600.0


class ReconcilerWorker:
    def __init__(self, pool: asyncpg.Pool, reconciler: Reconciler, settings: SyncSettings) -> None:
        self._pool = pool
        self._reconciler = reconciler
        self._settings = settings
        self._stopping = asyncio.Event()
        self._running: dict[int, asyncio.Task[object]] = {}
        self._last_prune = 0.0

    async def run(self) -> None:
        try:
            # Webhooks sent while this service was down are lost or late: look at every healthy site now.
            await repository.schedule_all_now(self._pool)
        except Exception as exc:
            log.warning("could not schedule the start-up passes", error=repr(exc))
        while not self._stopping.is_set():
            try:
                await self._start_due_passes()
                await self._prune_now_and_then()
            except Exception as exc:  # the database may be away for a while: keep the worker alive
                log.warning("reconciler tick failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._settings.reconcile_tick_s)
        for task in self._running.values():
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    def stop(self) -> None:
        self._stopping.set()

    async def _start_due_passes(self) -> None:
        free = self._settings.reconcile_concurrency - len(self._running)
        if free <= 0:
            return
        for site_id in await repository.due_sites(self._pool, free + len(self._running)):
            if site_id in self._running or len(self._running) >= self._settings.reconcile_concurrency:
                continue
            task = asyncio.create_task(self._reconciler.run_scheduled(site_id), name=f"reconcile-{site_id}")
            self._running[site_id] = task
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[object]) -> None:
        for site_id, running in list(self._running.items()):
            if running is task:
                del self._running[site_id]

    async def _prune_now_and_then(self) -> None:
        if time.monotonic() - self._last_prune < _PRUNE_EVERY_S:
            return
        self._last_prune = time.monotonic()
        pruned = await repository.prune_deliveries(self._pool, self._settings.webhook_retention_s)
        if pruned:
            log.info("old webhook ids pruned", count=pruned)
