"""Publishing 100 posts × 4 images to a local WordPress: the publisher against two hand-written baselines.

Baselines, measured in the same run, each on a fresh WordPress site of its own:
* "sequential": the seed's flow, one request at a time (upload each image with its alt text, then the post);
* "direct": the same requests from a hand-written httpx script with the publisher's concurrency
  (2 posts in flight per site, images of a post one after another).
The publisher run is timed from the first `content.publish.requested` sent to the last `content.published`
read back from the broker; it does more per post than the scripts (a publication-key lookup before creating,
the ledger and publication rows, the outbox), which is what "no duplicates" costs.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
from PIL import Image, ImageDraw

from bench.common import PRODUCTION_FETCH_WAIT, ratio_line, write_result
from publisher.domain.rules import PlacedImage, place_images
from writer_images import events, topics
from writer_images.blobstore import FilesystemBlobStore
from writer_images.events import make_event, utcnow
from writer_images.infra.broker import TansuBroker
from writer_images.infra.ports import free_port
from writer_images.infra.postgres import postgres_server, throwaway_database
from writer_images.kafka import ensure_topics
from writer_images.secrets import SecretBox
from writer_images.settings import SiteSecretsSettings
from writer_images.testing.kafka_tools import collect
from writer_images.testing.plugin import short_group_timeouts
from writer_images.testing.processes import ServiceProcess
from writer_images.testing.wordpress import WordPressSite, start_wordpress_site

POSTS = int(os.environ.get("BENCH_POSTS", "100"))
IMAGES_PER_POST = 4
CONCURRENCY = 2  # the publisher's default per-site limit
PLUGIN = Path(__file__).resolve().parents[1] / "services/sync/wordpress-plugin/writer-images-bridge"
ARTICLE = "<p>Intro.</p><h2>One</h2><p>1</p><h2>Two</h2><p>2</p><h2>Three</h2><p>3</p>"


def _jpeg(seed: int) -> bytes:
    rng = random.Random(seed)
    image = Image.new("RGB", (512, 512), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    ImageDraw.Draw(image).text((20, 20), f"bench image {seed}", fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def _images(run: str) -> list[list[bytes]]:
    base = int(hashlib.sha256(run.encode()).hexdigest()[:8], 16)
    return [[_jpeg(base + p * 10 + i) for i in range(IMAGES_PER_POST)] for p in range(POSTS)]


# --- baselines: hand-written scripts -------------------------------------------------------------


async def _script_post(client: httpx.AsyncClient, index: int, images: list[bytes]) -> None:
    media: list[tuple[int, str]] = []
    for n, data in enumerate(images):
        response = await client.post(
            "/wp/v2/media",
            params={"alt_text": f"alt {index}-{n}"},
            content=data,
            headers={
                "Content-Disposition": f'attachment; filename="b-{index}-{n}.jpg"',
                "Content-Type": "image/jpeg",
            },
        )
        if response.status_code >= 400:
            raise RuntimeError(f"upload: HTTP {response.status_code}: {response.text[:500]}")
        media.append((response.json()["id"], response.json()["source_url"]))
    # The same post the publisher writes: image blocks with their real URLs at the same places.
    placed = [PlacedImage(m, url, f"alt {index}-{n + 1}", None) for n, (m, url) in enumerate(media[1:])]
    body = place_images(ARTICLE, placed)
    response = await client.post(
        "/wp/v2/posts",
        json={
            "title": f"Direct {index}",
            "content": body,
            "status": "publish",
            "featured_media": media[0][0],
        },
    )
    response.raise_for_status()


async def _warm_up(site: WordPressSite) -> None:
    """One untimed upload per fresh site: WordPress creates this month's uploads folder on the first upload,
    and two first uploads at once race on it (one answers 500 "Unable to create directory")."""
    async with httpx.AsyncClient(base_url=site.rest_url, auth=site.editor_auth, timeout=60) as client:
        await _script_post(client, -1, [_jpeg(-1)])


async def _script(site: WordPressSite, images: list[list[bytes]], concurrency: int) -> float:
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=site.rest_url, auth=site.editor_auth, timeout=60) as client:

        async def one(index: int) -> None:
            async with limit:
                await _script_post(client, index, images[index])

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(POSTS)))
        return POSTS / (time.perf_counter() - started)


# --- the publisher ----------------------------------------------------------------------------------


async def _publisher(
    site: WordPressSite, images: list[list[bytes]], bootstrap: str, dsn: str, blob_dir: Path
) -> float:
    settings = SiteSecretsSettings()
    store = FilesystemBlobStore(blob_dir)
    # Ids from the OS: two runs sharing a database never draw the same site (as in the tests' harnesses).
    site_id, account_id, run = 10**6 + secrets.randbelow(10**9 - 10**6), 1, uuid.uuid4().hex[:8]
    box = SecretBox(settings.secrets_key)
    site_event = make_event(
        events.SiteChanged(
            site_id=site_id,
            site_key="bench",
            name="bench",
            base_url=site.base_url,
            username=site.editor_user,
            application_password_encrypted=box.seal(site.editor_app_password),
            webhook_secret_encrypted=box.seal("unused"),
            revision=1,
        ),
        account_id=account_id,
        correlation_id=run,
    )
    requests = []
    for index, post_images in enumerate(images):
        content_id = site_id + index + 1
        refs = []
        for n, data in enumerate(post_images):
            stored = await store.put(data, extension="jpg")
            refs.append(
                events.PublishImage(
                    image_id=content_id * 10 + n,
                    image_type="featured" if n == 0 else "in_article",
                    position=n,
                    blob_key=stored.key,
                    sha256=stored.sha256,
                    content_type="image/jpeg",
                    alt_text=f"alt {index}-{n}",
                )
            )
        requests.append(
            make_event(
                events.ContentPublishRequested(
                    publication_id=content_id,
                    attempt_id=uuid.uuid4(),
                    content_id=content_id,
                    site_id=site_id,
                    publication_key=f"wi-{account_id}-{content_id}-{site_id}",
                    action="publish",
                    title=f"Publisher {index}",
                    html=ARTICLE,
                    wp_status="publish",
                    images=refs,
                    deadline_at=utcnow() + timedelta(minutes=30),
                ),
                account_id=account_id,
                correlation_id=run,
            )
        )
    port = free_port()
    log_path = Path(tempfile.mkdtemp()) / "publisher.log"
    process = ServiceProcess(
        "publisher",
        ["-m", "publisher", "serve"],
        {
            "WI_DATABASE_URL": dsn,
            "WI_KAFKA_BOOTSTRAP": bootstrap,
            "WI_BLOB_DIR": str(blob_dir),
            "WI_ALLOW_PRIVATE_URLS": "true",
            "WI_HTTP_PORT": str(port),
            "WI_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            **short_group_timeouts(),
            **PRODUCTION_FETCH_WAIT,
        },
        log_path,
        health_url=f"http://127.0.0.1:{port}/readyz",
    ).start(wait_s=60)
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(site_event.topic, site_event.value, key=site_event.key.encode())
        wanted = {site_id + i + 1 for i in range(POSTS)}
        # The reader joins its group before the clock starts, as the direct script's loop is ready too.
        collecting = asyncio.create_task(
            collect(
                bootstrap,
                [topics.CONTENT_PUBLISHED, topics.CONTENT_PUBLISH_FAILED],
                until=lambda kept: (
                    len({orjson.loads(r.value)["payload"]["content_id"] for r in kept}) >= POSTS
                ),
                keep=lambda r: orjson.loads(r.value)["payload"]["content_id"] in wanted,
                timeout_s=600,
            )
        )
        await asyncio.sleep(1.5)  # the site connection is in place and the reader has joined
        started = time.perf_counter()
        for event in requests:
            await producer.send(event.topic, event.value, key=event.key.encode())
        await producer.flush()
        records = await collecting
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
        process.stop()
    kinds = {orjson.loads(r.value)["type"] for r in records}
    if kinds != {"content.published"} or len(records) < POSTS:
        raise RuntimeError(f"publisher run incomplete: {kinds}, {len(records)} outcomes; see {log_path}")
    print(f"publisher log: {log_path}", flush=True)
    return POSTS / elapsed


async def run(server: str, rounds: int) -> dict[str, Any]:
    """`rounds` rounds of the three runs, each on a fresh site; rounds pair the runs in time, so that a noisy
    neighbour on this shared machine weighs on all three alike, and the median round ratio is reported."""
    work = Path(tempfile.mkdtemp(prefix="bench-publishing-"))
    runs: dict[str, list[float]] = {"sequential": [], "direct": [], "publisher": []}
    async with throwaway_database(server, "wi_bench") as dsn:
        with TansuBroker() as broker:
            await ensure_topics(broker.bootstrap, 3)

            async def on_fresh_site(label: str, run: Callable[[WordPressSite], Awaitable[float]]) -> float:
                with start_wordpress_site(work / label, bridge_plugin=PLUGIN) as site:
                    await _warm_up(site)
                    return await run(site)

            print(
                f"{POSTS} posts × {IMAGES_PER_POST} images (512² JPEG) per run, fresh site each, "
                f"{rounds} round(s)",
                flush=True,
            )
            for n in range(rounds):
                runs["sequential"].append(
                    await on_fresh_site(f"s{n}", partial(_script, images=_images(f"s{n}"), concurrency=1))
                )
                runs["direct"].append(
                    await on_fresh_site(
                        f"d{n}", partial(_script, images=_images(f"d{n}"), concurrency=CONCURRENCY)
                    )
                )
                publisher = partial(
                    _publisher,
                    images=_images(f"p{n}"),
                    bootstrap=broker.bootstrap,
                    dsn=dsn,
                    blob_dir=work / f"blobs{n}",
                )
                runs["publisher"].append(await on_fresh_site(f"p{n}", publisher))
                print(
                    f"round {n + 1}: sequential {runs['sequential'][-1]:.2f}, direct httpx at {CONCURRENCY} "
                    f"{runs['direct'][-1]:.2f}, publisher {runs['publisher'][-1]:.2f} posts/s",
                    flush=True,
                )
    paired = {
        baseline: [o / b for o, b in zip(runs["publisher"], runs[baseline], strict=True)]
        for baseline in ("sequential", "direct")
    }
    print(
        "paired round ratios: "
        + "; ".join(f"vs {b} {[round(r, 2) for r in rs]}" for b, rs in paired.items()),
        flush=True,
    )
    ours, sequential, direct = (statistics.median(runs[k]) for k in ("publisher", "sequential", "direct"))
    vs_sequential = ratio_line(
        "publisher vs sequential (medians)", ours, sequential, "sequential loop", "posts/s", "≥ 1.5×"
    )
    vs_direct = ratio_line(
        "publisher vs direct (medians)",
        ours,
        direct,
        f"direct httpx script (concurrency {CONCURRENCY})",
        "posts/s",
        "≥ 0.8×",
    )
    return {
        "posts": POSTS,
        "images_per_post": IMAGES_PER_POST,
        "concurrency": CONCURRENCY,
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "posts_per_s": {k: [round(v, 3) for v in vs] for k, vs in runs.items()},
        "ratios": {"vs_sequential": round(ours / sequential, 3), "vs_direct": round(ours / direct, 3)},
        "paired_ratios": {k: [round(r, 3) for r in rs] for k, rs in paired.items()},
        "lines": [vs_sequential, vs_direct],
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench publishing")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three runs (medians reported)")
    args = parser.parse_args(argv)
    with postgres_server(Path(tempfile.mkdtemp()) / "pgdata") as server:
        write_result("publishing", asyncio.run(run(server, args.rounds)))


if __name__ == "__main__":
    main(sys.argv[1:])
