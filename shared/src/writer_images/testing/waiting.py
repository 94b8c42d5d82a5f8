"""Waiting for what another process does: one way for every test, its failure showing the last value seen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

Value = TypeVar("Value")


async def eventually(
    probe: Callable[[], Awaitable[Value]],
    until: Callable[[Value], object] = bool,
    *,
    what: str = "the condition",
    timeout_s: float = 30.0,
    interval_s: float = 0.05,
) -> Value:
    """Call `probe()` until `until(value)` holds and return that value; after `timeout_s`, fail with an
    AssertionError naming `what` and the last value (what a test needs to tell slow from wrong)."""
    deadline = time.monotonic() + timeout_s
    while not until(value := await probe()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s:g} s; last seen: {value!r}")
        await asyncio.sleep(interval_s)
    return value
