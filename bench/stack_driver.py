"""The product as real processes for benchmarks: its own broker and database, the chosen services, an owner
logged in through the API; plus the driver that generates images the way the page does (API request →
read model shows generated).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from bench.common import poll_pause
from writer_images.infra.broker import TansuBroker
from writer_images.testing.stack import Api, Stack, owner_session, started_stack, use_local_provider

# Three H2s: with max_in_article_images 3, every content gets a featured and three in-article slots.
ARTICLE = (
    "<p>Intro</p><h2>Where to stay</h2><p>…</p><h2>What to eat</h2><p>…</p><h2>Getting around</h2><p>…</p>"
)
IMAGES_PER_CONTENT = 4
T = TypeVar("T")


@dataclass
class RunningStack:
    stack: Stack
    broker: TansuBroker
    api: Api


@contextlib.asynccontextmanager
async def running_stack(
    server: str, workdir: Path, services: Sequence[str], **env: str
) -> AsyncIterator[RunningStack]:
    """`services` started as subprocesses (the tests' stack, quieter logs) and a logged-in owner."""
    async with (
        started_stack(server, workdir, services, WI_LOG_LEVEL="WARNING", **env) as stack,
        owner_session(stack) as api,
    ):
        assert stack.broker is not None
        yield RunningStack(stack, stack.broker, api)


async def bounded(calls: Iterable[Callable[[], Awaitable[T]]], concurrency: int) -> list[T]:
    """Run the calls with at most `concurrency` in flight (a browser's few connections, not a flood)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(call) for call in calls)))


async def complete_contents(api: Api) -> int:
    page = await api.call(
        "GET", "/v1/writer/images/content_images/", params={"overall_status": "complete", "page_size": 1}
    )
    return int(page["count"])


@dataclass(frozen=True)
class ApiImage:
    image_id: int
    content_id: int


@dataclass
class ApiDriver:
    """Generates images as the page does: one `generate_images` request per content, then the grouped
    view polled (`poll_pause`) until every content reads `complete`.

    Per-image completion comes from each image's `generated_at` (set by the projection's transaction, on
    this machine's clock); the run ends when a poll of the read model first shows every content complete.
    """

    api: Api
    concurrency: int = 4
    submitted_at: dict[int, float] = field(default_factory=dict)
    submit_started_at: float = 0.0
    last_seen_at: float | None = None
    _complete_before: int = 0
    # perf_counter and wall-clock readings of the same instant, to place server timestamps on our clock.
    _wall_minus_perf: float = field(default_factory=lambda: time.time() - time.perf_counter())

    async def create_contents(self, images: int, title: str, first: int = 0) -> list[ApiImage]:
        """Contents titled `{title} {n}` from n = `first`, enough for `images` images."""
        await use_local_provider(self.api, in_article_slots=IMAGES_PER_CONTENT - 1)

        async def create(n: int) -> list[ApiImage]:
            content = await self.api.call(
                "POST",
                "/v1/writer/contents/",
                expect=201,
                json={"title": f"{title} {n}", "html": ARTICLE, "status": "draft"},
            )
            slots = sorted(content["images"], key=lambda i: (i["image_type"] != "featured", i["position"]))
            assert len(slots) == IMAGES_PER_CONTENT, slots
            return [ApiImage(i["id"], content["id"]) for i in slots]

        contents = -(-images // IMAGES_PER_CONTENT)
        made = await bounded(
            [functools.partial(create, n) for n in range(first, first + contents)], self.concurrency
        )
        return [image for content in made for image in content][:images]

    async def submit(self, batch: Sequence[ApiImage]) -> None:
        self._complete_before = await complete_contents(self.api)
        self.last_seen_at = None
        self.submit_started_at = time.perf_counter()

        async def generate(content_id: int, ids: list[int]) -> None:
            at = time.perf_counter()
            for image_id in ids:
                self.submitted_at[image_id] = at
            await self.api.call(
                "POST",
                "/v1/writer/images/generate_images/",
                expect=202,
                json={"ids": ids, "content_id": content_id},
            )

        await bounded(
            [functools.partial(generate, c, ids) for c, ids in _by_content(batch).items()], self.concurrency
        )

    async def wait_generated(self, batch: Sequence[ApiImage], timeout_s: float) -> dict[int, float]:
        contents = len(_by_content(batch))
        deadline = time.perf_counter() + timeout_s
        done = 0
        while done < contents:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{done} contents complete after {timeout_s}s")
            await asyncio.sleep(poll_pause(done, contents, time.perf_counter() - self.submit_started_at))
            done = await complete_contents(self.api) - self._complete_before
        self.last_seen_at = time.perf_counter()
        return await self._generated_at(batch)

    async def _generated_at(self, batch: Sequence[ApiImage]) -> dict[int, float]:
        wanted = {image.image_id for image in batch}

        async def read(content_id: int) -> list[dict[str, Any]]:
            content = await self.api.call("GET", f"/v1/writer/contents/{content_id}/")
            return list(content["images"])

        contents = await bounded([functools.partial(read, c) for c in _by_content(batch)], self.concurrency)
        return {
            image["id"]: datetime.fromisoformat(image["generated_at"]).timestamp() - self._wall_minus_perf
            for images in contents
            for image in images
            if image["id"] in wanted and image["status"] == "generated"
        }


def _by_content(batch: Iterable[ApiImage]) -> dict[int, list[int]]:
    grouped: dict[int, list[int]] = {}
    for image in batch:
        grouped.setdefault(image.content_id, []).append(image.image_id)
    return grouped
