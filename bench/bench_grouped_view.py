"""The grouped view (the seed's content_images page) at scale, against named baselines in the same run.

1. 100k contents / 600k images in one account. The real app served by uvicorn (`python -m images_api`,
   auth, three queries, signed image URLs, envelope, ETag) answers a filtered and sorted page of 25;
   baseline "bare FastAPI": a FastAPI app in another uvicorn process returning the same JSON bytes
   from memory. Both loaded by 2 keep-alive client connections for the same duration.
   Goal (issue 4): ≥ 0.5× the bare endpoint's requests/s, p99 < 50 ms.
2. 10k contents: one server-side page (25, filtered, sorted) vs the seed's "return everything and let
   the browser paginate" (every group in one response), both through the same read model: bytes and time.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from bench.common import ratio_line, summary_ms, write_result
from writer_images.infra.broker import TansuBroker
from writer_images.infra.ports import free_port
from writer_images.infra.postgres import DEFAULT_SERVER, create_database, drop_database
from writer_images.testing.processes import ServiceProcess

BIG = 100_000
SMALL = 10_000
IMAGES_PER_CONTENT = 6
DURATION_S = 12.0
ROUNDS = 6
CONNECTIONS = 2
PAGE_QUERY = "/v1/writer/images/content_images/?site_id={site}&overall_status=partial&ordering=-updated_at&page_size=25"


async def _populate(pool: asyncpg.Pool, account: str, n: int) -> tuple[int, int]:
    """n contents with 6 images each, in mixed states, inserted in bulk (trigger off, stats after)."""
    async with pool.acquire() as conn:
        account_id = await conn.fetchval("INSERT INTO accounts (name) VALUES ($1) RETURNING id", account)
        site_id = await conn.fetchval(
            """INSERT INTO sites (account_id, name, base_url, username, application_password_sealed, site_key,
                                  webhook_secret_sealed) VALUES ($1, 's', 'https://x.example.com', 'u', 'x', $2, 'x')
               RETURNING id""",
            account_id,
            f"site_{uuid.uuid4().hex[:12]}",
        )
        await conn.execute(
            "ALTER TABLE images DISABLE TRIGGER USER; ALTER TABLE contents DISABLE TRIGGER USER"
        )
        await conn.execute(
            """INSERT INTO contents (account_id, site_id, title, html, status, updated_at)
               SELECT $1, $2, 'Post ' || i || ' ' || md5(i::text), '<h2>a</h2>',
                      CASE WHEN i % 3 = 0 THEN 'draft' ELSE 'published' END,
                      now() - make_interval(secs => i)
               FROM generate_series(1, $3) i""",
            account_id,
            site_id,
            n,
        )
        await conn.execute(
            """INSERT INTO images (account_id, content_id, image_type, position, prompt, alt_text, status, blob_key)
               SELECT $1, c.id, CASE WHEN p = 0 THEN 'featured' ELSE 'in_article' END, p,
                      'A picture for section ' || p || ' of ' || c.title, 'alt', s.status,
                      CASE WHEN s.status = 'generated' THEN 'ab/cd/' || md5(c.id::text || p) || '.jpg' END
               FROM contents c CROSS JOIN generate_series(0, $2 - 1) p
               CROSS JOIN LATERAL (SELECT CASE c.id % 4
                   WHEN 0 THEN 'pending'
                   WHEN 1 THEN CASE WHEN p < 2 THEN 'generated' ELSE 'pending' END
                   WHEN 2 THEN 'generated'
                   ELSE CASE WHEN p = 5 THEN 'failed' ELSE 'generated' END END AS status) s
               WHERE c.account_id = $1""",
            account_id,
            IMAGES_PER_CONTENT,
        )
        await conn.execute(
            """UPDATE contents c SET images_total = s.total, images_generated = s.generated, images_failed = s.failed,
                   overall_status = CASE WHEN s.generated = s.total THEN 'complete' WHEN s.failed > 0 THEN 'failed'
                                         WHEN s.generated > 0 THEN 'partial' ELSE 'pending' END
               FROM (SELECT content_id, count(*) AS total, count(*) FILTER (WHERE status = 'generated') AS generated,
                            count(*) FILTER (WHERE status = 'failed') AS failed
                     FROM images WHERE account_id = $1 GROUP BY content_id) s
               WHERE c.id = s.content_id""",
            account_id,
        )
        await conn.execute("ALTER TABLE images ENABLE TRIGGER USER; ALTER TABLE contents ENABLE TRIGGER USER")
        await conn.execute("ANALYZE contents; ANALYZE images")
    return account_id, site_id


class RawClient:
    """A minimal HTTP/1.1 keep-alive client: the load generator must cost far less than the servers."""

    def __init__(self, port: int, request: bytes) -> None:
        self.port = port
        self.request = request

    async def run(self, until: float, samples: list[float], sizes: list[int]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            while time.perf_counter() < until:
                started = time.perf_counter()
                writer.write(self.request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                if status != 200:
                    raise RuntimeError(f"status {status}: {body[:300]!r}")
                samples.append(time.perf_counter() - started)
                sizes.append(len(body))
        finally:
            writer.close()


async def _load_round(
    port: int, path: str, token: str | None, seconds: float, out: dict[str, list[Any]]
) -> None:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode()
    samples: list[float] = []
    sizes: list[int] = []
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(*(RawClient(port, request).run(until, samples, sizes) for _ in range(CONNECTIONS)))
    out["samples"] += samples
    out["sizes"] += sizes[:1]
    out["elapsed"].append(time.perf_counter() - started)


async def _load_interleaved(targets: dict[str, tuple[int, str, str | None]]) -> dict[str, dict[str, Any]]:
    """Short rounds, the targets taking turns, so that noise from other work on the machine falls on all."""
    results: dict[str, dict[str, list[Any]]] = {
        n: {"samples": [], "sizes": [], "elapsed": []} for n in targets
    }
    for port, path, token in targets.values():  # warm-up
        await _load_round(port, path, token, 0.5, {"samples": [], "sizes": [], "elapsed": []})
    for _ in range(ROUNDS):
        for name, (port, path, token) in targets.items():
            await _load_round(port, path, token, DURATION_S / ROUNDS, results[name])
    return {
        name: {
            "rps": len(r["samples"]) / sum(r["elapsed"]),
            "bytes": r["sizes"][0] if r["sizes"] else 0,
            **summary_ms(r["samples"]),
        }
        for name, r in results.items()
    }


BARE_APP = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import Response

    body = Path(sys.argv[1]).read_bytes()
    app = FastAPI()

    @app.get("/v1/writer/images/content_images/")
    async def content_images() -> Response:
        return Response(body, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
    """
)


