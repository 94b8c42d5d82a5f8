"""The render pool: the process pool local renders and renditions run in, rebuilt when a worker dies."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import ParamSpec, TypeVar

from writer_images.logging import get_logger

P = ParamSpec("P")
T = TypeVar("T")

log = get_logger(__name__)


class RenderPool(Executor):
    """A process pool that outlives its workers.

    A `ProcessPoolExecutor` whose worker dies (the OOM killer, a segfault in a codec) is broken for good: every
    later submit raises BrokenProcessPool. This one builds a new pool when a submit meets the broken one, once
    per breakage however many jobs meet it, and shuts the broken one down. Work in flight when the worker died
    still fails with BrokenProcessPool: it may be what killed the worker, so whether to run it again is the
    caller's decision (jobs retry it with backoff).
    """

    def __init__(self, max_workers: int) -> None:
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._closed = False
        self._replacements = 0
        self._executor = self._new_executor()

    @property
    def replacements(self) -> int:
        """How many broken pools were replaced since the start."""
        return self._replacements

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        executor = self._executor
        try:
            return executor.submit(fn, *args, **kwargs)
        except BrokenProcessPool:
            # Refused before reaching a worker, so this work did not break the pool: it runs in the new one.
            return self._replace(executor).submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            executor = self._executor
        executor.shutdown(wait=wait, cancel_futures=cancel_futures)

    def _replace(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        # Under the lock and only if `broken` is still current: concurrent submits that all met the broken pool
        # build one new pool between them, not one each.
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._executor is broken:
                self._executor = self._new_executor()
                self._replacements += 1
                # Its manager thread ends and reaps the workers by itself; this releases its queues and pipes.
                broken.shutdown(wait=False, cancel_futures=True)
                log.warning("render pool replaced after a worker died", replacements=self._replacements)
            return self._executor

    def _new_executor(self) -> ProcessPoolExecutor:
        # forkserver, not fork: the parent runs an event loop and threads (Kafka client, HTTP server), and
        # forking a threaded process can copy a held lock into the child.
        return ProcessPoolExecutor(
            max_workers=self._max_workers, mp_context=multiprocessing.get_context("forkserver")
        )


def create_render_pool(max_workers: int | None = None) -> RenderPool:
    """A pool for `render_prompt_png` and the imaging functions; one worker per core by default.

    As with spawn, forkserver workers import the main module, so a script that creates the pool needs the
    `if __name__ == "__main__":` guard.
    """
    return RenderPool(max_workers or os.cpu_count() or 1)
