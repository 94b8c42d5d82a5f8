from __future__ import annotations

import httpx

from images_api.testing import Tenant


async def test_a_new_tenant_sees_an_empty_page(tenant: Tenant) -> None:
    response = await tenant.viewer.get("/v1/writer/images/content_images/")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert body["data"]["count"] == 0
    assert body["data"]["results"] == []
    assert response.headers["x-request-id"] == body["request_id"]


async def test_health(anon: httpx.AsyncClient) -> None:
    assert (await anon.get("/healthz")).status_code == 200
