"""Group writes: many concurrent callers, one statement per group.

A hot path where each of many concurrent tasks ends in its own small write (a job announcing that it has
started, a job storing its result) pays a round trip, a commit and a relay wake-up per task. `GroupWriter`
hands every write that arrives while the previous group is being written to the next group, and each
caller gets back its own item's answer. By default no timer: under light load a group is one item and nothing
waits. Writes that arrive one by one but close together (results coming back from a render pool one at a
time) need a `linger_s`: a group not yet full waits that long for company before it is written (Kafka's
`linger.ms`, for statements).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")


@dataclass
class _Pending(Generic[Item, Answer]):
    item: Item
    answer: asyncio.Future[Answer] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupWriter(Generic[Item, Answer]):
    """`write(items)` writes a group in one go and returns one answer per item, in order. When it raises,
    every caller of that group gets the exception (each retries on its own terms)."""

    def __init__(
        self,
        write: Callable[[Sequence[Item]], Awaitable[Sequence[Answer]]],
        *,
        max_group: int = 64,
        linger_s: float = 0.0,
    ) -> None:
        self._write = write
        self._max_group = max_group
        self._linger_s = linger_s
        self._pending: list[_Pending[Item, Answer]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Answer:
        """The answer for `item` once its group is written (or the group's exception)."""
        pending: _Pending[Item, Answer] = _Pending(item)
        self._pending.append(pending)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_groups())
        try:
            return await asyncio.shield(pending.answer)
        except asyncio.CancelledError:
            # The item stays in its group (the write is all-or-nothing); nobody will read its answer now.
            pending.answer.add_done_callback(_retrieve)
            raise

    async def _write_groups(self) -> None:
        while self._pending:
            if self._linger_s > 0 and len(self._pending) < self._max_group:
                await asyncio.sleep(self._linger_s)
            group, self._pending = self._pending[: self._max_group], self._pending[self._max_group :]
            try:
                answers = await self._write([p.item for p in group])
                if len(answers) != len(group):
                    raise RuntimeError(f"a group of {len(group)} got {len(answers)} answers")
            except Exception as exc:
                for pending in group:
                    if not pending.answer.done():
                        pending.answer.set_exception(exc)
            else:
                for pending, answer in zip(group, answers, strict=True):
                    if not pending.answer.done():
                        pending.answer.set_result(answer)


def _retrieve(answer: asyncio.Future[Answer]) -> None:
    if not answer.cancelled():
        answer.exception()  # marks a failure as seen: it was already reported to the group's other callers
