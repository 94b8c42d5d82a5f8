"""Generate flow through the real broker: requests emitted via the outbox, results projected back."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from fastapi import FastAPI

from images_api.testing import Tenant, app_client, generated_event
from writer_images import events
from writer_images.events import make_event, utcnow
from writer_images.testing.kafka_tools import emitted, send_events
from writer_images.testing.waiting import eventually


async def _wait_task(client: httpx.AsyncClient, task_id: str, state: str = "completed") -> dict[str, Any]:
    async def task() -> dict[str, Any]:
        data: dict[str, Any] = (await client.get(f"/v1/tasks/{task_id}/")).json()["data"]
        return data

    return await eventually(task, lambda data: data["state"] == state, what=f"the task {state}", timeout_s=10)


async def test_generate_emits_requests_and_projects_results(
    app: FastAPI, tenant: Tenant, kafka_bootstrap: str
) -> None:
    content = await tenant.content()
    ids = [i["id"] for i in content["images"][:2]]
    response = await tenant.editor.post(
        "/v1/writer/images/generate_images/", json={"ids": ids, "content_id": content["id"]}
    )
    assert response.status_code == 202, response.text
    started = response.json()["data"]
    assert started["images_created"] == 2
    task_id = started["task_id"]

    requests = await emitted(kafka_bootstrap, events.ImageGenerationRequested, count=2, task_id=task_id)
    assert sorted(r.image_id for r in requests) == sorted(ids)
    first = requests[0]
    assert first.provider == "local" and first.model == "local-v1"
    assert {r.name for r in first.renditions} == {"desktop", "mobile"}
    assert first.deadline_at > utcnow()

    again = await tenant.editor.post(
        "/v1/writer/images/generate_images/", json={"ids": ids[:1], "content_id": content["id"]}
    )
    assert again.status_code == 409

    rendition = await tenant.stored_rendition()
    account = tenant.account_id
    by_image = {r.image_id: r for r in requests}
    ok_req, bad_req = by_image[ids[0]], by_image[ids[1]]
    await send_events(
        kafka_bootstrap,
        [
            _progress(account, ok_req, "generating", 40),
            generated_event(account, ok_req, rendition),
            make_event(
                events.ImageGenerationFailed(
                    task_id=uuid.UUID(task_id),
                    image_id=bad_req.image_id,
                    content_id=content["id"],
                    revision=bad_req.revision,
                    reason="content policy",
                    retryable=False,
                    attempts=1,
                ),
                account_id=account,
                correlation_id="t",
            ),
            make_event(
                events.AiFunctionCalled(
                    call_id=uuid.uuid4(),
                    task_id=uuid.UUID(task_id),
                    image_id=ok_req.image_id,
                    content_id=content["id"],
                    provider="local",
                    model="local-v1",
                    prompt="p",
                    size="1024x576",
                    latency_ms=12,
                    images=1,
                    estimated_cost_usd=0.0,
                    success=True,
                    called_at=utcnow(),
                ),
                account_id=account,
                correlation_id="t",
            ),
        ],
    )
    task = await _wait_task(tenant.viewer, task_id, "completed")
    states = {i["image_id"]: i["state"] for i in task["items"]}
    assert states == {ok_req.image_id: "generated", bad_req.image_id: "failed"}

    page = (await tenant.viewer.get("/v1/writer/images/content_images/")).json()["data"]
    group = page["results"][0]
    assert group["overall_status"] == "failed"
    featured = group["featured_image"]
    assert featured["status"] == "generated" and featured["image_path"] == rendition.blob_key
    async with app_client(app) as anon:
        picture = await anon.get(featured["image_url"])
        assert picture.status_code == 200
        assert picture.headers["content-type"] == "image/jpeg"
        assert "max-age" in picture.headers["cache-control"]
        tampered = await anon.get(featured["image_url"].replace(f"acc={account}", f"acc={account + 1}"))
        assert tampered.status_code == 403

    for _ in range(100):
        logs = (await tenant.viewer.get("/v1/writer/images/ai_logs/", params={"task_id": task_id})).json()[
            "data"
        ]
        if logs["count"]:
            break
        await asyncio.sleep(0.05)
    assert logs["count"] == 1 and logs["results"][0]["success"] is True

    # a result for an older revision is ignored: editing the prompt bumps the revision
    await tenant.editor.patch(f"/v1/writer/images/{bad_req.image_id}/", json={"prompt": "A brand new prompt"})
    await send_events(
        kafka_bootstrap,
        [generated_event(account, bad_req, rendition)],
    )
    await asyncio.sleep(0.5)
    image = (await tenant.viewer.get(f"/v1/writer/images/{bad_req.image_id}/")).json()["data"]
    assert image["status"] == "pending" and image["revision"] == bad_req.revision + 1
    assert image["alt_text"] == "A brand new prompt"


async def test_a_media_signature_that_is_not_hex_is_422_on_the_field(anon: httpx.AsyncClient) -> None:
    # Signatures are hex digests; anything else (here non-ASCII) cannot be compared with one.
    exp = int(time.time()) + 3600
    for sig in ("\u00ff", "\u00e9" * 32):
        response = await anon.get("/v1/media/ab/cd/picture.jpg", params={"acc": 1, "exp": exp, "sig": sig})
        assert response.status_code == 422, (sig, response.text)
        assert list(response.json()["errors"]) == ["sig"]


async def test_generate_refuses_foreign_ids_with_404(tenant: Tenant, other_tenant: Tenant) -> None:
    mine, theirs = await tenant.content(), await other_tenant.content()
    response = await tenant.editor.post(
        "/v1/writer/images/generate_images/",
        json={"ids": [theirs["images"][0]["id"]], "content_id": mine["id"]},
    )
    assert response.status_code == 404
    response = await tenant.editor.post(
        "/v1/writer/images/generate_images/",
        json={"ids": [theirs["images"][0]["id"]], "content_id": theirs["id"]},
    )
    assert response.status_code == 404


async def test_generate_without_a_content_id_takes_the_images_own_content(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    first, second, theirs = await tenant.content(), await tenant.content(), await other_tenant.content()
    ids = [i["id"] for i in first["images"][:2]]

    started = await tenant.editor.post("/v1/writer/images/generate_images/", json={"ids": ids})
    mixed = await tenant.editor.post(
        "/v1/writer/images/generate_images/", json={"ids": [ids[0], second["images"][0]["id"]]}
    )
    foreign = await tenant.editor.post(
        "/v1/writer/images/generate_images/", json={"ids": [theirs["images"][0]["id"]]}
    )

    assert started.status_code == 202, started.text
    task = (await tenant.viewer.get(f"/v1/tasks/{started.json()['data']['task_id']}/")).json()["data"]
    assert sorted(item["image_id"] for item in task["items"]) == sorted(ids)
    assert task["content_id"] == first["id"]
    assert mixed.status_code == 422 and "several contents" in mixed.json()["errors"]["ids"][0]
    assert foreign.status_code == 404


async def test_task_events_stream_replays_the_state_on_connect(tenant: Tenant) -> None:
    content = await tenant.content()
    started = await tenant.editor.post(
        "/v1/writer/images/generate_images/",
        json={"ids": [content["images"][0]["id"]], "content_id": content["id"]},
    )
    task_id = started.json()["data"]["task_id"]
    await tenant.editor.post(
        "/v1/writer/images/bulk_update/", json={"content_id": content["id"], "status": "failed"}
    )
    async with tenant.viewer.stream("GET", f"/v1/tasks/{task_id}/events") as response:
        assert response.status_code == 200
        text = ""
        async for chunk in response.aiter_text():
            text += chunk
            if "event: task_done" in text:
                break
    assert "event: snapshot" in text and "event: image_done" in text


async def test_sweeper_rerequests_then_fails_overdue_items(app: FastAPI, tenant: Tenant) -> None:
    content = await tenant.content()
    image_id = content["images"][0]["id"]
    started = await tenant.editor.post(
        "/v1/writer/images/generate_images/", json={"ids": [image_id], "content_id": content["id"]}
    )
    task_id = started.json()["data"]["task_id"]
    sweeper = app.state.resources.extras["sweeper"]
    pool = app.state.resources.pool
    for _ in range(4):
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE task_items SET deadline_at = now() - interval '1 second' WHERE task_id = $1",
                uuid.UUID(task_id),
            )
        await sweeper.sweep_once()
    task = await _wait_task(tenant.viewer, task_id, "failed")
    assert task["items"][0]["attempts"] == 3
    assert "timed out" in task["items"][0]["error"]
    image = (await tenant.viewer.get(f"/v1/writer/images/{image_id}/")).json()["data"]
    assert image["status"] == "failed"


async def _requested(tenant: Tenant, kafka_bootstrap: str) -> tuple[str, events.ImageGenerationRequested]:
    content = await tenant.content()
    return await _request(tenant, kafka_bootstrap, content["id"], content["images"][0]["id"])


async def _request(
    tenant: Tenant, kafka_bootstrap: str, content_id: int, image_id: int
) -> tuple[str, events.ImageGenerationRequested]:
    """Generate one image through the API; its task id and the request event images-api emitted."""
    started = await tenant.editor.post(
        "/v1/writer/images/generate_images/", json={"ids": [image_id], "content_id": content_id}
    )
    assert started.status_code == 202, started.text
    task_id = started.json()["data"]["task_id"]
    [request] = await emitted(kafka_bootstrap, events.ImageGenerationRequested, task_id=task_id)
    return task_id, request


def _progress(
    account_id: int, request: events.ImageGenerationRequested, stage: str, percent: int
) -> events.OutgoingEvent:
    payload = events.ImageGenerationProgress(
        task_id=request.task_id,
        image_id=request.image_id,
        content_id=request.content_id,
        revision=request.revision,
        stage=stage,
        percent=percent,
    )
    return make_event(payload, account_id=account_id, correlation_id="t")


async def _item(tenant: Tenant, task_id: str) -> dict[str, Any]:
    task = (await tenant.editor.get(f"/v1/tasks/{task_id}/")).json()["data"]
    return dict(task["items"][0])


async def test_queued_progress_keeps_the_item_queued_until_generation_starts(
    tenant: Tenant, kafka_bootstrap: str
) -> None:
    task_id, request = await _requested(tenant, kafka_bootstrap)

    await send_events(kafka_bootstrap, [_progress(tenant.account_id, request, "queued", 0)])
    for _ in range(100):
        if (await _item(tenant, task_id))["stage"] == "queued":
            break
        await asyncio.sleep(0.05)
    assert (await _item(tenant, task_id))["state"] == "queued"

    await send_events(kafka_bootstrap, [_progress(tenant.account_id, request, "generating", 10)])
    for _ in range(100):
        if (await _item(tenant, task_id))["state"] == "generating":
            break
        await asyncio.sleep(0.05)
    assert (await _item(tenant, task_id))["state"] == "generating"


async def test_progress_that_arrives_late_in_one_batch_never_moves_an_item_back(
    tenant: Tenant, kafka_bootstrap: str
) -> None:
    task_id, request = await _requested(tenant, kafka_bootstrap)
    late = [
        _progress(tenant.account_id, request, "generating", 10),
        _progress(tenant.account_id, request, "queued", 0),  # the generator's first notice, redelivered late
    ]
    await send_events(kafka_bootstrap, late)
    for _ in range(100):
        if (await _item(tenant, task_id))["state"] == "generating":
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    item = await _item(tenant, task_id)
    assert (item["state"], item["stage"], item["percent"]) == ("generating", "generating", 10)
    image = (await tenant.viewer.get(f"/v1/writer/images/{request.image_id}/")).json()["data"]
    assert image["status"] == "generating"


async def test_requesting_an_image_again_asks_for_a_new_revision_with_the_accounts_settings(
    tenant: Tenant, kafka_bootstrap: str
) -> None:
    await tenant.owner.put(
        "/v1/system/integrations/image_generation/",
        json={"provider": "local", "model": "local-v1", "image_format": "webp", "mobile_enabled": False},
    )
    content = await tenant.content()
    image_id = content["images"][0]["id"]

    _, first = await _request(tenant, kafka_bootstrap, content["id"], image_id)
    await tenant.editor.post(
        "/v1/writer/images/bulk_update/", json={"content_id": content["id"], "status": "failed"}
    )
    _, second = await _request(tenant, kafka_bootstrap, content["id"], image_id)
    image = (await tenant.viewer.get(f"/v1/writer/images/{image_id}/")).json()["data"]

    assert (first.revision, second.revision, image["revision"]) == (1, 2, 2)
    assert (second.image_format, [r.name for r in second.renditions]) == ("webp", ["desktop"])
