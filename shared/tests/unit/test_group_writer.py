from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from writer_images.group_writer import GroupWriter


class Recorder:
    """A write that takes a while, like a round trip, and records each group it was given."""

    def __init__(self, *, fail_on: int | None = None) -> None:
        self.groups: list[list[int]] = []
        self._fail_on = fail_on

    async def write(self, items: Sequence[int]) -> list[int]:
        self.groups.append(list(items))
        await asyncio.sleep(0.01)
        if self._fail_on in items:
            raise ConnectionError("database away")
        return [item * 10 for item in items]


async def test_writes_arriving_together_share_one_group_and_each_caller_gets_its_own_answer() -> None:
    recorder = Recorder()
    writer = GroupWriter(recorder.write)

    answers = await asyncio.gather(*(writer.submit(i) for i in range(5)))

    assert answers == [0, 10, 20, 30, 40]
    assert recorder.groups == [[0, 1, 2, 3, 4]]


async def test_writes_arriving_during_a_write_go_into_the_next_group() -> None:
    recorder = Recorder()
    writer = GroupWriter(recorder.write)

    first = asyncio.ensure_future(writer.submit(1))
    await asyncio.sleep(0.001)  # the first group is being written
    later = await asyncio.gather(writer.submit(2), writer.submit(3))

    assert (await first, later) == (10, [20, 30])
    assert recorder.groups == [[1], [2, 3]]


async def test_with_a_linger_writes_arriving_one_by_one_wait_for_company() -> None:
    recorder = Recorder()
    writer = GroupWriter(recorder.write, linger_s=0.05)

    first = asyncio.ensure_future(writer.submit(1))
    await asyncio.sleep(0.01)  # within the linger: nothing written yet
    assert recorder.groups == []
    second = await writer.submit(2)

    assert (await first, second) == (10, 20)
    assert recorder.groups == [[1, 2]]


async def test_a_full_group_does_not_linger() -> None:
    recorder = Recorder()
    writer = GroupWriter(recorder.write, max_group=2, linger_s=10.0)

    answers = await asyncio.wait_for(asyncio.gather(writer.submit(1), writer.submit(2)), timeout=1.0)

    assert answers == [10, 20]


async def test_a_group_is_never_larger_than_its_cap() -> None:
    recorder = Recorder()
    writer = GroupWriter(recorder.write, max_group=2)

    await asyncio.gather(*(writer.submit(i) for i in range(5)))

    assert recorder.groups == [[0, 1], [2, 3], [4]]


async def test_a_failed_write_fails_every_caller_of_its_group_and_only_them() -> None:
    recorder = Recorder(fail_on=2)
    writer = GroupWriter(recorder.write, max_group=2)

    outcomes = await asyncio.gather(*(writer.submit(i) for i in range(4)), return_exceptions=True)

    assert [type(o) if isinstance(o, BaseException) else o for o in outcomes] == [
        0,
        10,
        ConnectionError,
        ConnectionError,
    ]


async def test_a_write_that_answers_for_the_wrong_number_of_items_fails_its_callers() -> None:
    async def short(items: Sequence[int]) -> list[int]:
        return list(items)[1:]

    writer: GroupWriter[int, int] = GroupWriter(short)

    with pytest.raises(RuntimeError, match="a group of 2 got 1 answers"):
        await asyncio.gather(writer.submit(1), writer.submit(2))


async def test_a_caller_cancelled_while_waiting_leaves_its_item_in_the_group() -> None:
    recorder = Recorder()
    writer = GroupWriter(recorder.write)

    cancelled = asyncio.ensure_future(writer.submit(1))
    waiting = asyncio.ensure_future(writer.submit(2))
    await asyncio.sleep(0.001)
    cancelled.cancel()

    assert await waiting == 20
    assert cancelled.cancelled()
    assert recorder.groups == [[1, 2]]
