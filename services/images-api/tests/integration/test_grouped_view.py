"""The seed's grouped view, server-side: the testing checklist (empty, 50+, search, filter, sort, pages)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import asyncpg
from fastapi import FastAPI

from images_api.testing import Tenant

URL = "/v1/writer/images/content_images/"


async def _seed_many(
    app: FastAPI, tenant: Tenant, n: int, site_id: int | None = None, sector_id: int | None = None
) -> None:
    for i in range(n):
        await tenant.content(
            title=f"Post {i:03d} {'alpha' if i % 5 == 0 else 'beta'}", site_id=site_id, sector_id=sector_id
        )


async def _set_status(app: FastAPI, content_id: int, statuses: list[str]) -> None:
    async with app.state.resources.pool.acquire() as conn:
        ids = await conn.fetch("SELECT id FROM images WHERE content_id = $1 ORDER BY position", content_id)
        for image, status in zip(ids, statuses, strict=False):
            await conn.execute("UPDATE images SET status = $2 WHERE id = $1", image["id"], status)


async def _page(tenant: Tenant, **params: Any) -> dict[str, Any]:
    response = await tenant.viewer.get(URL, params=params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_groups_have_the_seed_shape(tenant: Tenant) -> None:
    site = await tenant.site()
    content = await tenant.content(site_id=site["id"], html="<h2>One</h2><h2>Two</h2>")
    data = await _page(tenant)
    assert data["count"] == 1
    group = data["results"][0]
    assert set(group) == {
        "content_id",
        "content_title",
        "featured_image",
        "in_article_images",
        "overall_status",
        "status",
        "external_id",
        "external_url",
        "sync_status",
    }
    assert group["content_id"] == content["id"]
    assert group["featured_image"]["image_type"] == "featured"
    assert set(group["featured_image"]) == {
        "id",
        "image_type",
        "image_url",
        "image_path",
        "prompt",
        "status",
        "position",
        "created_at",
        "updated_at",
    }
    positions = [i["position"] for i in group["in_article_images"]]
    assert positions == sorted(positions) and len(positions) == 3  # default max_in_article_images
    assert "One" in group["in_article_images"][0]["prompt"]
    assert group["overall_status"] == "pending"


async def test_fifty_plus_items_search_filter_sort_and_pages(app: FastAPI, tenant: Tenant) -> None:
    await _seed_many(app, tenant, 55)
    everything = await _page(tenant, page_size=100)
    assert everything["count"] == 55
    titles = [g["content_title"] for g in everything["results"]]
    assert titles == sorted(titles, key=str.lower)

    # pages of 10: every item once
    seen = []
    for page in range(1, 7):
        data = await _page(tenant, page=page, page_size=10)
        seen += [g["content_id"] for g in data["results"]]
    assert len(seen) == 55 and len(set(seen)) == 55

    # keyset cursor: the same items, in the same order
    cursor_seen: list[int] = []
    params: dict[str, Any] = {"page_size": 10, "ordering": "-content_title"}
    while True:
        data = await _page(tenant, **params)
        cursor_seen += [g["content_id"] for g in data["results"]]
        if not data["next_cursor"]:
            break
        params["cursor"] = data["next_cursor"]
    assert cursor_seen == [g["content_id"] for g in reversed(everything["results"])]

    # search is case-insensitive on the title
    alpha = await _page(tenant, search="ALPHA", page_size=100)
    assert alpha["count"] == 11
    assert all("alpha" in g["content_title"] for g in alpha["results"])

    # filter and sort by overall status
    first, second = everything["results"][0]["content_id"], everything["results"][1]["content_id"]
    await _set_status(app, first, ["generated"] * 4)
    await _set_status(app, second, ["generated", "failed"])
    complete = await _page(tenant, overall_status="complete")
    assert [g["content_id"] for g in complete["results"]] == [first]
    failed = await _page(tenant, overall_status="failed")
    assert [g["content_id"] for g in failed["results"]] == [second]
    by_status = await _page(tenant, ordering="overall_status", page_size=100)
    statuses = [g["overall_status"] for g in by_status["results"]]
    assert statuses == sorted(statuses)
    by_image = await _page(tenant, image_status="failed", image_type="in_article")
    assert [g["content_id"] for g in by_image["results"]] == [second]


async def test_site_and_sector_scoping(tenant: Tenant) -> None:
    site_a, site_b = await tenant.site(name="A"), await tenant.site(name="B")
    sector = await tenant.sector(site_a["id"])
    await tenant.content(title="in A", site_id=site_a["id"], sector_id=sector["id"])
    await tenant.content(title="in A no sector", site_id=site_a["id"])
    await tenant.content(title="in B", site_id=site_b["id"])
    assert (await _page(tenant, site_id=site_a["id"]))["count"] == 2
    assert (await _page(tenant, site_id=site_b["id"]))["count"] == 1
    scoped = await _page(tenant, site_id=site_a["id"], sector_id=sector["id"])
    assert [g["content_title"] for g in scoped["results"]] == ["in A"]


async def test_a_page_is_a_fixed_number_of_queries(app: FastAPI, tenant: Tenant) -> None:
    await _seed_many(app, tenant, 30)
    counts = []
    statements: list[str] = []
    original = asyncpg.Connection._execute  # every fetch/fetchval goes through it

    me = asyncio.current_task()  # the app runs in this task under ASGITransport; background work does not

    async def counting(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        if asyncio.current_task() is me:
            statements.append(query)
        return await original(self, query, *args, **kwargs)

    for page_size in (5, 25):
        statements.clear()
        asyncpg.Connection._execute = counting  # type: ignore[method-assign]
        try:
            await _page(tenant, page_size=page_size)
        finally:
            asyncpg.Connection._execute = original  # type: ignore[method-assign]
        counts.append(len(statements))
    assert counts[0] == counts[1] <= 3


async def test_etag_gives_304_until_a_write(tenant: Tenant) -> None:
    content = await tenant.content()
    first = await tenant.viewer.get(URL)
    etag = first.headers["etag"]
    again = await tenant.viewer.get(URL, headers={"If-None-Match": etag})
    assert again.status_code == 304
    response = await tenant.editor.post(
        "/v1/writer/images/bulk_update/", json={"content_id": content["id"], "status": "generated"}
    )
    assert response.json()["data"]["updated_count"] == 4
    changed = await tenant.viewer.get(URL, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json()["data"]["results"][0]["overall_status"] == "complete"

    settings = await tenant.viewer.get("/v1/system/integrations/image_generation/")
    cached = await tenant.viewer.get(
        "/v1/system/integrations/image_generation/", headers={"If-None-Match": settings.headers["etag"]}
    )
    assert cached.status_code == 304
    put = await tenant.owner.put(
        "/v1/system/integrations/image_generation/",
        json={**settings.json()["data"]["config"], "image_format": "png"},
    )
    assert put.status_code == 200
    fresh = await tenant.viewer.get(
        "/v1/system/integrations/image_generation/", headers={"If-None-Match": settings.headers["etag"]}
    )
    assert fresh.status_code == 200 and fresh.json()["data"]["config"]["image_format"] == "png"


async def test_the_image_generation_settings_have_the_seed_shape(tenant: Tenant) -> None:
    """The seed answers `{success, config: {...}}`; in the envelope that is `data: {config: {...}}`, for the
    settings read and for what a write returns."""
    read = (await tenant.viewer.get("/v1/system/integrations/image_generation/")).json()
    assert read["success"] is True
    assert list(read["data"]) == ["config"]
    seed_fields = {
        "provider",
        "model",
        "image_type",
        "max_in_article_images",
        "image_format",
        "desktop_enabled",
        "mobile_enabled",
    }
    assert seed_fields <= set(read["data"]["config"])
    written = await tenant.owner.put(
        "/v1/system/integrations/image_generation/", json={**read["data"]["config"], "mobile_enabled": False}
    )
    assert written.json()["data"] == {"config": {**read["data"]["config"], "mobile_enabled": False}}


async def test_invalid_filters_are_422_per_field(tenant: Tenant) -> None:
    response = await tenant.viewer.get(URL, params={"overall_status": "bogus", "ordering": "title"})
    assert response.status_code == 422
    body = response.json()
    assert body["success"] is False
    assert set(body["errors"]) == {"overall_status", "ordering"}
    bad_cursor = await tenant.viewer.get(URL, params={"cursor": "nonsense"})
    assert bad_cursor.status_code == 422 and "cursor" in bad_cursor.json()["errors"]


def _cursor(ordering: str, value: object, last_id: object) -> str:
    return base64.urlsafe_b64encode(json.dumps([ordering, value, last_id]).encode()).decode().rstrip("=")


async def test_a_hand_made_cursor_postgres_could_not_take_is_422_on_the_cursor(tenant: Tenant) -> None:
    await tenant.content()
    forged = [
        ("content_title", "a\u0000", 1),  # Postgres text carries no NUL
        ("content_title", "a", 2**63),  # beyond bigint
        ("content_title", "a", 0),  # never a row id
        ("content_title", "a", True),
        ("updated_at", "0001-01-01T00:00:00+14:00", 1),  # before year 1 in UTC
        ("updated_at", "2020-01-01T00:00:00", 1),  # no offset: not one we handed out
    ]
    for ordering, value, last_id in forged:
        response = await tenant.viewer.get(
            URL, params={"ordering": ordering, "cursor": _cursor(ordering, value, last_id)}
        )
        assert response.status_code == 422, (value, last_id, response.text)
        assert list(response.json()["errors"]) == ["cursor"]
    genuine = _cursor("updated_at", "2020-01-01T00:00:00+14:00", 1)
    assert (
        await tenant.viewer.get(URL, params={"ordering": "updated_at", "cursor": genuine})
    ).status_code == 200


async def test_search_matches_letters_whatever_their_case_and_wildcards_literally(tenant: Tenant) -> None:
    for title in ("İstanbul guide", "100% Lisbon", "1000 Lisbon nights"):
        await tenant.content(title=title)

    async def found(search: str) -> list[str]:
        return [g["content_title"] for g in (await _page(tenant, search=search))["results"]]

    assert await found("İstanbul") == ["İstanbul guide"]
    assert await found("İSTANBUL GUİDE") == ["İstanbul guide"]
    assert await found("100%") == ["100% Lisbon"]
    assert await found("10_0") == []


async def test_cached_pages_stay_per_tenant_and_fresh_after_writes(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    await tenant.content(title="mine")
    for _ in range(2):  # the second request of each is a cache hit
        assert [g["content_title"] for g in (await _page(tenant))["results"]] == ["mine"]
        assert (await _page(other_tenant))["count"] == 0
    await other_tenant.content(title="theirs")
    assert [g["content_title"] for g in (await _page(other_tenant))["results"]] == ["theirs"]
    assert [g["content_title"] for g in (await _page(tenant))["results"]] == ["mine"]
    expired = await tenant.viewer.get(URL, headers={"Authorization": "Bearer not-a-token"})
    assert expired.status_code == 401
