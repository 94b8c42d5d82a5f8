"""Sync's webhook receiver vs a bare FastAPI endpoint that only verifies the same HMAC, same run.

1. Throughput at 2 connections: `python -m sync` (uvicorn, real Postgres, real tansu broker, reconciler
   off) receiving signed webhooks that each carry a new change (so each one writes its delivery row, the
   post's state and a `wordpress.post.changed` through the outbox), against the baseline: a bare FastAPI
   app under uvicorn that reads the body, checks the timestamp and the HMAC-SHA256 signature, answers 200.
   Both run as subprocesses; the load generator (httpx, 2 connections) is this process. Every event is
   then counted on the broker.
2. Latency, change in WordPress → `wordpress.post.changed` on the broker: a real WordPress with the bridge
   plugin points at the sync service; an editor turns a published post into a draft through the REST API;
   latency runs from just before that REST call to the broker record's timestamp. Named baseline: the
   editor's REST call itself (with php -S the plugin delivers at shutdown, inside that call).
3. Latency, change in WordPress → read model: images-api + publisher + sync as subprocesses (own broker and
   database, `bench.stack_driver`), a real WordPress whose bridge plugin is configured with the site's
   `webhook_secret`/`site_key` from images-api; a few contents published through the API; then N
   publish↔draft changes made by the editor through the WordPress REST API, each timed from just before
   the REST call to the first grouped-view poll (every ~10 ms) that shows the new `sync_status`. Same named
   baseline: the editor's REST call alone.
Phases are selectable: `python -m bench.bench_webhooks --phases read-model --changes 10`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer

from bench.common import PRODUCTION_FETCH_WAIT, CpuMeter, ratio_line, summary_ms, write_result
from bench.stack_driver import ARTICLE, running_stack
from sync.testing import PLUGIN_DIR, publish_site, signed_headers, sync_env, wait_for_site, webhook_body
from writer_images import topics
from writer_images.infra.broker import TansuBroker
from writer_images.infra.ports import free_port
from writer_images.infra.postgres import DEFAULT_SERVER, create_database, drop_database
from writer_images.kafka import ensure_topics
from writer_images.testing.processes import ServiceProcess
from writer_images.testing.stack import Api, configure_bridge
from writer_images.testing.wordpress import start_wordpress_site

CONNECTIONS = 2
WARMUP = 300
REQUESTS = 4800
ROUNDS = 8
LATENCY_SAMPLES = 40
SECRET = "bench-secret-" + uuid.uuid4().hex
ROOT = Path(__file__).resolve().parents[1]

BASELINE_APP = """
import base64, hashlib, hmac, sys, time
import uvicorn
from fastapi import FastAPI, Request, Response
SECRET = sys.argv[2].encode()
app = FastAPI()

