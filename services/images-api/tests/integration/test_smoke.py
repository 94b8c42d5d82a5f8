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


async def test_the_openapi_document_declares_the_malformed_body_400_and_text_without_nul(
    anon: httpx.AsyncClient,
) -> None:
    document = (await anon.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    no_nul = r"^[^\x00]*$"

    assert "400" in document["paths"]["/v1/writer/contents/"]["post"]["responses"]
    assert schemas["ContentIn"]["properties"]["title"]["pattern"] == no_nul
    assert schemas["SitePatch"]["properties"]["name"]["anyOf"][0]["pattern"] == no_nul
    assert "pattern" not in schemas["ContentIn"]["properties"]["status"]