async def _seed_style_vs_page(database_url: str, account_id: int, site_id: int) -> dict[str, Any]:
    from images_api.adapters.grouped_view import GroupFilters, PageRequest, content_groups
    from images_api.adapters.media import MediaSigner
    from writer_images.db import create_pool

    signer = MediaSigner("http://127.0.0.1:8000", "x" * 40, 900)
    pool = await create_pool(database_url, "images_api", max_size=2)
    results: dict[str, Any] = {}
    try:
        async with pool.acquire() as conn:
            for name, filters, page in (
                (
                    "seed_everything",
                    GroupFilters(site_id=site_id),
                    PageRequest("content_title", 1, SMALL * 2),
                ),
                (
                    "server_page",
                    GroupFilters(site_id=site_id, overall_status="partial"),
                    PageRequest("-updated_at", 1, 25),
                ),
            ):
                times, size = [], 0
                for _ in range(5):
                    t0 = time.perf_counter()
                    data = await content_groups(conn, account_id, filters, page, signer, time.time())
                    size = len(orjson.dumps({"success": True, "data": data, "request_id": "x"}))
                    times.append(time.perf_counter() - t0)
                results[name] = {"bytes": size, **summary_ms(times), "groups": len(data["results"])}
    finally:
        await pool.close()
    return results