@app.post("/v1/sync/wordpress/webhook")
async def webhook(request: Request) -> Response:
    body = await request.body()
    wid = request.headers.get("webhook-id", "")
    ts = request.headers.get("webhook-timestamp", "")
    offered = request.headers.get("webhook-signature", "")
    if not ts.isdigit() or abs(time.time() - int(ts)) > 300:
        return Response(status_code=401)
    expected = "v1," + base64.b64encode(hmac.new(SECRET, f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected.encode(), offered.encode()):
        return Response(status_code=401)
    return Response(b'{"ok":true}', media_type="application/json")

@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def _requests(site_key: str, count: int, first_post: int) -> list[tuple[bytes, dict[str, str]]]:
    out = []
    for i in range(count):
        body = webhook_body(site_key, first_post + i, "publish")
        out.append((body, signed_headers(SECRET, body)))
    return out


async def _drive(url: str, requests: list[tuple[bytes, dict[str, str]]]) -> float:
    """Send every request over CONNECTIONS keep-alive connections; returns requests per second."""
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        queue = iter(requests)
        failures: list[int] = []

        async def worker() -> None:
            for body, headers in queue:
                response = await client.post(url, content=body, headers=headers)
                if response.status_code != 200:
                    failures.append(response.status_code)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. HTTP {failures[0]}")
    return len(requests) / elapsed


def _median_by_group(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {group: round(statistics.median(r[group] for r in rounds), 3) for group in rounds[0]}


async def _count_changes(bootstrap: str, site_id: int, want: int, timeout_s: float = 60) -> int:
    consumer = AIOKafkaConsumer(
        topics.WORDPRESS_POST_CHANGED,
        bootstrap_servers=bootstrap,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    seen = 0
    try:
        deadline = time.monotonic() + timeout_s
        while seen < want and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                seen += sum(1 for r in records if orjson.loads(r.value)["payload"]["site_id"] == site_id)
    finally:
        await consumer.stop()
    return seen


@contextlib.contextmanager
def _process(process: ServiceProcess, wait_s: float = 60) -> Iterator[ServiceProcess]:
    process.start(wait_s=wait_s)
    try:
        yield process
    finally:
        process.stop()


async def _register_site(bootstrap: str, dsn: str, site_id: int, site_key: str, **site: Any) -> None:
    await publish_site(bootstrap, site_id=site_id, site_key=site_key, secret=SECRET, **site)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "sync"})
    try:
        await wait_for_site(conn, site_id, timeout_s=60)
    finally:
        await conn.close()


async def _throughput(workdir: Path, bootstrap: str, dsn: str, broker_pid: int) -> dict[str, Any]:
    """Both servers up at once and driven in alternating rounds, so that a noisy neighbour on this shared
    2-core machine weighs on both alike; the median round of each is compared. CPU per webhook is read
    from /proc for each side's processes (the driver is this process)."""
    baseline_port, sync_port = free_port(), free_port()
    baseline_script = workdir / "baseline_app.py"
    baseline_script.write_text(BASELINE_APP)
    baseline = ServiceProcess(
        "bare-hmac",
        [str(baseline_script), str(baseline_port), SECRET],
        {},
        workdir / "baseline.log",
        health_url=f"http://127.0.0.1:{baseline_port}/healthz",
    )
    sync = ServiceProcess(
        "sync",
        ["-m", "sync"],
        sync_env(dsn, bootstrap, sync_port, WI_RECONCILE_ENABLED="false", **PRODUCTION_FETCH_WAIT),
        workdir / "sync.log",
        health_url=f"http://127.0.0.1:{sync_port}/readyz",
    )
    site_id, site_key = 1, "bench-site"
    sync_url = f"http://127.0.0.1:{sync_port}/v1/sync/wordpress/webhook"
    baseline_url = f"http://127.0.0.1:{baseline_port}/v1/sync/wordpress/webhook"
    ours: list[float] = []
    bare: list[float] = []
    cpu: dict[str, list[dict[str, float]]] = {"sync": [], "bare": []}
    load_at_start = os.getloadavg()[0]
    with _process(sync), _process(baseline):
        await _register_site(bootstrap, dsn, site_id, site_key)
        await _drive(sync_url, _requests(site_key, WARMUP, 1))
        await _drive(baseline_url, _requests(site_key, WARMUP, 1))
        assert sync.process is not None and baseline.process is not None
        meters = {
            "sync": CpuMeter(
                dsn, {"sync": sync.process.pid}, {"broker": [broker_pid], "driver": [os.getpid()]}
            ),
            "bare": CpuMeter(dsn, {"bare": baseline.process.pid}, {"driver": [os.getpid()]}),
        }
        per_round = REQUESTS // ROUNDS
        for round_no in range(ROUNDS):
            first = 1_000_000 * (round_no + 1)
            for side, url, rates in (("sync", sync_url, ours), ("bare", baseline_url, bare)):
                requests = _requests(site_key, per_round, first)
                await meters[side].start()
                rates.append(await _drive(url, requests))
                cpu[side].append(await meters[side].stop(per=per_round))
        sent = WARMUP + per_round * ROUNDS
        on_broker = await _count_changes(bootstrap, site_id, sent)
    print(f"events on the broker: {on_broker} of {sent} webhooks", flush=True)
    paired = [o / b for o, b in zip(ours, bare, strict=True)]
    print(f"rounds (req/s): sync {[round(x) for x in ours]}, bare {[round(x) for x in bare]}", flush=True)
    print(
        f"paired round ratios: {[round(r, 2) for r in paired]} → median {statistics.median(paired):.2f}×, "
        f"best {max(paired):.2f}× (load average at start {load_at_start:.1f} on {os.cpu_count()} cores)",
        flush=True,
    )
    cpu_ms = {side: _median_by_group(rounds) for side, rounds in cpu.items()}
    print(f"CPU per webhook (core-ms, median of rounds): {cpu_ms}", flush=True)
    ours_median, bare_median = statistics.median(ours), statistics.median(bare)
    line = ratio_line(
        f"webhook receiver, {CONNECTIONS} connections",
        ours_median,
        bare_median,
        "bare FastAPI HMAC check",
        "req/s",
        "≥ 0.5×",
    )
    return {
        "sync_rps": round(ours_median, 1),
        "bare_hmac_rps": round(bare_median, 1),
        "ratio": round(ours_median / bare_median, 3),
        "rounds": {"sync": [round(x, 1) for x in ours], "bare": [round(x, 1) for x in bare]},
        "paired_ratios": [round(r, 3) for r in paired],
        "paired_ratio_median": round(statistics.median(paired), 3),
        "cpu_core_ms_per_webhook": cpu_ms,
        "load_average_at_start": load_at_start,
        "events_on_broker": on_broker,
        "webhooks": sent,
        "line": line,
    }


async def _latency(workdir: Path, bootstrap: str, dsn: str) -> dict[str, Any]:
    sync_port = free_port()
    sync = ServiceProcess(
        "sync",
        ["-m", "sync"],
        sync_env(dsn, bootstrap, sync_port, WI_RECONCILE_ENABLED="false"),
        workdir / "sync-latency.log",
        health_url=f"http://127.0.0.1:{sync_port}/readyz",
    )
    site_id, site_key = 2, "bench-wordpress"
    with (
        _process(sync),
        start_wordpress_site(
            workdir / "wordpress",
            bridge_plugin=PLUGIN_DIR,
            webhook_url=f"http://127.0.0.1:{sync_port}/v1/sync/wordpress/webhook",
            bridge_secret=SECRET,
            site_key=site_key,
        ) as wordpress,
    ):
        await _register_site(bootstrap, dsn, site_id, site_key, base_url=wordpress.base_url)
        consumer = AIOKafkaConsumer(
            topics.WORDPRESS_POST_CHANGED,
            bootstrap_servers=bootstrap,
            group_id=f"bench-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="latest",
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
        )
        await consumer.start()
        arrivals: dict[str, float] = {}

        async def listen() -> None:
            while True:
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    for r in records:
                        p = orjson.loads(r.value)["payload"]
                        if p["site_id"] == site_id and p["wp_status"] == "draft":
                            arrivals[p["post_id"]] = r.timestamp / 1000

        listener = asyncio.create_task(listen())
        await asyncio.sleep(2)  # the consumer's group join and first position
        started: dict[str, float] = {}
        rest_calls: list[float] = []
        async with httpx.AsyncClient(
            base_url=wordpress.rest_url, auth=wordpress.editor_auth, timeout=30
        ) as wp:
            for _ in range(LATENCY_SAMPLES):
                created = await wp.post("/wp/v2/posts", json={"title": "Latency", "status": "publish"})
                post_id = str(created.json()["id"])
                started[post_id] = time.time()
                t0 = time.perf_counter()
                changed = await wp.post(f"/wp/v2/posts/{post_id}", json={"status": "draft"})
                rest_calls.append(time.perf_counter() - t0)
                assert changed.status_code == 200, changed.text
        deadline = time.monotonic() + 20
        while len(arrivals) < LATENCY_SAMPLES and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await consumer.stop()
    latencies = [arrivals[p] - started[p] for p in started if p in arrivals]
    ours, rest = summary_ms(latencies), summary_ms(rest_calls)
    print(
        f"change in WordPress → wordpress.post.changed on the broker: p50 {ours['p50_ms']} ms, "
        f"p99 {ours['p99_ms']} ms ({ours['n']} of {LATENCY_SAMPLES} changes)",
        flush=True,
    )
    line = ratio_line(
        "latency p50", ours["p50_ms"], rest["p50_ms"], "the editor's REST call alone (p50)", "ms"
    )
    return {"change_to_broker": ours, "rest_call": rest, "line": line}


READ_MODEL_POSTS = 8
SAME_POST_GAP_S = 1.1  # WordPress keeps whole seconds in modified_gmt: never two changes of a post in one


async def _sync_status(api: Api, content_id: int) -> str | None:
    page = await api.call("GET", "/v1/writer/images/content_images/", params={"page_size": 100})
    status: str | None = next(g["sync_status"] for g in page["results"] if g["content_id"] == content_id)
    return status


async def _until_sync_status(api: Api, content_id: int, wanted: str, timeout_s: float = 30) -> float:
    """perf_counter time of the first poll (every ~10 ms) that shows `wanted` in the grouped view."""
    deadline = time.perf_counter() + timeout_s
    while True:
        status = await _sync_status(api, content_id)
        if status == wanted:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"content {content_id}: sync_status {status!r}, waiting for {wanted!r}")
        await asyncio.sleep(0.01)


