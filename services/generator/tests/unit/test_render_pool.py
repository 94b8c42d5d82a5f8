"""The render pool survives its workers: a dead worker costs the work in flight, never the work after it."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import pytest

from generator.adapters.render_pool import create_render_pool


def test_work_submitted_after_a_worker_died_runs_in_one_new_pool() -> None:
    pool = create_render_pool(max_workers=2)
    try:
        worker = pool.submit(os.getpid).result(timeout=30)
        in_flight = [pool.submit(time.sleep, 30) for _ in range(2)]
        os.kill(worker, signal.SIGKILL)  # as the OOM killer would
        wait(in_flight, timeout=30)
        # Submitted together from several threads, as jobs could: one replacement between them.
        with ThreadPoolExecutor(max_workers=8) as submitters:
            pids = list(submitters.map(lambda _: pool.submit(os.getpid).result(timeout=30), range(8)))
    finally:
        pool.shutdown(cancel_futures=True)

    assert all(isinstance(future.exception(), BrokenProcessPool) for future in in_flight)
    assert worker not in pids
    assert len(set(pids)) <= 2
    assert pool.replacements == 1


def test_a_shut_down_pool_takes_no_more_work_even_after_a_worker_died() -> None:
    pool = create_render_pool(max_workers=1)
    worker = pool.submit(os.getpid).result(timeout=30)
    in_flight = pool.submit(time.sleep, 30)
    os.kill(worker, signal.SIGKILL)
    wait([in_flight], timeout=30)
    pool.shutdown()

    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(os.getpid)
    assert pool.replacements == 0
