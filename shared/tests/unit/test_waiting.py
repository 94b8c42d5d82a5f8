"""`eventually`: the tests' one way to wait for another process."""

from __future__ import annotations

import itertools

import pytest

from writer_images.testing.waiting import eventually


async def test_it_returns_the_first_value_that_satisfies_the_condition() -> None:
    counter = itertools.count()

    async def probe() -> int:
        return next(counter)

    assert await eventually(probe, lambda n: n >= 3, interval_s=0) == 3


async def test_it_fails_naming_what_it_waited_for_and_the_last_value_seen() -> None:
    async def probe() -> set[str]:
        return {"old-done"}

    with pytest.raises(
        AssertionError, match=r"the prune did not happen within 0.05 s; last seen: \{'old-done'\}"
    ):
        await eventually(probe, lambda left: not left, what="the prune", timeout_s=0.05, interval_s=0.01)
