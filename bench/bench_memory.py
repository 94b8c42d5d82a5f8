"""Memory: each service's resident memory against a bare process with the same imports, and no growth over
a soak, in the same run.

The whole product runs as processes (its own tansu broker and database; images-api, generator, publisher,
sync), as `make run` runs it.
  - Baseline: for each service, a bare Python process that imports what the service imports (its entry
    point, uvicorn's HTTP protocol and uvloop) and then only waits. Ratio: the service's main process RSS
    after the warm-up rounds / the bare process's RSS.
  - Soak: rounds of the product's work, each: contents created and their images generated through the API
    (local provider, 512×512), grouped-view pages read with filters, signed webhooks sent to sync,
    the round's contents published to a site that refuses connections (the publisher's failure path, to a
    `failed` publication in the read model). Every service's RSS (main process, and its children such as
    the render pool) is read after each round; growth compares the last round with the first one after
    the warm-up rounds.
Goals: main process ≤ 1.5× its bare process; growth over the soak ≤ 5 % of the service's memory.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import PRODUCTION_FETCH_WAIT, rss_bytes, session_pids, write_result
from bench.stack_driver import ARTICLE, IMAGES_PER_CONTENT, ApiDriver, ApiImage, bounded
from sync.testing import signed_headers, webhook_body
from writer_images.infra.postgres import postgres_server
from writer_images.testing.stack import SERVICES, Api, Stack, owner_session, started_stack, use_local_provider

MiB = 1024 * 1024
RATIO_GOAL = 1.5
GROWTH_GOAL = 0.05
# What a service process imports before it serves: its entry point and app (some entry points import the
# app lazily), then what uvicorn loads when it starts.
BARE_IMPORTS = (
    "import {package}.entrypoints.cli, {package}.bootstrap, uvicorn.protocols.http.httptools_impl, uvloop"
)


class BareProcess:
    """A process that imports what `package`'s service imports and then waits on stdin."""

    def __init__(self, package: str) -> None:
        code = (
            BARE_IMPORTS.format(package=package)
            + "; print('ready', flush=True); import sys; sys.stdin.read()"
        )
        self._process = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def rss(self) -> int:
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            raise RuntimeError("the bare process did not start")
        return rss_bytes(self._process.pid)

    def stop(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=10)


def bare_rss() -> dict[str, int]:
    processes = {service: BareProcess(package) for service, package in SERVICES.items()}
    try:
        return {service: process.rss() for service, process in processes.items()}
    finally:
        for process in processes.values():
            process.stop()


def service_rss(stack: Stack) -> dict[str, dict[str, int]]:
    """Per service: its main process and its children (render pool, spawned helpers)."""
    out = {}
    for service, process in stack.processes.items():
        assert process.process is not None
        main = process.process.pid
        children = [pid for pid in session_pids(main) if pid != main]
        out[service] = {"main": rss_bytes(main), "children": sum(rss_bytes(pid) for pid in children)}
    return out


