"""The render pool runs calls in worker processes fed from the event loop, and survives its workers: a dead
worker costs the calls it held, never the calls after them."""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import signal
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures.process import BrokenProcessPool

import pytest

from generator.adapters.imaging import RenditionSpec, render_renditions
from generator.adapters.providers.local import render_prompt_png
from generator.adapters.render_pool import CALLS_PER_WORKER, RemoteError, RenderPool, create_render_pool


@pytest.fixture
async def pool() -> AsyncIterator[RenderPool]:
    pool = create_render_pool(workers=2)
    yield pool
    pool.shutdown(cancel_futures=True)


# What the workers run must be importable by name there (test modules are not: pytest imports them by
# path), so these tests give them standard-library functions.


async def test_calls_run_in_the_worker_processes_and_return_their_results(pool: RenderPool) -> None:
    pids = await asyncio.gather(pool.run(os.getpid), pool.run(os.getpid))  # one to each idle worker

    assert os.getpid() not in pids
    assert sorted(pids) == sorted(pool.pids)
    assert await pool.run(sum, [1, 2, 3]) == 6


async def test_a_call_that_raises_fails_with_its_own_error_and_the_worker_goes_on(pool: RenderPool) -> None:
    with pytest.raises(ValueError, match="invalid literal"):
        await pool.run(int, "not a number")
    with pytest.raises(RemoteError, match="lock"):
        await pool.run(threading.Lock)  # a result that does not pickle

    assert await pool.run(sum, [1, 2, 3]) == 6
    assert pool.replacements == 0


async def test_arguments_that_do_not_pickle_fail_only_their_call(pool: RenderPool) -> None:
    with pytest.raises(TypeError):
        await pool.run(len, threading.Lock())

    assert await pool.run(len, "four") == 4


async def test_a_killed_worker_fails_the_calls_it_held_and_is_replaced(pool: RenderPool) -> None:
    victim = await pool.run(os.getpid)
    # Each worker holds CALLS_PER_WORKER long calls; two more wait in the pool.
    held = [asyncio.ensure_future(pool.run(time.sleep, 30)) for _ in range(2 * CALLS_PER_WORKER)]
    waiting = [asyncio.ensure_future(pool.run(os.getpid)) for _ in range(2)]
    await asyncio.sleep(0.5)
    os.kill(victim, signal.SIGKILL)  # as the OOM killer would
    await asyncio.wait(held[:1], timeout=10)  # the victim's calls fail at once

    lost = [call for call in held if call.done()]
    assert len(lost) == CALLS_PER_WORKER
    assert all(isinstance(call.exception(), BrokenProcessPool) for call in lost)
    # The calls that were waiting ran in the replacement, not behind the survivor's long calls.
    ran_in = set(await asyncio.wait_for(asyncio.gather(*waiting), timeout=10))
    assert len(ran_in) == 1
    assert victim not in ran_in
    assert ran_in < set(pool.pids)
    assert victim not in pool.pids
    assert len(pool.pids) == 2
    assert pool.replacements == 1


async def test_an_abandoned_call_does_not_hold_up_the_calls_after_it(pool: RenderPool) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await asyncio.gather(*(pool.run(time.sleep, 1.5) for _ in range(6)))
    started = time.monotonic()

    assert await pool.run(os.getpid) in pool.pids
    # Each worker finishes the two sleeps it holds (2.7 s left); the two that waited in the pool were dropped
    # (they would have added 1.5 s).
    assert time.monotonic() - started < 3.6


async def test_a_shut_down_pool_takes_no_more_work_and_its_workers_exit() -> None:
    pool = create_render_pool(workers=1)
    worker = await pool.run(os.getpid)
    pool.shutdown()

    with pytest.raises(RuntimeError, match="after shutdown"):
        await pool.run(os.getpid)
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)


def test_a_pool_refuses_calls_from_another_event_loop_than_the_one_it_started_on() -> None:
    pool = create_render_pool(workers=1)
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        assert first.run_until_complete(pool.run(os.getpid)) in pool.pids
        with pytest.raises(RuntimeError, match="only the event loop it started on"):
            second.run_until_complete(pool.run(os.getpid))
    finally:
        pool.shutdown()
        first.close()
        second.close()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's malloc's")
async def test_a_worker_keeps_the_memory_a_render_frees_for_the_next_render() -> None:
    png = render_prompt_png("a lighthouse at dusk", 512, 512)
    plan = [RenditionSpec("original", None), RenditionSpec("mobile", 256)]
    pool = create_render_pool(workers=1)
    try:
        await pool.run(render_renditions, png, "jpg", plan)  # the heap grows to what a render needs, once
        before = await pool.run(resource.getrusage, resource.RUSAGE_SELF)
        for _ in range(3):
            await pool.run(render_renditions, png, "jpg", plan)
        after = await pool.run(resource.getrusage, resource.RUSAGE_SELF)
    finally:
        pool.shutdown()

    # With glibc's defaults each of these renders touched ≈400 fresh pages (512² with three renditions: 1,400).
    assert (after.ru_minflt - before.ru_minflt) / 3 < 100
