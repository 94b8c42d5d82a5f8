"""Test helpers for images-api and cross-service tests: tenants with one client per role."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from images_api.service.auth import create_user
from images_api.service.demo import render_demo_image
from writer_images import events
from writer_images.infra.ports import free_port

PASSWORD = "correct horse battery staple"  # noqa: S105 - test fixture


@dataclass
class Tenant:
    account: str
    account_id: int
    owner: httpx.AsyncClient
    editor: httpx.AsyncClient
    viewer: httpx.AsyncClient
    owner_email: str
    app: FastAPI

    def access_token(self, role: str = "viewer") -> str:
        client = {"owner": self.owner, "editor": self.editor, "viewer": self.viewer}[role]
        return client.headers["Authorization"].removeprefix("Bearer ")

    async def site(self, **overrides: Any) -> dict[str, Any]:
        body = {
            "name": "Blog",
            "base_url": "https://blog.example.com",
            "username": "editor",
            "application_password": "abcd efgh ijkl mnop",
            **overrides,
        }
        response = await self.owner.post("/v1/sites/", json=body)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    async def sector(self, site_id: int, name: str = "Guides") -> dict[str, Any]:
        response = await self.owner.post(f"/v1/sites/{site_id}/sectors/", json={"name": name})
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    async def content(self, **overrides: Any) -> dict[str, Any]:
        body = {
            "title": "A day in Lisbon",
            "html": "<h2>Trams</h2><h2>Food</h2>",
            "status": "published",
            **overrides,
        }
        response = await self.editor.post("/v1/writer/contents/", json=body)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    async def group(self, content_id: int) -> dict[str, Any]:
        """The content's group in the grouped view, as the page shows it."""
        response = await self.viewer.get("/v1/writer/images/content_images/", params={"page_size": 100})
        page: dict[str, Any] = response.json()["data"]
        return next(g for g in page["results"] if g["content_id"] == content_id)

    async def stored_rendition(self) -> events.Rendition:
        """A demo image in the blob store, described as the generator describes a rendition it stored."""
        blob = await self.app.state.resources.blobs.put(render_demo_image(1), extension="jpg")
        return events.Rendition(
            name="original",
            blob_key=blob.key,
            width=640,
            height=360,
            format="jpg",
            content_type="image/jpeg",
            bytes=blob.size,
            sha256=blob.sha256,
        )

    async def ready_content(self, site_id: int, **overrides: Any) -> dict[str, Any]:
        """A content on `site_id` whose images are all generated, with blobs, as the generator leaves them:
        the seed's rule lets it be published."""
        content = await self.content(site_id=site_id, **overrides)
        async with self.app.state.resources.pool.acquire() as conn:
            await conn.execute(
                """UPDATE images SET status = 'generated', sha256 = repeat('a', 64), content_type = 'image/jpeg',
                       blob_key = 'ab/cd/' || repeat('a', 60) || id || '.jpg' WHERE content_id = $1""",
                content["id"],
            )
        return content


def app_client(app: FastAPI, token: str | None = None, *, ip: str | None = None) -> httpx.AsyncClient:
    """A client that calls the app in this process (ASGI): as the holder of `token` if given, and from `ip`
    if given (the login limit counts per address)."""
    transport = (
        httpx.ASGITransport(app=app) if ip is None else httpx.ASGITransport(app=app, client=(ip, 40000))
    )
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers)


class _QuietServer(uvicorn.Server):
    """Leaves SIGINT and SIGTERM to the test session (uvicorn's own handlers would stop only this server)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app (its lifespan already entered) served by uvicorn in this event loop, for what an ASGI
    client cannot carry (WebSockets); yields its base URL."""
    server = _QuietServer(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), lifespan="off", log_config=None)
    )
    serving = asyncio.ensure_future(server.serve())
    while not server.started:
        if serving.done():
            serving.result()  # raises what stopped it
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        await serving


async def login(app: FastAPI, email: str, password: str = PASSWORD) -> dict[str, Any]:
    async with app_client(app) as client:
        response = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def make_tenant(app: FastAPI) -> AsyncIterator[Tenant]:
    account = f"acct-{uuid.uuid4().hex[:8]}"
    pool = app.state.resources.pool
    clients = {}
    async with pool.acquire() as conn:
        for role in ("owner", "editor", "viewer"):
            await create_user(conn, account, f"{role}@{account}.test", PASSWORD, role)
        account_id = await conn.fetchval("SELECT id FROM accounts WHERE name = $1", account)
    for role in ("owner", "editor", "viewer"):
        tokens = await login(app, f"{role}@{account}.test")
        clients[role] = app_client(app, tokens["access_token"])
    tenant = Tenant(
        account,
        account_id,
        clients["owner"],
        clients["editor"],
        clients["viewer"],
        f"owner@{account}.test",
        app,
    )
    yield tenant
    for client in clients.values():
        await client.aclose()


def generated_event(
    account_id: int, request: events.ImageGenerationRequested, rendition: events.Rendition
) -> events.OutgoingEvent:
    """`image.generated` for `request`, as the generator sends it (a new event id each call)."""
    payload = events.ImageGenerated(
        task_id=request.task_id,
        image_id=request.image_id,
        content_id=request.content_id,
        revision=request.revision,
        provider="local",
        model="local-v1",
        renditions=[rendition],
    )
    return events.make_event(payload, account_id=account_id, correlation_id="t")


def published_event(
    account_id: int,
    request: events.ContentPublishRequested,
    post_id: str,
    *,
    modified_gmt: datetime | None = None,
    external_url: str | None = None,
) -> events.OutgoingEvent:
    """`content.published` for `request`, as the publisher sends it once WordPress holds post `post_id`."""
    published = events.ContentPublished(
        publication_id=request.publication_id,
        attempt_id=request.attempt_id,
        content_id=request.content_id,
        site_id=request.site_id,
        external_id=post_id,
        external_url=external_url or f"https://blog.example.com/?p={post_id}",
        wp_status="publish",
        sync_status="published",
        featured_media_id=None,
        media_ids={},
        modified_gmt=modified_gmt,
    )
    return events.make_event(published, account_id=account_id, correlation_id="t")


def publish_failed_event(
    account_id: int, request: events.ContentPublishRequested, reason: str, *, code: str = "auth"
) -> events.OutgoingEvent:
    """`content.publish.failed` for `request`, as the publisher sends it after its last attempt."""
    failed = events.ContentPublishFailed(
        publication_id=request.publication_id,
        attempt_id=request.attempt_id,
        content_id=request.content_id,
        site_id=request.site_id,
        reason=reason,
        code=code,
        retryable=False,
        attempts=1,
    )
    return events.make_event(failed, account_id=account_id, correlation_id="t")
