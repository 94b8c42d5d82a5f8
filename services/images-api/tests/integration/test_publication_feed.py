"""The publishing feed (a WebSocket): each change of the account's publications, pushed as it happens."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from images_api.adapters.notifier import publications_prefix
from images_api.adapters.security import Principal, issue_access_token
from images_api.entrypoints.http import live
from images_api.testing import Tenant, publish_failed_event, published_event
from writer_images import events
from writer_images.testing.kafka_tools import emitted, send_events
from writer_images.testing.waiting import eventually


@pytest.fixture
async def feed_url(served_app: str) -> str:
    return served_app.replace("http://", "ws://") + live.PUBLICATION_FEED_PATH


async def open_feed(feed_url: str, token: str) -> ClientConnection:
    """A feed signed in with `token`, past its `ready`."""
    websocket = await connect(feed_url)
    await websocket.send(orjson.dumps({"access_token": token}).decode())
    assert await next_message(websocket) == {"type": "ready"}
    return websocket


@pytest.fixture
async def tenant_feed(feed_url: str, tenant: Tenant) -> AsyncIterator[ClientConnection]:
    async with await open_feed(feed_url, tenant.access_token("viewer")) as websocket:
        yield websocket


async def next_message(websocket: ClientConnection, timeout_s: float = 10) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(await asyncio.wait_for(websocket.recv(), timeout_s))
    return message


async def closed_with(websocket: ClientConnection, timeout_s: float = 10) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(websocket.recv(), timeout_s)
    return (
        closed.value.rcvd.code if closed.value.rcvd else None,
        closed.value.rcvd.reason if closed.value.rcvd else None,
    )


async def request_publication(tenant: Tenant, title: str) -> int:
    site = await tenant.site()
    content = await tenant.ready_content(site["id"], title=title)
    response = await tenant.editor.post("/v1/publisher/publish/", json={"content_id": content["id"]})
    assert response.status_code == 202, response.text
    publication_id: int = response.json()["data"]["publication_id"]
    return publication_id


async def test_a_publication_is_pushed_when_requested_and_again_when_published(
    tenant: Tenant, tenant_feed: ClientConnection, kafka_bootstrap: str
) -> None:
    publication_id = await request_publication(tenant, "Pushed when published")

    requested = await next_message(tenant_feed)
    assert requested["type"] == "publication"
    assert requested["data"]["publication_id"] == publication_id
    assert (requested["data"]["title"], requested["data"]["status"]) == ("Pushed when published", "requested")

    [request] = await emitted(kafka_bootstrap, events.ContentPublishRequested, publication_id=publication_id)
    published = published_event(
        tenant.account_id, request, "41", external_url="https://blog.example.com/pushed/"
    )
    await send_events(kafka_bootstrap, [published])

    result = await next_message(tenant_feed)
    assert result["data"]["publication_id"] == publication_id
    assert (result["data"]["status"], result["data"]["external_url"], result["data"]["sync_status"]) == (
        "published",
        "https://blog.example.com/pushed/",
        "published",
    )


async def test_a_failed_publication_is_pushed_with_its_reason(
    tenant: Tenant, tenant_feed: ClientConnection, kafka_bootstrap: str
) -> None:
    publication_id = await request_publication(tenant, "Pushed when failed")
    assert (await next_message(tenant_feed))["data"]["status"] == "requested"
    [request] = await emitted(kafka_bootstrap, events.ContentPublishRequested, publication_id=publication_id)
    failed = publish_failed_event(tenant.account_id, request, "WordPress refused the credentials (401)")
    await send_events(kafka_bootstrap, [failed])

    result = await next_message(tenant_feed)
    assert (result["data"]["publication_id"], result["data"]["status"]) == (publication_id, "failed")
    assert result["data"]["reason"] == "WordPress refused the credentials (401)"
    assert result["data"]["latest"] is True


async def test_a_retry_is_pushed_as_the_contents_latest_publication(
    tenant: Tenant, tenant_feed: ClientConnection, kafka_bootstrap: str
) -> None:
    failed_id = await request_publication(tenant, "Retried")
    [request] = await emitted(kafka_bootstrap, events.ContentPublishRequested, publication_id=failed_id)
    await send_events(kafka_bootstrap, [publish_failed_event(tenant.account_id, request, "timeout")])
    assert [(await next_message(tenant_feed))["data"]["status"] for _ in range(2)] == ["requested", "failed"]

    retry = await tenant.editor.post("/v1/publisher/publish/", json={"content_id": request.content_id})
    assert retry.status_code == 202, retry.text

    pushed = await next_message(tenant_feed)
    assert (pushed["data"]["publication_id"], pushed["data"]["latest"]) == (
        retry.json()["data"]["publication_id"],
        True,
    )
    queue = (await tenant.viewer.get("/v1/publisher/publications/", params={"status": "failed"})).json()[
        "data"
    ]
    [superseded] = [p for p in queue["results"] if p["publication_id"] == failed_id]
    assert superseded["latest"] is False


async def test_a_batch_is_pushed_publication_by_publication(
    tenant: Tenant, tenant_feed: ClientConnection
) -> None:
    site = await tenant.site()
    contents = [await tenant.ready_content(site["id"], title=f"Batch {i}") for i in range(3)]
    response = await tenant.editor.post(
        "/v1/publisher/publish/batch/", json={"content_ids": [c["id"] for c in contents]}
    )
    assert response.status_code == 202, response.text
    requested = {r["publication_id"] for r in response.json()["data"]["results"]}

    pushed = [await next_message(tenant_feed) for _ in requested]

    assert {m["data"]["publication_id"] for m in pushed} == requested
    assert {m["data"]["status"] for m in pushed} == {"requested"}


async def test_another_accounts_publications_never_reach_the_feed(
    feed_url: str, tenant: Tenant, other_tenant: Tenant, tenant_feed: ClientConnection
) -> None:
    async with await open_feed(feed_url, other_tenant.access_token()) as other_feed:
        theirs = await request_publication(tenant, "Not for the other account")
        assert (await next_message(tenant_feed))["data"]["publication_id"] == theirs
        own = await request_publication(other_tenant, "The other account's own")

        first = await next_message(other_feed)

    assert first["data"]["publication_id"] == own, "the first change the other account hears of is its own"


@pytest.mark.parametrize(
    ("first_frame", "reason"),
    [
        ("not json", "Authentication token missing"),
        ('{"token": "x"}', "Authentication token missing"),
        ('["access_token"]', "Authentication token missing"),
        ('{"access_token": "not.a.jwt"}', "Authentication token invalid"),
    ],
)
async def test_a_feed_without_a_valid_token_is_closed_with_4401(
    feed_url: str, first_frame: str, reason: str
) -> None:
    async with connect(feed_url) as websocket:
        await websocket.send(first_frame)

        assert await closed_with(websocket) == (live.UNAUTHORIZED, reason)


async def test_an_expired_token_is_refused(app: FastAPI, feed_url: str, tenant: Tenant) -> None:
    expired = issue_access_token(
        Principal(user_id=1, account_id=tenant.account_id, role="viewer"),
        app.state.api.settings.jwt_secret,
        -1,
    )
    async with connect(feed_url) as websocket:
        await websocket.send(orjson.dumps({"access_token": expired}).decode())

        assert await closed_with(websocket) == (live.UNAUTHORIZED, "Authentication token expired")


async def test_a_feed_that_never_signs_in_is_closed(feed_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "AUTH_TIMEOUT_S", 0.3)
    async with connect(feed_url) as websocket:
        assert await closed_with(websocket, timeout_s=5) == (
            live.UNAUTHORIZED,
            "Authentication token missing",
        )


async def test_the_feed_closes_when_its_token_expires(app: FastAPI, feed_url: str, tenant: Tenant) -> None:
    short_lived = issue_access_token(
        Principal(user_id=1, account_id=tenant.account_id, role="viewer"),
        app.state.api.settings.jwt_secret,
        5,  # 4–5 s: time to sign in on a loaded machine
    )
    websocket = await open_feed(feed_url, short_lived)

    assert await closed_with(websocket, timeout_s=10) == (live.UNAUTHORIZED, "Authentication token expired")


async def test_a_feed_whose_notifications_may_have_been_lost_is_told_to_resync(
    app: FastAPI, tenant: Tenant, tenant_feed: ClientConnection
) -> None:
    # The API's listening connection dies (a database restart, a network cut): what was notified meanwhile
    # is gone, so the feed says so once the listener is back.
    async with app.state.resources.pool.acquire() as conn:
        killed = await conn.fetchval(
            """
            SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
            WHERE datname = current_database() AND query LIKE 'LISTEN%'
            """
        )
    assert killed >= 1

    assert await next_message(tenant_feed, timeout_s=10) == {"type": "resync"}
    publication_id = await request_publication(tenant, f"After the resync {uuid.uuid4().hex[:6]}")
    assert (await next_message(tenant_feed))["data"]["publication_id"] == publication_id


async def test_the_feed_follows_the_client_going_away(app: FastAPI, feed_url: str, tenant: Tenant) -> None:
    notifier = app.state.api.notifier
    prefix = publications_prefix(tenant.account_id)
    websocket = await open_feed(feed_url, tenant.access_token())
    assert notifier.feeds_under(prefix) == 1

    await websocket.close()

    async def open_feeds() -> int:
        return int(notifier.feeds_under(prefix))

    await eventually(open_feeds, lambda n: n == 0, what="the server letting go of the feed", timeout_s=5)