class Soak:
    """One round of the product's work per `round()`, through its HTTP APIs."""

    def __init__(self, stack: Stack, api: Api, contents_per_round: int, webhooks_per_round: int) -> None:
        self.stack = stack
        self.api = api
        self.driver = ApiDriver(api)
        self.contents_per_round = contents_per_round
        self.webhooks_per_round = webhooks_per_round
        self.site: dict[str, Any] = {}
        self.round_no = 0
        self.webhooks_sent = 0

    async def start(self) -> None:
        await use_local_provider(self.api, in_article_slots=IMAGES_PER_CONTENT - 1)
        self.site = await self.api.call(
            "POST",
            "/v1/sites/",
            expect=201,
            # Nothing listens there: every publication takes the publisher's failure path.
            json={
                "name": "Soak",
                "base_url": "http://127.0.0.1:9",
                "username": "u",
                "application_password": "p",
            },
        )
        await self._until_sync_knows_the_site()

    async def round(self) -> None:
        self.round_no += 1
        images = await self._contents()
        await self.driver.submit(images)
        await self.driver.wait_generated(images, timeout_s=300)
        await self._read_pages()
        await self._webhooks(self.webhooks_per_round)
        await self._publish_and_wait_failed(sorted({i.content_id for i in images}))

    async def _contents(self) -> list[ApiImage]:
        async def create(n: int) -> list[ApiImage]:
            content = await self.api.call(
                "POST",
                "/v1/writer/contents/",
                expect=201,
                json={
                    "title": f"Soak {self.round_no}.{n}",
                    "html": ARTICLE,
                    "status": "published",
                    "site_id": self.site["id"],
                },
            )
            return [ApiImage(i["id"], content["id"]) for i in content["images"]]

        made = await bounded([functools.partial(create, n) for n in range(self.contents_per_round)], 4)
        return [image for content in made for image in content]

    async def _read_pages(self) -> None:
        queries: list[dict[str, Any]] = [
            {"page": page, "page_size": 25, "ordering": ordering}
            for page in (1, 2)
            for ordering in ("content_title", "-updated_at")
        ]
        queries += [{"search": "Soak"}, {"overall_status": "complete"}, {"sync_status": "failed"}]
        queries += [{"image_type": "featured", "image_status": "generated"}]
        for params in queries * 4:
            await self.api.call("GET", "/v1/writer/images/content_images/", params=params)

    async def _webhooks(self, count: int) -> int:
        """Signed webhooks from the site's plugin; returns how many sync accepted."""
        url = f"{self.stack.url('sync')}/v1/sync/wordpress/webhook"
        accepted = 0
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(count):
                self.webhooks_sent += 1
                body = webhook_body(self.site["site_key"], 100_000 + self.webhooks_sent, "draft")
                response = await client.post(
                    url, content=body, headers=signed_headers(self.site["webhook_secret"], body)
                )
                accepted += response.status_code == 200
        return accepted

    async def _until_sync_knows_the_site(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while await self._webhooks(1) == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("sync never learnt the soak's site")
            await asyncio.sleep(0.2)

    async def _publish_and_wait_failed(self, content_ids: list[int], timeout_s: float = 120) -> None:
        failed_before = await self._failed_publications()
        batch = await self.api.call("POST", "/v1/publisher/publish/batch/", json={"content_ids": content_ids})
        if batch["accepted"] != len(content_ids):
            raise RuntimeError(f"publications refused: {batch['results']}")
        deadline = time.monotonic() + timeout_s
        while await self._failed_publications() < failed_before + len(content_ids):
            if time.monotonic() > deadline:
                raise TimeoutError("the publisher did not fail the round's publications")
            await asyncio.sleep(0.2)

    async def _failed_publications(self) -> int:
        page = await self.api.call(
            "GET", "/v1/publisher/publications/", params={"status": "failed", "page_size": 1}
        )
        return int(page["count"])


async def soak_samples(
    server: str, workdir: Path, args: argparse.Namespace
) -> list[dict[str, dict[str, int]]]:
    """Every service's memory after each round."""
    # Publications to the dead site fail after two quick attempts instead of five with backoff.
    fast_failure = {
        "WI_JOB_MAX_ATTEMPTS": "2",
        "WI_JOB_BACKOFF_BASE_S": "0.05",
        "WI_JOB_BACKOFF_MAX_S": "0.2",
    }
    local_size = {"WI_LOCAL_IMAGE_SIZE": "512x512"}
    async with (
        started_stack(server, workdir, **PRODUCTION_FETCH_WAIT, **fast_failure, **local_size) as stack,
        owner_session(stack) as api,
    ):
        soak = Soak(stack, api, args.contents_per_round, args.webhooks_per_round)
        await soak.start()
        samples: list[dict[str, dict[str, int]]] = []
        for round_no in range(1, args.warmup_rounds + args.rounds + 1):
            started = time.perf_counter()
            await soak.round()
            await asyncio.sleep(1.0)  # let relays and consumers settle before reading
            samples.append(service_rss(stack))
            total = sum(s["main"] + s["children"] for s in samples[-1].values()) / MiB
            print(
                f"round {round_no}: {time.perf_counter() - started:.1f} s, all services {total:.1f} MiB",
                flush=True,
            )
        return samples


def report(
    bare: dict[str, int], samples: list[dict[str, dict[str, int]]], args: argparse.Namespace
) -> dict[str, Any]:
    first, last = samples[args.warmup_rounds], samples[-1]
    services: dict[str, Any] = {}
    for service in SERVICES:
        main, baseline = first[service]["main"], bare[service]
        total_first = first[service]["main"] + first[service]["children"]
        total_last = last[service]["main"] + last[service]["children"]
        growth = (total_last - total_first) / total_first
        ratio_ok = "✔" if main / baseline <= RATIO_GOAL else "✘"
        growth_ok = "✔" if growth <= GROWTH_GOAL else "✘"
        print(
            f"{service}: main process {main / MiB:.1f} MiB vs bare process with the same imports "
            f"{baseline / MiB:.1f} MiB → ratio {main / baseline:.2f}× (goal ≤ {RATIO_GOAL}× {ratio_ok}); "
            f"children {first[service]['children'] / MiB:.1f} MiB; over {args.rounds} soak rounds "
            f"{total_first / MiB:.1f} → {total_last / MiB:.1f} MiB ({growth:+.1%}, goal ≤ +{GROWTH_GOAL:.0%} {growth_ok})",
            flush=True,
        )
        services[service] = {
            "bare_rss_mib": round(baseline / MiB, 1),
            "main_rss_mib": round(main / MiB, 1),
            "ratio": round(main / baseline, 2),
            "children_rss_mib": round(first[service]["children"] / MiB, 1),
            "soak_mib": [round((s[service]["main"] + s[service]["children"]) / MiB, 1) for s in samples],
            "growth": round(growth, 4),
        }
    return {
        "rounds": args.rounds,
        "warmup_rounds": args.warmup_rounds,
        "contents_per_round": args.contents_per_round,
        "webhooks_per_round": args.webhooks_per_round,
        "services": services,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench memory")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup-rounds", type=int, default=3)
    parser.add_argument("--contents-per-round", type=int, default=10, help=f"× {IMAGES_PER_CONTENT} images")
    parser.add_argument("--webhooks-per-round", type=int, default=200)
    args = parser.parse_args(argv)
    bare = bare_rss()
    workdir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    with postgres_server(workdir / "pg") as server:
        samples = asyncio.run(soak_samples(server, workdir / "stack", args))
    write_result("memory", report(bare, samples, args))


if __name__ == "__main__":
    main(sys.argv[1:])
