"""Helpers for tests that run the sync service: start `python -m sync` as a subprocess, register a site
through the real broker, sign webhooks as the bridge plugin does, read `wordpress.post.changed` back.

Used by sync's own tests and by cross-service tests; nothing here runs in production.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka.structs import ConsumerRecord

from sync.domain.signature import sign
from writer_images import topics
from writer_images.events import ContentPublished, SiteChanged, make_event
from writer_images.secrets import SecretBox
from writer_images.settings import SiteSecretsSettings
from writer_images.testing.kafka_tools import collect, send_events
from writer_images.testing.plugin import short_group_timeouts
from writer_images.testing.processes import ServiceProcess

SECRETS_KEY = SiteSecretsSettings().secrets_key
OPERATOR_TOKEN = "operator-token-for-tests"  # noqa: S105  (tests only)
# The bridge plugin folder, for `wordpress_factory.start(bridge_plugin=PLUGIN_DIR, ...)`.
PLUGIN_DIR = Path(__file__).resolve().parents[2] / "wordpress-plugin" / "writer-images-bridge"


def sync_env(database_url: str, kafka_bootstrap: str, port: int, **overrides: str) -> dict[str, str]:
    """WI_* variables for `python -m sync` in tests: loopback WordPress allowed, quick group joins."""
    return {
        "WI_DATABASE_URL": database_url,
        "WI_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "WI_HTTP_PORT": str(port),
        "WI_SECRETS_KEY": SECRETS_KEY,
        "WI_ALLOW_PRIVATE_URLS": "true",
        "WI_OPERATOR_TOKEN": OPERATOR_TOKEN,
        "WI_RECONCILE_INTERVAL_S": "3600",
        "WI_RECONCILE_TICK_S": "0.2",
        "WI_DB_POOL_MAX": "6",
        **short_group_timeouts(),
        **overrides,
    }


@dataclass
class SyncService:
    process: ServiceProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/v1/sync/wordpress/webhook"


def start_sync(log_dir: Path, env: dict[str, str], port: int) -> SyncService:
    """`python -m sync` as a subprocess, returned once /readyz answers 200."""
    process = ServiceProcess(
        name="sync",
        args=["-m", "sync"],
        env=env,
        log_path=log_dir / f"sync-{port}.log",
        health_url=f"http://127.0.0.1:{port}/readyz",
    )
    return SyncService(process.start(wait_s=60), port)


@dataclass(frozen=True)
class RegisteredSite:
    site_id: int
    site_key: str
    secret: str
    account_id: int


async def publish_site(
    kafka_bootstrap: str,
    *,
    site_id: int,
    site_key: str,
    secret: str,
    base_url: str = "http://127.0.0.1:9",
    username: str = "editor",
    app_password: str = "",
    revision: int = 1,
    deleted: bool = False,
    account_id: int = 7,
) -> None:
    """Publish a `site.changed` (secrets sealed with the test key) as images-api would."""
    box = SecretBox(SECRETS_KEY)
    payload = SiteChanged(
        site_id=site_id,
        site_key=site_key,
        name=f"site {site_id}",
        base_url=base_url,
        username=username,
        application_password_encrypted=box.seal(app_password),
        webhook_secret_encrypted=box.seal(secret),
        deleted=deleted,
        revision=revision,
    )
    await send_events(
        kafka_bootstrap, [make_event(payload, account_id=account_id, correlation_id="sync-tests")]
    )


async def publish_content_published(
    kafka_bootstrap: str, *, site_id: int, post_id: int, link: str, account_id: int = 7
) -> None:
    """Publish a `content.published` as the publisher would after creating the post."""
    payload = ContentPublished(
        publication_id=post_id,
        attempt_id=uuid.uuid4(),
        content_id=post_id,
        site_id=site_id,
        external_id=str(post_id),
        external_url=link,
        wp_status="publish",
        sync_status="published",
        featured_media_id=None,
        media_ids={},
    )
    await send_events(
        kafka_bootstrap, [make_event(payload, account_id=account_id, correlation_id="sync-tests")]
    )


async def wait_for_site(
    conn: asyncpg.Connection, site_id: int, revision: int = 1, timeout_s: float = 20
) -> None:
    """Until sync's consumer has applied the site's `revision` (conn's search_path is `sync`)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = await conn.fetchval("SELECT revision FROM sites WHERE site_id = $1", site_id)
        if found is not None and found >= revision:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"site {site_id} revision {revision} never reached sync's sites table")


def new_site_id() -> int:
    return 100_000 + uuid.uuid4().int % 1_000_000_000


def webhook_body(site_key: str, post_id: int, status: str = "publish", **fields: Any) -> bytes:
    """A body shaped like the bridge plugin's."""
    body = {
        "site_key": site_key,
        "post_id": post_id,
        "status": status,
        "modified_gmt": "2026-01-02T03:04:05",
        "link": f"http://wp.test/?p={post_id}",
        "title": "A post",
        "publication_key": f"wi-7-{post_id}-1",
        "event": "wp_after_insert_post",
    }
    body.update(fields)
    return orjson.dumps(body)


def signed_headers(
    secret: str, body: bytes, *, webhook_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    webhook_id = webhook_id or str(uuid.uuid4())
    ts = str(timestamp if timestamp is not None else int(time.time()))
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": ts,
        "webhook-signature": sign(secret, webhook_id, ts, body),
    }


def changes_of_site(site_id: int) -> Callable[[ConsumerRecord[Any, Any]], bool]:
    def keep(record: ConsumerRecord[Any, Any]) -> bool:
        return bool(orjson.loads(record.value)["payload"]["site_id"] == site_id)

    return keep


async def post_changes(
    kafka_bootstrap: str,
    site_id: int,
    *,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout_s: float = 20.0,
) -> list[dict[str, Any]]:
    """The `wordpress.post.changed` payloads of a site on the broker, once `until(payloads)` holds."""
    records = await collect(
        kafka_bootstrap,
        [topics.WORDPRESS_POST_CHANGED],
        until=lambda kept: until([orjson.loads(r.value)["payload"] for r in kept]),
        keep=changes_of_site(site_id),
        timeout_s=timeout_s,
    )
    return [orjson.loads(r.value)["payload"] for r in records]
