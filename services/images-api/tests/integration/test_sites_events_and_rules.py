"""site.changed on the broker with sealed secrets; the SQL overall_status agrees with the domain rule;
overdue publications are re-requested then failed."""

from __future__ import annotations

import itertools

import orjson
from fastapi import FastAPI

from images_api.domain import rules
from images_api.settings import ImagesApiSettings
from images_api.testing import Tenant
from writer_images import events, topics
from writer_images.secrets import SecretBox
from writer_images.testing.kafka_tools import collect


async def test_site_changes_emit_site_changed_with_sealed_secrets(
    tenant: Tenant, kafka_bootstrap: str, api_settings: ImagesApiSettings
) -> None:
    site = await tenant.site(application_password="app pass word")
    await tenant.owner.patch(f"/v1/sites/{site['id']}/", json={"application_password": "new pass"})
    await tenant.owner.delete(f"/v1/sites/{site['id']}/")
    records = await collect(
        kafka_bootstrap,
        [topics.SITE_CHANGED],
        keep=lambda r: orjson.loads(r.value)["payload"].get("site_key") == site["site_key"],
        until=lambda kept: len(kept) >= 3,
    )
    changes = [events.decode_envelope(r.value)[1] for r in records]
    assert all(isinstance(c, events.SiteChanged) for c in changes)
    created, updated, deleted = sorted(changes, key=lambda c: c.revision)  # type: ignore[attr-defined]
    box = SecretBox(api_settings.secrets_key)
    assert created.application_password_encrypted != "app pass word"
    assert box.open(created.application_password_encrypted) == "app pass word"
    assert box.open(updated.application_password_encrypted) == "new pass"
    assert box.open(created.webhook_secret_encrypted) == site["webhook_secret"]
    assert created.site_key == site["site_key"] and records[0].key == str(site["id"]).encode()
    assert (created.deleted, updated.deleted, deleted.deleted) == (False, False, True)


async def test_the_maintained_overall_status_follows_the_domain_rule(app: FastAPI, tenant: Tenant) -> None:
    await tenant.owner.put(
        "/v1/system/integrations/image_generation/",
        json={"provider": "local", "model": "local-v1", "max_in_article_images": 2},
    )
    content = await tenant.content()
    ids = [i["id"] for i in content["images"]]
    pool = app.state.resources.pool
    for combo in itertools.product(rules.IMAGE_STATUSES, repeat=3):
        async with pool.acquire() as conn:
            for image_id, status in zip(ids, combo, strict=True):
                await conn.execute("UPDATE images SET status = $2 WHERE id = $1", image_id, status)
            stored = await conn.fetchval("SELECT overall_status FROM contents WHERE id = $1", content["id"])
        assert stored == rules.overall_status(combo), combo


async def test_overdue_publications_are_rerequested_then_failed(app: FastAPI, tenant: Tenant) -> None:
    site = await tenant.site()
    content = await tenant.content(site_id=site["id"])
    requested = await tenant.editor.post(
        "/v1/publisher/publish/", json={"content_id": content["id"], "allow_missing_images": True}
    )
    publication_id = requested.json()["data"]["publication_id"]
    pool = app.state.resources.pool
    sweeper = app.state.resources.extras["sweeper"]
    for _ in range(3):
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE publications SET deadline_at = now() - interval '1 second' WHERE id = $1",
                publication_id,
            )
        await sweeper.sweep_once()
    publication = (await tenant.viewer.get(f"/v1/publisher/publications/{publication_id}/")).json()["data"]
    assert publication["status"] == "failed" and "timed out" in publication["reason"]


async def test_a_base_url_that_cannot_be_parsed_is_422_on_the_field(tenant: Tenant) -> None:
    site = await tenant.site()
    for url in (
        "http://[::1",
        "https://blog.example.com:99999",
        "https://blog..example.com",
        "http://my blog",
    ):
        body = {"name": "x", "base_url": url, "username": "u", "application_password": "p"}
        created = await tenant.owner.post("/v1/sites/", json=body)
        patched = await tenant.owner.patch(f"/v1/sites/{site['id']}/", json={"base_url": url})

        for response in (created, patched):
            assert response.status_code == 422, (url, response.text)
            assert list(response.json()["errors"]) == ["base_url"]
    assert len((await tenant.viewer.get("/v1/sites/")).json()["data"]) == 1