async def _published_posts(api: Api, site_id: int, count: int) -> list[tuple[int, str]]:
    """(content id, WordPress post id) of `count` contents published through the API."""
    posts = []
    for n in range(count):
        content = await api.call(
            "POST",
            "/v1/writer/contents/",
            expect=201,
            json={"title": f"Latency {n}", "html": ARTICLE, "status": "published", "site_id": site_id},
        )
        published = await api.call(
            "POST",
            "/v1/publisher/publish/",
            params={"wait": "true"},
            expect=200,
            json={"content_id": content["id"], "destinations": ["wordpress"], "allow_missing_images": True},
        )
        assert published["sync_status"] == "published", published
        posts.append((content["id"], str(published["external_id"])))
    return posts


async def _read_model_latency(workdir: Path, changes: int) -> dict[str, Any]:
    """Change in WordPress → the grouped view shows the new sync_status, through every service on the path:
    WordPress + bridge plugin → sync → broker → images-api's projection → the read model, polled over HTTP
    as the page would. The generator is not on this path (images are allowed to be missing)."""
    services = ["images-api", "publisher", "sync"]
    async with running_stack(DEFAULT_SERVER, workdir / "stack", services) as running:
        sync_webhook = f"{running.stack.url('sync')}/v1/sync/wordpress/webhook"
        api = running.api
        with start_wordpress_site(
            workdir / "wordpress-stack", bridge_plugin=PLUGIN_DIR, webhook_url=sync_webhook
        ) as wordpress:
            site = await api.call(
                "POST",
                "/v1/sites/",
                expect=201,
                json={
                    "name": "Bench blog",
                    "base_url": wordpress.base_url,
                    "username": wordpress.admin_user,
                    "application_password": wordpress.app_password,
                },
            )
            configure_bridge(
                wordpress.root_dir / "wp-config.php",
                webhook_url=sync_webhook,
                secret=site["webhook_secret"],
                site_key=site["site_key"],
            )
            posts = await _published_posts(api, site["id"], READ_MODEL_POSTS)
            status = {content_id: "published" for content_id, _ in posts}
            changed_at = {content_id: 0.0 for content_id, _ in posts}
            latencies: list[float] = []
            rest_calls: list[float] = []
            after_rest: list[float] = []
            async with httpx.AsyncClient(
                base_url=wordpress.rest_url, auth=wordpress.editor_auth, timeout=30
            ) as wp:
                # The first round of changes is warm-up: sync learns the site, every consumer has joined.
                for n in range(READ_MODEL_POSTS + changes):
                    content_id, post_id = posts[n % READ_MODEL_POSTS]
                    wanted = "draft" if status[content_id] == "published" else "published"
                    await asyncio.sleep(
                        max(0.0, changed_at[content_id] + SAME_POST_GAP_S - time.perf_counter())
                    )
                    started = time.perf_counter()
                    response = await wp.post(
                        f"/wp/v2/posts/{post_id}",
                        json={"status": "draft" if wanted == "draft" else "publish"},
                    )
                    rest_s = time.perf_counter() - started
                    assert response.status_code == 200, response.text
                    seen = await _until_sync_status(
                        api, content_id, wanted, timeout_s=60 if n < READ_MODEL_POSTS else 30
                    )
                    status[content_id], changed_at[content_id] = wanted, started
                    if n >= READ_MODEL_POSTS:
                        latencies.append(seen - started)
                        rest_calls.append(rest_s)
                        after_rest.append(seen - started - rest_s)
    ours, rest, tail = summary_ms(latencies), summary_ms(rest_calls), summary_ms(after_rest)
    print(
        f"change in WordPress → grouped view shows the new sync_status: p50 {ours['p50_ms']} ms, "
        f"p99 {ours['p99_ms']} ms ({ours['n']} publish↔draft changes over {READ_MODEL_POSTS} posts, "
        f"polled every 10 ms); after the REST call returned: p50 {tail['p50_ms']} ms, p99 {tail['p99_ms']} ms",
        flush=True,
    )
    line_p50 = ratio_line(
        "read-model latency p50", ours["p50_ms"], rest["p50_ms"], "the editor's REST call alone (p50)", "ms"
    )
    line_p99 = ratio_line(
        "read-model latency p99", ours["p99_ms"], rest["p99_ms"], "the editor's REST call alone (p99)", "ms"
    )
    return {
        "change_to_read_model": ours,
        "rest_call": rest,
        "after_rest_call": tail,
        "lines": [line_p50, line_p99],
    }


