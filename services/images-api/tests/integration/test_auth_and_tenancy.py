"""Auth (tokens, refresh rotation, rate limit), role rules, and tenant isolation on every endpoint."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
from fastapi import FastAPI

from images_api.settings import ImagesApiSettings
from images_api.testing import PASSWORD, Tenant, app_client, login


async def test_401_says_whether_the_token_is_missing_invalid_or_expired(
    app: FastAPI, tenant: Tenant, api_settings: ImagesApiSettings
) -> None:
    url = "/v1/writer/images/content_images/"
    expired = jwt.encode(
        {"sub": "1", "acc": tenant.account_id, "role": "owner", "typ": "access", "exp": int(time.time()) - 5},
        api_settings.jwt_secret,
        algorithm="HS256",
    )
    for token, word in ((None, "missing"), ("garbage", "invalid"), (expired, "expired")):
        async with app_client(app, token) as client:
            response = await client.get(url)
        assert response.status_code == 401
        assert word in response.json()["error"]
        assert response.json()["success"] is False


async def test_token_refresh_on_401_rotates_and_reuse_revokes_the_family(
    app: FastAPI, tenant: Tenant
) -> None:
    tokens = await login(app, tenant.owner_email)
    async with app_client(app) as client:
        rotated = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert rotated.status_code == 200
        new = rotated.json()["data"]
        assert new["refresh_token"] != tokens["refresh_token"]
        async with app_client(app, new["access_token"]) as authed:
            assert (await authed.get("/v1/writer/images/content_images/")).status_code == 200
        reuse = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert reuse.status_code == 401 and "reused" in reuse.json()["error"]
        # the family is revoked: the newer token is dead too
        assert (
            await client.post("/v1/auth/refresh", json={"refresh_token": new["refresh_token"]})
        ).status_code == 401


async def test_logout_revokes_the_refresh_token(app: FastAPI, tenant: Tenant) -> None:
    tokens = await login(app, tenant.owner_email)
    async with app_client(app) as client:
        assert (
            await client.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
        ).status_code == 200
        assert (
            await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        ).status_code == 401


async def test_failed_logins_are_rate_limited_with_retry_after(app: FastAPI, tenant: Tenant) -> None:
    email = f"viewer@{tenant.account}.test"
    async with app_client(app) as client:
        for _ in range(5):
            response = await client.post("/v1/auth/login", json={"email": email, "password": "wrong"})
            assert response.status_code == 401
        limited = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0


async def test_concurrent_failed_logins_get_no_more_password_checks_than_the_limit(
    app: FastAPI, tenant: Tenant, api_settings: ImagesApiSettings, password_checks: list[str]
) -> None:
    checked = password_checks
    # an address of its own: the failures must not count against the other tests' logins
    async with app_client(app, ip="198.51.100.7") as client:

        async def attempt(password: str) -> int:
            body = {"email": tenant.owner_email, "password": password}
            return (await client.post("/v1/auth/login", json=body)).status_code

        codes = await asyncio.gather(*(attempt("wrong") for _ in range(25)))
        then_right = await attempt(PASSWORD)

    limit = api_settings.login_max_failures_per_email
    assert sorted(codes) == [401] * limit + [429] * (25 - limit)
    assert len(checked) == limit
    assert then_right == 429


async def test_viewers_cannot_write_and_editors_cannot_manage_sites(tenant: Tenant) -> None:
    site = await tenant.site()
    content = await tenant.content(site_id=site["id"])
    writes: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/v1/writer/contents/", {"title": "x"}),
        ("PATCH", f"/v1/writer/contents/{content['id']}/", {"title": "y"}),
        ("DELETE", f"/v1/writer/contents/{content['id']}/", {}),
        ("PATCH", f"/v1/writer/images/{content['images'][0]['id']}/", {"prompt": "z"}),
        (
            "POST",
            "/v1/writer/images/generate_images/",
            {"ids": [content["images"][0]["id"]], "content_id": content["id"]},
        ),
        ("POST", "/v1/writer/images/bulk_update/", {"content_id": content["id"], "status": "failed"}),
        ("POST", "/v1/publisher/publish/", {"content_id": content["id"]}),
        ("POST", "/v1/publisher/publish/batch/", {"content_ids": [content["id"]]}),
        ("POST", "/v1/publisher/republish/", {"content_id": content["id"]}),
    ]
    owner_only: list[tuple[str, str, dict[str, Any]]] = [
        (
            "POST",
            "/v1/sites/",
            {"name": "n", "base_url": "https://x.example.com", "username": "u", "application_password": "p"},
        ),
        ("PATCH", f"/v1/sites/{site['id']}/", {"name": "n"}),
        ("DELETE", f"/v1/sites/{site['id']}/", {}),
        ("POST", f"/v1/sites/{site['id']}/sectors/", {"name": "s"}),
        ("PUT", "/v1/system/integrations/image_generation/", {"provider": "local", "model": "local-v1"}),
    ]
    for method, url, body in writes + owner_only:
        response = await tenant.viewer.request(method, url, json=body or None)
        assert response.status_code == 403, (method, url, response.text)
    for method, url, body in owner_only:
        response = await tenant.editor.request(method, url, json=body or None)
        assert response.status_code == 403, (method, url, response.text)


async def test_a_second_tenant_gets_404_for_every_id_of_the_first(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    site = await tenant.site()
    sector = await tenant.sector(site["id"])
    content = await tenant.content(site_id=site["id"], sector_id=sector["id"])
    image_id = content["images"][0]["id"]
    started = await tenant.editor.post(
        "/v1/writer/images/generate_images/", json={"ids": [image_id], "content_id": content["id"]}
    )
    task_id = started.json()["data"]["task_id"]
    await tenant.editor.post(
        "/v1/writer/images/bulk_update/", json={"content_id": content["id"], "status": "generated"}
    )
    publication = await tenant.editor.post(
        "/v1/publisher/publish/", json={"content_id": content["id"], "allow_missing_images": True}
    )
    publication_id = publication.json()["data"]["publication_id"]
    intruder = other_tenant.owner
    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/v1/sites/{site['id']}/", {}),
        ("PATCH", f"/v1/sites/{site['id']}/", {"name": "mine now"}),
        ("DELETE", f"/v1/sites/{site['id']}/", {}),
        ("GET", f"/v1/sites/{site['id']}/sectors/", {}),
        ("POST", f"/v1/sites/{site['id']}/sectors/", {"name": "x"}),
        ("GET", f"/v1/sectors/{sector['id']}/", {}),
        ("PATCH", f"/v1/sectors/{sector['id']}/", {"name": "x"}),
        ("DELETE", f"/v1/sectors/{sector['id']}/", {}),
        ("GET", f"/v1/writer/contents/{content['id']}/", {}),
        ("PATCH", f"/v1/writer/contents/{content['id']}/", {"title": "x"}),
        ("DELETE", f"/v1/writer/contents/{content['id']}/", {}),
        ("GET", f"/v1/writer/contents/{content['id']}/publications/", {}),
        ("POST", f"/v1/writer/contents/{content['id']}/images/", {"prompt": "x"}),
        ("GET", f"/v1/writer/images/{image_id}/", {}),
        ("PATCH", f"/v1/writer/images/{image_id}/", {"prompt": "x"}),
        ("DELETE", f"/v1/writer/images/{image_id}/", {}),
        ("POST", f"/v1/writer/images/{image_id}/regenerate/", {}),
        ("POST", "/v1/writer/images/generate_images/", {"ids": [image_id], "content_id": content["id"]}),
        ("POST", "/v1/writer/images/bulk_update/", {"content_id": content["id"], "status": "failed"}),
        ("GET", f"/v1/tasks/{task_id}/", {}),
        ("GET", f"/v1/tasks/{task_id}/events", {}),
        ("POST", "/v1/publisher/publish/", {"content_id": content["id"]}),
        ("POST", "/v1/publisher/republish/", {"content_id": content["id"]}),
        ("GET", f"/v1/publisher/publications/{publication_id}/", {}),
        ("POST", "/v1/writer/contents/", {"title": "x", "site_id": site["id"]}),
        ("POST", "/v1/writer/contents/", {"title": "x", "sector_id": sector["id"]}),
    ]
    for method, url, body in attempts:
        response = await intruder.request(method, url, json=body or None)
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["success"] is False
    scoped = await intruder.get("/v1/writer/images/content_images/", params={"site_id": site["id"]})
    assert scoped.json()["data"]["count"] == 0
    logs = await intruder.get("/v1/writer/images/ai_logs/", params={"content_id": content["id"]})
    assert logs.json()["data"]["count"] == 0


async def test_sites_never_return_credentials_and_validate_urls(app: FastAPI, tenant: Tenant) -> None:
    site = await tenant.site(application_password="super secret pass")
    assert "webhook_secret" in site  # shown once, at creation
    listed = (await tenant.owner.get("/v1/sites/")).json()["data"]
    assert "super secret pass" not in str(listed) and "webhook_secret" not in listed[0]
    bad = await tenant.owner.post(
        "/v1/sites/",
        json={"name": "x", "base_url": "ftp://x.example.com", "username": "u", "application_password": "p"},
    )
    assert bad.status_code == 422 and "base_url" in bad.json()["errors"]


async def test_unknown_model_for_provider_is_422_on_the_field(tenant: Tenant) -> None:
    response = await tenant.owner.put(
        "/v1/system/integrations/image_generation/", json={"provider": "local", "model": "dall-e-3"}
    )
    assert response.status_code == 422 and "model" in response.json()["errors"]
    response = await tenant.owner.put(
        "/v1/system/integrations/image_generation/", json={"provider": "stability"}
    )
    assert response.status_code == 422 and "provider" in response.json()["errors"]
    ok = await tenant.owner.put(
        "/v1/system/integrations/image_generation/",
        json={"provider": "openai", "model": "dall-e-3", "max_in_article_images": 2},
    )
    assert ok.status_code == 200
    content = await tenant.content()
    assert len(content["images"]) == 3  # featured + 2 in-article from the new setting


async def test_big_bodies_are_413_in_the_envelope(tenant: Tenant, api_settings: ImagesApiSettings) -> None:
    response = await tenant.editor.post(
        "/v1/writer/contents/",
        content=b"x" * (api_settings.max_request_bytes + 1),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413 and response.json()["success"] is False
    assert response.headers["x-request-id"]
