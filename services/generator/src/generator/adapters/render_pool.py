"""The render pool: worker processes for local renders and renditions, fed straight from the event loop.

Each worker has its own pipe; the event loop writes calls into it and reads results from it (`add_reader`),
with no threads in between. `concurrent.futures.ProcessPoolExecutor` hands every call and every result
through a manager thread and a queue-feeder thread, which cost the generator's main process about 0.2 ms of
CPU per image and kept a worker waiting whenever that thread waited for the GIL (see docs/benchmarks.md,
eighth session). Two calls wait in each worker's pipe, so a worker starts its next render as soon as it
sends a result, however busy the event loop is.

A worker that dies (the OOM killer, a segfault in a codec) fails the calls it held with `BrokenProcessPool`
(whether to run them again is the caller's decision: the call may be what killed it) and is replaced at
once; calls still waiting in the pool go to the workers that live.

Workers keep the memory a render frees for the next one (`retain_freed_memory`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from typing import Any, ParamSpec, TypeVar

from writer_images.logging import get_logger

P = ParamSpec("P")
T = TypeVar("T")

log = get_logger(__name__)

CALLS_PER_WORKER = 2  # one running, one waiting in the pipe
_SMALL_MESSAGE = 16 * 1024  # well under a pipe's buffer: written at once, whatever the worker is doing
_STOP_WAIT_S = 5.0

# glibc's malloc options (malloc.h) and the values render workers run with.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 16 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024


class RemoteError(Exception):
    """A worker's exception that could not travel back as itself (it does not pickle)."""


def retain_freed_memory() -> bool:
    """Keep freed memory in this process's heap instead of handing it back to the kernel; False where the C
    library is not glibc (the setting does not exist there).

    A render allocates and frees several megabytes of pixel and codec buffers per image. glibc returns a
    freed block above its mmap threshold (128 KiB at first, then floating) to the kernel at once and trims
    the heap's free top beyond 128 KiB, so the next render touched fresh pages again: 1,400 page faults per
    512² image and 11,000 per 1792×1024, a fifth of the render's time spent in the kernel (docs/benchmarks.md,
    ninth session). Fixed thresholds keep blocks up to 16 MiB in the heap and at most 32 MiB of it free.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


def _serve(conn: Connection) -> None:
    """A worker's life: run calls from the pipe until the pipe closes (the pool shut down or its owner died)."""
    # Ctrl-C reaches the whole process group; the owner shuts its workers down by closing their pipes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    retain_freed_memory()
    while True:
        try:
            fn, args = conn.recv()
        except EOFError:
            return
        try:
            outcome: tuple[bool, Any] = (True, fn(*args))
        except BaseException as error:  # every failure travels back to its caller
            outcome = (False, error)
        try:
            conn.send(outcome)
        except Exception as error:  # the result or the error does not pickle
            conn.send(
                (False, RemoteError(f"{type(error).__name__}: {error}; the worker's outcome: {outcome[1]!r}"))
            )


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection
    calls: deque[asyncio.Future[Any]] = field(default_factory=deque)  # in the order the worker runs them


@dataclass
class _Call:
    future: asyncio.Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    _message: bytes | None = None

    def message(self) -> bytes:
        if self._message is None:
            self._message = bytes(ForkingPickler.dumps((self.fn, self.args)))
        return self._message