PHASES = ("throughput", "latency", "read-model")


async def _run(phases: list[str], changes: int) -> dict[str, Any]:
    database = f"wi_bench_webhooks_{uuid.uuid4().hex[:8]}"
    dsn = await create_database(DEFAULT_SERVER, database)
    try:
        with TansuBroker() as broker, tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp:
            await ensure_topics(broker.bootstrap, 3)
            workdir = Path(tmp)
            result: dict[str, Any] = {}
            if "throughput" in phases:
                assert broker.process is not None
                result["throughput"] = await _throughput(workdir, broker.bootstrap, dsn, broker.process.pid)
            if "latency" in phases:
                result["latency"] = await _latency(workdir, broker.bootstrap, dsn)
            if "read-model" in phases:
                result["read_model_latency"] = await _read_model_latency(workdir, changes)
            return result
    finally:
        await drop_database(DEFAULT_SERVER, database)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench webhooks")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, from {PHASES}")
    parser.add_argument(
        "--changes", type=int, default=40, help="publish↔draft changes timed to the read model"
    )
    args = parser.parse_args(argv)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if unknown := set(args.phases) - set(PHASES):
        parser.error(f"unknown phase(s) {sorted(unknown)}")
    return args


def main(argv: list[str]) -> None:
    args = parse(argv)
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    result = asyncio.run(_run(args.phases, args.changes))
    write_result("webhooks", result)


if __name__ == "__main__":
    main(sys.argv[1:])
