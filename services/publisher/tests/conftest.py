"""The publisher under test: a real subprocess fed through the real broker, as images-api would feed it."""

from __future__ import annotations

import io
import itertools
import random
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from PIL import Image, ImageDraw

from publisher.bootstrap import VERSIONS_DIR
from publisher.settings import SCHEMA
from writer_images import db, events, topics
from writer_images.blobstore import CONTENT_TYPES, FilesystemBlobStore
from writer_images.events import make_event, utcnow
from writer_images.infra.ports import free_port
from writer_images.infra.postgres import create_database, drop_database
from writer_images.secrets import SecretBox
from writer_images.settings import SiteSecretsSettings
from writer_images.testing.kafka_tools import collect
from writer_images.testing.plugin import short_group_timeouts
from writer_images.testing.processes import ServiceProcess
from writer_images.testing.wordpress import WordPressSite

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "sync" / "wordpress-plugin" / "writer-images-bridge"
ACCOUNT_ID = 7
SECRETS_KEY = SiteSecretsSettings().secrets_key


def jpeg(seed: int, size: int = 256, *, noisy: bool = False) -> bytes:
    """A distinct small JPEG per seed (noisy ones compress badly: that is how to make a big one)."""
    rng = random.Random(seed)
    if noisy:
        image = Image.frombytes("RGB", (size, size), rng.randbytes(size * size * 3))
    else:
        image = Image.new("RGB", (size, size), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        ImageDraw.Draw(image).text((10, 10), f"image {seed}", fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


ARTICLE = (
    "<p>Intro paragraph.</p><h2>First</h2><p>One.</p><h2>Second</h2><p>Two.</p><h2>Third</h2><p>Three.</p>"
)


@dataclass
class Content:
    content_id: int
    site_id: int
    title: str
    images: list[events.PublishImage]
    html: str = ARTICLE

    @property
    def publication_key(self) -> str:
        return f"wi-{ACCOUNT_ID}-{self.content_id}-{self.site_id}"


@dataclass
class Harness:
    """Feeds events in, starts/kills the publisher, reads what came out."""

    bootstrap: str
    database_url: str
    blob_dir: Path
    log_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    process: ServiceProcess | None = None
    # Ids of their own per harness: every harness's publisher reads the whole session's requests, so two
    # harnesses must never share an id. With 9,990 possible starts two harnesses of one CI run once drew the
    # same one (a crash drill's dead site then failed the next module's content); now 10^9, from the OS.
    _ids: Iterator[int] = field(
        default_factory=lambda: itertools.count(10**6 + secrets.randbelow(10**9) * 10**5)
    )

    def next_id(self) -> int:
        return next(self._ids)

    # --- the publisher process -----------------------------------------------------------------

    def start(self, *, wait: bool = True) -> ServiceProcess:
        port = free_port()
        env = {
            "WI_DATABASE_URL": self.database_url,
            "WI_KAFKA_BOOTSTRAP": self.bootstrap,
            "WI_KAFKA_PARTITIONS": "3",
            "WI_BLOB_DIR": str(self.blob_dir),
            "WI_ALLOW_PRIVATE_URLS": "true",
            "WI_HTTP_PORT": str(port),
            "WI_SECRETS_KEY": SECRETS_KEY,
            # A group per harness: a module's publisher must not share partitions with another module's (dead
            # or stopped) publisher on the session's broker. Restarts of one harness keep its group.
            "WI_CONSUMER_GROUP": f"publisher-{self.run_id}",
            "WI_JOB_MAX_ATTEMPTS": "3",
            "WI_JOB_BACKOFF_BASE_S": "0.2",
            "WI_JOB_BACKOFF_MAX_S": "1",
            "WI_WP_REQUEST_ATTEMPTS": "2",
            "WI_WP_REQUEST_BACKOFF_BASE_S": "0.05",
            **short_group_timeouts(),
            **self.extra_env,
        }
        self.process = ServiceProcess(
            "publisher",
            ["-m", "publisher", "serve"],
            env,
            self.log_dir / f"publisher-{self.run_id}.log",
            health_url=f"http://127.0.0.1:{port}/readyz" if wait else None,
        ).start(wait_s=60)
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    # --- feeding events ------------------------------------------------------------------------

    async def send(self, outgoing: list[events.OutgoingEvent]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        try:
            for event in outgoing:
                await producer.send(event.topic, value=event.value, key=event.key.encode())
            await producer.flush()
        finally:
            await producer.stop()

    def site_changed(
        self, site_id: int, base_url: str, username: str, password: str, *, revision: int = 1
    ) -> events.OutgoingEvent:
        box = SecretBox(SECRETS_KEY)
        payload = events.SiteChanged(
            site_id=site_id,
            site_key=f"site-{site_id}",
            name=f"Site {site_id}",
            base_url=base_url,
            username=username,
            application_password_encrypted=box.seal(password),
            webhook_secret_encrypted=box.seal("unused"),
            revision=revision,
        )
        return make_event(payload, account_id=ACCOUNT_ID, correlation_id=self.run_id)

    async def add_site(
        self, site: WordPressSite, *, base_url: str | None = None, password: str | None = None
    ) -> int:
        site_id = self.next_id()
        await self.send(
            [
                self.site_changed(
                    site_id, base_url or site.base_url, site.editor_user, password or site.editor_app_password
                )
            ]
        )
        return site_id

    async def content(
        self, site_id: int, *, in_article: int = 3, image_size: int = 256, big_image: bool = False
    ) -> Content:
        content_id = self.next_id()
        store = FilesystemBlobStore(self.blob_dir)
        images = []
        for position in range(in_article + 1):
            data = jpeg(
                content_id * 10 + position,
                image_size if not big_image or position else 1400,
                noisy=big_image and not position,
            )
            stored = await store.put(data, extension="jpg")
            images.append(
                events.PublishImage(
                    image_id=content_id * 10 + position,
                    image_type="featured" if position == 0 else "in_article",
                    position=position,
                    blob_key=stored.key,
                    sha256=stored.sha256,
                    content_type=CONTENT_TYPES["jpg"],
                    alt_text=f"Alt {content_id}-{position}",
                    caption=f"Caption {position}" if position else None,
                )
            )
        return Content(content_id, site_id, f"Post {content_id}", images)

    def publish_requested(
        self,
        content: Content,
        *,
        wp_status: str = "publish",
        publish_at: datetime | None = None,
        action: str = "publish",
        known_external_id: str | None = None,
        publication_id: int | None = None,
        deadline_at: datetime | None = None,
    ) -> events.OutgoingEvent:
        """A request as images-api makes it: each one a new publication (a larger id) with its own attempt."""
        payload = events.ContentPublishRequested(
            publication_id=publication_id if publication_id is not None else self.next_id(),
            attempt_id=uuid.uuid4(),
            content_id=content.content_id,
            site_id=content.site_id,
            publication_key=content.publication_key,
            action=action,  # type: ignore[arg-type]
            title=content.title,
            html=content.html,
            wp_status=wp_status,  # type: ignore[arg-type]
            publish_at=publish_at,
            images=content.images,
            known_external_id=known_external_id,
            deadline_at=deadline_at or utcnow() + timedelta(minutes=10),
        )
        return make_event(payload, account_id=ACCOUNT_ID, correlation_id=self.run_id)

    # --- reading results -----------------------------------------------------------------------

    async def outcomes(
        self, content_ids: set[int], *, timeout_s: float = 60.0, at_least: int | None = None
    ) -> dict[int, list[dict[str, Any]]]:
        """Every `content.published` / `content.publish.failed` payload of these contents (type under `_type`)."""

        def payload(record: ConsumerRecord[Any, Any]) -> dict[str, Any]:
            envelope = orjson.loads(record.value)
            return {**envelope["payload"], "_type": envelope["type"]}

        def ours(record: ConsumerRecord[Any, Any]) -> bool:
            return bool(payload(record)["content_id"] in content_ids)

        def done(kept: list[ConsumerRecord[Any, Any]]) -> bool:
            return len({payload(r)["content_id"] for r in kept}) >= (at_least or len(content_ids))

        records = await collect(
            self.bootstrap,
            [topics.CONTENT_PUBLISHED, topics.CONTENT_PUBLISH_FAILED],
            until=done,
            keep=ours,
            timeout_s=timeout_s,
        )
        found: dict[int, list[dict[str, Any]]] = {}
        for record in records:
            item = payload(record)
            found.setdefault(item["content_id"], []).append(item)
        return found

    async def dead_letters(self, content_ids: set[int], *, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        records = await collect(
            self.bootstrap,
            [topics.dlq_topic(topics.CONTENT_PUBLISH_REQUESTED)],
            until=lambda kept: len(kept) >= len(content_ids),
            keep=lambda r: int(orjson.loads(r.value)["original"]["payload"]["content_id"]) in content_ids,
            timeout_s=timeout_s,
        )
        return [orjson.loads(r.value) for r in records]


@pytest.fixture(scope="module")
async def publisher_database(pg_server_dsn: str) -> AsyncIterator[str]:
    name = f"wi_test_pub_{uuid.uuid4().hex[:10]}"
    dsn = await create_database(pg_server_dsn, name)
    yield dsn
    await drop_database(pg_server_dsn, name)


@pytest.fixture
def harness_factory(
    fresh_database_url: str, kafka_bootstrap: str, blob_dir: Path, tmp_path: Path
) -> Iterator[Callable[[dict[str, str]], Harness]]:
    """Harnesses with extra settings (not started), stopped at the end of the test."""
    made: list[Harness] = []

    def make(extra_env: dict[str, str]) -> Harness:
        made.append(Harness(kafka_bootstrap, fresh_database_url, blob_dir, tmp_path, extra_env=extra_env))
        return made[-1]

    yield make
    for harness in made:
        harness.stop()


@pytest.fixture(scope="module")
def harness(
    publisher_database: str, kafka_bootstrap: str, blob_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    """One publisher process for a test module (its own database)."""
    harness = Harness(
        kafka_bootstrap, publisher_database, blob_dir, tmp_path_factory.mktemp("publisher-logs")
    )
    harness.start()
    try:
        yield harness
    finally:
        harness.stop()


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The publisher's schema in a database of its own, for tests that run the job runner in-process."""
    await db.migrate(fresh_database_url, SCHEMA, VERSIONS_DIR)
    pool = await db.create_pool(fresh_database_url, SCHEMA, min_size=2, max_size=6)
    yield pool
    await pool.close()


def wp(site: WordPressSite) -> httpx.Client:
    return httpx.Client(base_url=site.rest_url, auth=site.admin_auth, timeout=30)


def wp_total(site: WordPressSite, path: str, **params: str) -> int:
    with wp(site) as client:
        response = client.get(path, params={**params, "per_page": "1"})
        response.raise_for_status()
        return int(response.headers["x-wp-total"])


class FaultyProxy:
    """A reverse proxy in front of a site that misbehaves like real hosts do.

    `status_for_all`: answer every request with this status (e.g. 500); `max_body`: refuse bodies larger than
    this with 413 (like nginx's client_max_body_size); `strip_authorization`: drop the Authorization header
    (like a misconfigured Apache/FastCGI); `delay_s`: a slow host (added to every request).
    """

    def __init__(
        self,
        target: str,
        *,
        status_for_all: int | None = None,
        max_body: int | None = None,
        strip_authorization: bool = False,
        delay_s: float = 0.0,
    ) -> None:
        self.target = target
        self.hits = 0
        self.in_flight = 0
        self.max_in_flight = 0
        counting = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                with counting:
                    proxy.hits += 1
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                try:
                    self._forward()
                finally:
                    with counting:
                        proxy.in_flight -= 1

            def _forward(self) -> None:
                if delay_s:
                    time.sleep(delay_s)
                length = int(self.headers.get("Content-Length") or 0)
                if max_body is not None and length > max_body:
                    # Read the body first, as nginx's lingering close does: closing with it unread resets the
                    # connection, and the client may see the reset instead of the 413 (a flaky "unreachable").
                    self.rfile.read(length)
                    self._answer(
                        413, b"<html><body><h1>413 Request Entity Too Large</h1></body></html>", "text/html"
                    )
                    self.close_connection = True
                    return
                body = self.rfile.read(length) if length else b""
                if status_for_all is not None:
                    self._answer(
                        status_for_all, b"<html><body>Internal Server Error</body></html>", "text/html"
                    )
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                    and not (strip_authorization and k.lower() == "authorization")
                }
                with httpx.Client(timeout=60) as client:
                    upstream = client.request(
                        self.command, proxy.target + self.path, headers=headers, content=body
                    )
                self._answer(upstream.status_code, upstream.content, upstream.headers.get("content-type", ""))

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultyProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def bridged_site(wordpress_factory: Any) -> Iterator[WordPressSite]:
    """A WordPress with the bridge plugin (publication-key meta + lookup route), one per test module."""
    site: WordPressSite = wordpress_factory.start(bridge_plugin=PLUGIN_DIR)
    yield site
    wordpress_factory.stop(site)


@pytest.fixture
def faulty_proxy() -> type[FaultyProxy]:
    """The FaultyProxy class (test modules cannot import conftest under --import-mode=importlib)."""
    return FaultyProxy
