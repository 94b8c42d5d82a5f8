"""Real WordPress with the bridge plugin, pointed at a real `python -m sync`: changes made in WordPress
reach the broker as `wordpress.post.changed`, by webhook while sync is up and by the reconciler after it
was down."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from sync.testing import (
    OPERATOR_TOKEN,
    PLUGIN_DIR,
    SyncService,
    changes_of_site,
    new_site_id,
    publish_content_published,
    publish_site,
    start_sync,
    sync_env,
    wait_for_site,
)
from writer_images import topics
from writer_images.infra.ports import free_port
from writer_images.testing.kafka_tools import collect
from writer_images.testing.waiting import eventually
from writer_images.testing.wordpress import WordPressSite
from writer_images.testing.wordpress_fixtures import WordPressFactory

pytestmark = [pytest.mark.wordpress, pytest.mark.slow]

META_KEY = "_writer_images_publication_key"


@pytest.fixture(scope="module")
def sync_service(
    database_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SyncService]:
    """Pages of 2 posts: the catch-up after a restart has to page (keyset on modified_gmt)."""
    port = free_port()
    env = sync_env(database_url, kafka_bootstrap, port, WI_RECONCILE_PAGE_SIZE="2")
    service = start_sync(tmp_path_factory.mktemp("sync-e2e"), env, port)
    yield service
    service.process.stop()


@dataclass(frozen=True)
class Linked:
    """A WordPress site whose bridge plugin talks to the sync service, which knows the site."""

    site_id: int
    wordpress: WordPressSite


@pytest.fixture(scope="module")
async def linked(
    sync_service: SyncService, wordpress_factory: WordPressFactory, kafka_bootstrap: str, database_url: str
) -> AsyncIterator[Linked]:
    site_id, site_key, secret = new_site_id(), f"wp-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    wordpress = wordpress_factory.start(
        bridge_plugin=PLUGIN_DIR,
        webhook_url=sync_service.webhook_url,
        bridge_secret=secret,
        site_key=site_key,
    )
    await publish_site(
        kafka_bootstrap,
        site_id=site_id,
        site_key=site_key,
        secret=secret,
        base_url=wordpress.base_url,
        username=wordpress.editor_user,
        app_password=wordpress.editor_app_password,
    )
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "sync"})
    try:
        await wait_for_site(conn, site_id)
        # The first reconciliation pass of a new site runs at once; let it finish so that what the tests see
        # comes from webhooks unless a test stops them.
        await wait_for_first_pass(conn, site_id)
    finally:
        await conn.close()
    yield Linked(site_id, wordpress)
    wordpress_factory.stop(wordpress)


async def wait_for_first_pass(conn: asyncpg.Connection, site_id: int) -> None:
    query = "SELECT last_success_at IS NOT NULL FROM reconcile_state WHERE site_id = $1"
    await eventually(
        lambda: conn.fetchval(query, site_id), what=f"the first reconciliation pass of site {site_id}"
    )


@pytest.fixture
def editor(linked: Linked) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=linked.wordpress.rest_url, auth=linked.wordpress.editor_auth, timeout=30
    ) as client:
        yield client


def create_post(editor: httpx.Client, status: str = "publish") -> tuple[int, str]:
    key = f"wi-7-{uuid.uuid4().hex[:8]}-1"
    created = editor.post("/wp/v2/posts", json={"title": "Synced", "status": status, "meta": {META_KEY: key}})
    assert created.status_code == 201, created.text
    return created.json()["id"], key


@dataclass(frozen=True)
class Change:
    payload: dict[str, Any]
    on_broker_at: float  # the record's timestamp (set when the relay produced it), seconds since the epoch


async def changes(kafka_bootstrap: str, site_id: int, until: Any, timeout_s: float = 20) -> list[Change]:
    records = await collect(
        kafka_bootstrap,
        [topics.WORDPRESS_POST_CHANGED],
        until=lambda kept: until([orjson.loads(r.value)["payload"] for r in kept]),
        keep=changes_of_site(site_id),
        timeout_s=timeout_s,
    )
    return [Change(orjson.loads(r.value)["payload"], r.timestamp / 1000) for r in records]


def has(post_id: int, status: str) -> Any:
    return lambda got: any(p["post_id"] == str(post_id) and p["wp_status"] == status for p in got)


def of_post(found: list[Change], post_id: int) -> list[tuple[str, str]]:
    return [
        (c.payload["wp_status"], c.payload["source"]) for c in found if c.payload["post_id"] == str(post_id)
    ]


async def test_a_published_post_changed_to_draft_in_wordpress_is_on_the_broker_within_2_s(
    linked: Linked, editor: httpx.Client, kafka_bootstrap: str
) -> None:
    post_id, key = create_post(editor)
    await changes(kafka_bootstrap, linked.site_id, has(post_id, "publish"))

    changed_at = time.time()
    assert editor.post(f"/wp/v2/posts/{post_id}", json={"status": "draft"}).status_code == 200

    found = await changes(kafka_bootstrap, linked.site_id, has(post_id, "draft"))
    [draft] = [c for c in found if c.payload["post_id"] == str(post_id) and c.payload["wp_status"] == "draft"]
    assert draft.payload["source"] == "webhook"
    assert draft.payload["publication_key"] == key
    assert draft.on_broker_at - changed_at < 2.0, "the change reached the broker within 2 s"
    # One event per change; the first one may come from the reconciler's first pass over the new site.
    assert [status for status, _ in of_post(found, post_id)] == ["publish", "draft"]


async def test_trash_then_force_delete_in_wordpress_become_trash_then_deleted(
    linked: Linked, editor: httpx.Client, kafka_bootstrap: str
) -> None:
    post_id, key = create_post(editor)

    assert editor.delete(f"/wp/v2/posts/{post_id}").json()["status"] == "trash"
    await changes(kafka_bootstrap, linked.site_id, has(post_id, "trash"))
    assert editor.delete(f"/wp/v2/posts/{post_id}", params={"force": "true"}).json()["deleted"] is True

    found = await changes(kafka_bootstrap, linked.site_id, has(post_id, "deleted"))
    assert of_post(found, post_id)[1:] == [("trash", "webhook"), ("deleted", "webhook")]
    assert [status for status, _ in of_post(found, post_id)] == ["publish", "trash", "deleted"]
    [deleted] = [
        c.payload
        for c in found
        if c.payload["post_id"] == str(post_id) and c.payload["wp_status"] == "deleted"
    ]
    assert deleted["publication_key"] == key


async def test_on_demand_reconciliation_reads_the_site_and_finds_nothing_new(
    linked: Linked, editor: httpx.Client, sync_service: SyncService, database_url: str, kafka_bootstrap: str
) -> None:
    post_id, _ = create_post(editor)
    await changes(kafka_bootstrap, linked.site_id, has(post_id, "publish"))

    async with httpx.AsyncClient(base_url=sync_service.url, timeout=30) as http:
        response = await http.post(
            f"/v1/sync/reconcile/{linked.site_id}", headers={"authorization": f"Bearer {OPERATOR_TOKEN}"}
        )
    cli = subprocess.run(
        [sys.executable, "-m", "sync", "reconcile", "--site-id", str(linked.site_id)],
        env={
            **sync_env(database_url, kafka_bootstrap, 0),
            "WI_LOG_LEVEL": "WARNING",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert response.status_code == 200, response.text
    report = response.json()["data"]
    assert report["site_id"] == linked.site_id
    assert report["emitted"] == 0, "webhooks already told everything"
    assert report["checked"] >= 1
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout.strip().splitlines()[-1])["emitted"] == 0


async def test_changes_made_while_sync_is_down_are_caught_up_by_the_reconciler_after_restart(
    linked: Linked, editor: httpx.Client, sync_service: SyncService, kafka_bootstrap: str, database_url: str
) -> None:
    to_draft, _ = create_post(editor)
    to_trash, _ = create_post(editor)
    to_delete, _ = create_post(editor)
    # Published by Writer Images on a site without the plugin's meta: only content.published says it is ours.
    announced = editor.post("/wp/v2/posts", json={"title": "Announced", "status": "publish"}).json()
    await publish_content_published(
        kafka_bootstrap, site_id=linked.site_id, post_id=announced["id"], link=announced["link"]
    )
    await changes(
        kafka_bootstrap,
        linked.site_id,
        lambda got: all(has(p, "publish")(got) for p in (to_draft, to_trash, to_delete, announced["id"])),
    )
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "sync"})
    try:
        await wait_until_ours(conn, linked.site_id, announced["id"])
        unreachable = new_site_id()  # a second site whose WordPress is down must not hold this one up
        await publish_site(
            kafka_bootstrap,
            site_id=unreachable,
            site_key=f"down-{unreachable}",
            secret="x",
            base_url="http://127.0.0.1:9",
        )
        await wait_for_site(conn, unreachable)

        sync_service.process.kill9()
        try:
            assert editor.post(f"/wp/v2/posts/{to_draft}", json={"status": "draft"}).status_code == 200
            assert editor.delete(f"/wp/v2/posts/{to_trash}").status_code == 200
            assert editor.delete(f"/wp/v2/posts/{to_delete}", params={"force": "true"}).status_code == 200
            assert (
                editor.delete(f"/wp/v2/posts/{announced['id']}", params={"force": "true"}).status_code == 200
            )
            queued = editor.get("/writer-images/v1/health").json()["queued_webhooks"]
            assert queued == 4, "the plugin could not deliver and queued its webhooks"
        finally:
            sync_service.process.start(wait_s=60)

        found = await changes(
            kafka_bootstrap,
            linked.site_id,
            lambda got: (
                has(to_draft, "draft")(got)
                and has(to_trash, "trash")(got)
                and has(to_delete, "deleted")(got)
                and has(announced["id"], "deleted")(got)
            ),
            timeout_s=30,
        )
        assert of_post(found, to_draft)[-1] == ("draft", "reconciler")
        assert of_post(found, to_trash)[-1] == ("trash", "reconciler")
        assert of_post(found, to_delete)[-1] == ("deleted", "reconciler")
        assert of_post(found, announced["id"])[-1] == ("deleted", "reconciler")
        backing_off = await conn.fetchrow(
            "SELECT failures, last_error, next_attempt_at > now() AS later FROM reconcile_state WHERE site_id = $1",
            unreachable,
        )
        assert backing_off["failures"] >= 1 and backing_off["later"], dict(backing_off)
        assert "unreachable" in backing_off["last_error"]
    finally:
        await conn.close()

    # The next change in WordPress flushes the plugin's queue first: the four late webhooks repeat what the
    # reconciler already emitted, and change nothing twice.
    marker, _ = create_post(editor)
    found = await changes(kafka_bootstrap, linked.site_id, has(marker, "publish"))
    assert editor.get("/writer-images/v1/health").json()["queued_webhooks"] == 0
    assert [s for s, _ in of_post(found, to_draft)] == ["publish", "draft"]
    assert [s for s, _ in of_post(found, to_trash)] == ["publish", "trash"]
    assert [s for s, _ in of_post(found, to_delete)] == ["publish", "deleted"]
    assert [s for s, _ in of_post(found, announced["id"])] == ["publish", "deleted"]
    # The site's history before sync knew it ("Hello world!", post 1) was a baseline, never an event.
    assert of_post(found, 1) == []


async def wait_until_ours(conn: asyncpg.Connection, site_id: int, post_id: int) -> None:
    await eventually(
        lambda: conn.fetchval(
            "SELECT ours FROM known_posts WHERE site_id = $1 AND post_id = $2", site_id, post_id
        ),
        what="content.published marking the post as ours",
        timeout_s=20,
    )


async def test_a_wrong_application_password_backs_off_with_an_actionable_reason(
    linked: Linked, kafka_bootstrap: str, database_url: str
) -> None:
    site_id = new_site_id()
    await publish_site(
        kafka_bootstrap,
        site_id=site_id,
        site_key=f"wrong-password-{site_id}",
        secret="x",
        base_url=linked.wordpress.base_url,
        username=linked.wordpress.editor_user,
        app_password="not the application password",
    )
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "sync"})
    try:
        state = await eventually(
            lambda: conn.fetchrow(
                "SELECT failures, last_error, next_attempt_at > now() AS later FROM reconcile_state "
                "WHERE site_id = $1 AND failures > 0",
                site_id,
            ),
            lambda row: row is not None,
            what="the failed pass's record",
            timeout_s=20,
        )
    finally:
        await conn.close()

    assert state["later"], "the next attempt waits"
    assert "application password" in state["last_error"]
    assert "not the application password" not in state["last_error"], "secrets stay out of errors"