async def _run() -> dict[str, Any]:
    name = f"wi_bench_{uuid.uuid4().hex[:10]}"
    database_url = await create_database(DEFAULT_SERVER, name)
    workdir = Path(tempfile.mkdtemp(prefix="bench-grouped-"))
    api: ServiceProcess | None = None
    api_uncached: ServiceProcess | None = None
    bare: subprocess.Popen[bytes] | None = None
    try:
        with TansuBroker(log_path=workdir / "tansu.log") as broker:
            port = free_port()
            env = {
                "WI_DATABASE_URL": database_url,
                "WI_KAFKA_BOOTSTRAP": broker.bootstrap,
                "WI_BLOB_DIR": str(workdir / "blobs"),
                "WI_HTTP_PORT": str(port),
                "WI_LOG_LEVEL": "WARNING",
                "WI_KAFKA_SESSION_TIMEOUT_MS": "2000",
                "WI_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
                "WI_SWEEPER_INTERVAL_S": "30",
            }
            api = ServiceProcess(
                "images-api",
                ["-m", "images_api"],
                env,
                workdir / "api.log",
                health_url=f"http://127.0.0.1:{port}/healthz",
            ).start(wait_s=90)
            # a second instance without the page cache: every request reads Postgres
            uncached_port = free_port()
            api_uncached = ServiceProcess(
                "images-api-uncached",
                ["-m", "images_api"],
                {**env, "WI_HTTP_PORT": str(uncached_port), "WI_PAGE_CACHE_ENTRIES": "0"},
                workdir / "api-uncached.log",
                health_url=f"http://127.0.0.1:{uncached_port}/healthz",
            ).start(wait_s=90)
            from images_api.service.auth import create_user
            from writer_images.db import create_pool

            pool = await create_pool(database_url, "images_api", max_size=2)
            try:
                t0 = time.perf_counter()
                _, site_id = await _populate(pool, "bench-big", BIG)
                print(
                    f"populated {BIG:,} contents / {BIG * IMAGES_PER_CONTENT:,} images in {time.perf_counter() - t0:.1f}s",
                    flush=True,
                )
                small_account, small_site = await _populate(pool, "bench-small", SMALL)
                async with pool.acquire() as conn:
                    await create_user(conn, "bench-big", "bench@example.com", "bench-password", "viewer")
            finally:
                await pool.close()
            token = httpx.post(
                f"http://127.0.0.1:{port}/v1/auth/login",
                json={"email": "bench@example.com", "password": "bench-password"},
            ).json()["data"]["access_token"]
            path = PAGE_QUERY.format(site=site_id)
            sample = httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
            assert sample.status_code == 200 and len(sample.json()["data"]["results"]) == 25, sample.text[
                :300
            ]
            body_file = workdir / "page.json"
            body_file.write_bytes(sample.content)

            bare_port = free_port()
            bare = subprocess.Popen(
                [sys.executable, "-c", BARE_APP, str(body_file), str(bare_port)],
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(200):
                try:
                    if httpx.get(f"http://127.0.0.1:{bare_port}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)

            measured = await _load_interleaved(
                {
                    "ours": (port, path, token),
                    "uncached": (uncached_port, path, token),
                    "bare": (bare_port, "/v1/writer/images/content_images/", None),
                }
            )
            ours, uncached, baseline = measured["ours"], measured["uncached"], measured["bare"]
            print(f"real app (page cache): {ours}", flush=True)
            print(f"real app (no page cache, Postgres every request): {uncached}", flush=True)
            print(f"bare FastAPI: {baseline}", flush=True)
            bare_name = "bare FastAPI (same bytes from memory)"
            lines = [
                ratio_line(
                    "grouped view, 100k contents, page of 25 (filtered+sorted), 2 connections, real app",
                    ours["rps"],
                    baseline["rps"],
                    bare_name,
                    "req/s",
                    "≥ 0.5×",
                ),
                ratio_line(
                    "same, real app with the page cache off (3 queries per request)",
                    uncached["rps"],
                    baseline["rps"],
                    bare_name,
                    "req/s",
                    "≥ 0.5×",
                ),
                f"p99: real app {ours['p99_ms']:.1f} ms, cache off {uncached['p99_ms']:.1f} ms "
                f"(goal < 50 ms); bare {baseline['p99_ms']:.1f} ms",
            ]
            print(lines[-1], flush=True)
            seed = await _seed_style_vs_page(database_url, small_account, small_site)
            lines.append(
                ratio_line(
                    "10k contents: response bytes, seed-style everything",
                    seed["seed_everything"]["bytes"],
                    seed["server_page"]["bytes"],
                    "one server-side page",
                    "bytes",
                )
            )
            lines.append(
                ratio_line(
                    "10k contents: time, seed-style everything (p50)",
                    seed["seed_everything"]["p50_ms"],
                    seed["server_page"]["p50_ms"],
                    "one server-side page",
                    "ms",
                )
            )
            return {
                "real_app": ours,
                "real_app_no_page_cache": uncached,
                "bare_fastapi": baseline,
                "ten_k": seed,
                "lines": lines,
            }
    finally:
        if bare is not None and bare.poll() is None:
            os.killpg(bare.pid, 15)
            bare.wait(10)
        for process in (api, api_uncached):
            if process is not None:
                process.stop()
        await drop_database(DEFAULT_SERVER, name)


def main(argv: list[str]) -> None:
    result = asyncio.run(_run())
    write_result("grouped_view", result)