class RenderPool:
    """`await pool.run(fn, *args)` runs a module-level function in a worker process.

    Workers start with the first call, on the running event loop, and serve only that loop.
    As with spawn, forkserver workers import the main module: a script that creates the pool needs the
    `if __name__ == "__main__":` guard.
    """

    def __init__(self, workers: int) -> None:
        self._size = workers
        self._workers: list[_Worker] = []
        self._waiting: deque[_Call] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._replacements = 0
        # forkserver, not fork: the owner runs an event loop and threads (Kafka client, HTTP server), and
        # forking a threaded process can copy a held lock into the child.
        self._context = multiprocessing.get_context("forkserver")

    @property
    def replacements(self) -> int:
        """How many dead workers were replaced since the start."""
        return self._replacements

    @property
    def pids(self) -> list[int]:
        """The workers' process ids (for operators and tests)."""
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args)` in a worker. Cancelling the wait (a timeout) abandons the call: a worker that already
        holds it runs it and its result is dropped."""
        if kwargs:
            raise TypeError("render pool calls take positional arguments only")
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._workers = [self._start_worker() for _ in range(self._size)]
        elif self._loop is not loop:  # its pipes are watched by the loop it started on
            raise RuntimeError("a render pool serves only the event loop it started on")
        future: asyncio.Future[T] = loop.create_future()
        self._waiting.append(_Call(future, fn, args))
        self._feed()
        return await future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the workers: calls not yet sent are cancelled, each worker exits after the call it runs (with
        `wait`, waited for up to 5 s each, then killed; with `cancel_futures` alone, killed at once)."""
        self._closed = True
        while self._waiting:
            self._waiting.popleft().future.cancel()
        for worker in self._workers:
            self._detach(worker)
            worker.conn.close()  # the worker reads EOF after its current call and exits
            for future in worker.calls:
                future.cancel()
        for worker in self._workers:
            if wait:
                worker.process.join(_STOP_WAIT_S)
            if worker.process.is_alive() and (cancel_futures or wait):
                worker.process.kill()
                worker.process.join(_STOP_WAIT_S)
        self._workers = []

    def _start_worker(self) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(theirs,), name="render-worker", daemon=True)
        process.start()
        theirs.close()  # only the worker holds its end: its death reads as EOF here
        worker = _Worker(process, ours)
        assert self._loop is not None
        self._loop.add_reader(ours.fileno(), self._on_readable, worker)
        return worker

    def _feed(self) -> None:
        """Send waiting calls, in order, to the least loaded worker with room."""
        while self._waiting:
            call = self._waiting[0]
            if call.future.done():  # abandoned (timed out) before it was sent
                self._waiting.popleft()
                continue
            worker = min(self._workers, key=lambda w: len(w.calls), default=None)
            if worker is None or len(worker.calls) >= CALLS_PER_WORKER:
                return
            try:
                message = call.message()
            except Exception as error:  # arguments that do not pickle fail their own call only
                self._waiting.popleft()
                call.future.set_exception(error)
                continue
            if len(message) > _SMALL_MESSAGE and worker.calls:
                # The pipe holds 64 KiB: a large call (a provider's image) sent to a busy worker would block
                # the event loop until that worker finished its render and read it. It waits for an idle one.
                return
            self._waiting.popleft()
            try:
                worker.conn.send_bytes(message)
            except OSError:  # the worker is gone
                self._waiting.appendleft(call)
                self._lose(worker)
                continue
            worker.calls.append(call.future)

    def _on_readable(self, worker: _Worker) -> None:
        try:
            ok, value = worker.conn.recv()
        except (EOFError, OSError):
            self._lose(worker)
            self._feed()
            return
        future = worker.calls.popleft()
        if not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        self._feed()

    def _lose(self, dead: _Worker) -> None:
        """A worker died: its calls fail, a new worker takes its place."""
        if dead not in self._workers:
            return
        self._detach(dead)
        dead.conn.close()
        dead.process.join(0.1)
        error = BrokenProcessPool(
            f"render worker {dead.process.pid} died (exit code {dead.process.exitcode})"
        )
        while dead.calls:
            future = dead.calls.popleft()
            if not future.done():
                future.set_exception(error)
        self._workers.remove(dead)
        if not self._closed:
            self._workers.append(self._start_worker())
            self._replacements += 1
            log.warning(
                "render worker replaced after it died", pid=dead.process.pid, replacements=self._replacements
            )

    def _detach(self, worker: _Worker) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(worker.conn.fileno())


def create_render_pool(workers: int | None = None) -> RenderPool:
    """A pool for `render_prompt_png` and the imaging functions; one worker per core by default."""
    return RenderPool(workers or os.cpu_count() or 1)
