"""Generating images end to end: API → Kafka → generator → Kafka → images-api read model, watched over SSE."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest

from writer_images.testing.stack import SERVICES, Api, Stack, use_local_provider

ARTICLE = (
    "<p>Intro</p><h2>Where to stay</h2><p>…</p><h2>What to eat</h2><p>…</p><h2>Getting around</h2><p>…</p>"
)


async def _create_content(api: Api, title: str) -> dict[str, Any]:
    await use_local_provider(api, in_article_slots=3)
    content = await api.call(
        "POST", "/v1/writer/contents/", json={"title": title, "html": ARTICLE, "status": "draft"}
    )
    return await _group(api, content["id"])


async def _group(api: Api, content_id: int) -> dict[str, Any]:
    page = await api.call("GET", "/v1/writer/images/content_images/", params={"page_size": 100})
    return next(g for g in page["results"] if g["content_id"] == content_id)


async def _sse_events(client: httpx.AsyncClient, path: str, sink: list[tuple[str, dict[str, Any]]]) -> None:
    async with client.stream("GET", path, timeout=60) as response:
        assert response.status_code == 200
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                sink.append((event, json.loads(line.split(":", 1)[1])))
                if event == "task_done":
                    return


async def test_generate_four_images_shows_live_progress_and_serves_the_results(
    stack: Stack, owner_api: Api
) -> None:
    group = await _create_content(owner_api, f"Ten days in Lisbon {uuid.uuid4().hex[:6]}")
    ids = [group["featured_image"]["id"], *[i["id"] for i in group["in_article_images"]]]
    assert len(ids) == 4, "one featured image and three in-article images, one per H2"

    started = await owner_api.call(
        "POST",
        "/v1/writer/images/generate_images/",
        json={"ids": ids, "content_id": group["content_id"]},
        expect=202,
    )
    events: list[tuple[str, dict[str, Any]]] = []
    await asyncio.wait_for(
        _sse_events(owner_api.client, f"/v1/tasks/{started['task_id']}/events", events), 60
    )

    done = {e[1]["image_id"] for e in events if e[0] == "image_done"}
    assert done == set(ids), "the stream reports every image finishing"
    assert events[-1][0] == "task_done"

    final = await _group(owner_api, group["content_id"])
    assert final["overall_status"] == "complete"
    images = [final["featured_image"], *final["in_article_images"]]
    assert [i["status"] for i in images] == ["generated"] * 4
    async with httpx.AsyncClient() as browser:  # image_url works in an <img> tag: no Authorization header
        for image in images:
            served = await browser.get(image["image_url"])
            assert served.status_code == 200
            assert served.headers["content-type"] == "image/jpeg"
            assert served.content[:3] == b"\xff\xd8\xff"

    logs = await owner_api.call(
        "GET", "/v1/writer/images/ai_logs/", params={"content_id": group["content_id"]}
    )
    assert len(logs["results"]) == 4
    assert {row["provider"] for row in logs["results"]} == {"local"}
    assert all(row["success"] and row["latency_ms"] >= 0 for row in logs["results"])


async def test_every_line_the_services_log_is_a_json_object_naming_its_service(
    stack: Stack, owner_api: Api
) -> None:
    """Our lines and the libraries' alike: a log pipeline reads one JSON object a line (FastStream wrote a
    coloured plain-text line as each consumer batch came and went)."""
    group = await _create_content(owner_api, f"Logged {uuid.uuid4().hex[:6]}")
    started = await owner_api.call(
        "POST",
        "/v1/writer/images/generate_images/",
        json={"ids": [group["featured_image"]["id"]], "content_id": group["content_id"]},
        expect=202,
    )

    async def finished() -> Any:
        task = await owner_api.call("GET", f"/v1/tasks/{started['task_id']}/")
        return task["state"] != "running"

    await owner_api.eventually(finished, timeout_s=60)  # batches handled by images-api and the generator
    for service in SERVICES:
        lines = (stack.log_dir / f"{service}.log").read_text().splitlines()
        assert lines, f"{service} logged nothing"
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"{service} logged a line that is not JSON: {line[:300]!r}")
            assert record["service"] == service and record["level"] and record["event"], line


@pytest.mark.slow
async def test_generator_killed_mid_task_still_generates_every_image_once(
    stack: Stack, owner_api: Api
) -> None:
    group = await _create_content(owner_api, f"Crash drill {uuid.uuid4().hex[:6]}")
    ids = [group["featured_image"]["id"], *[i["id"] for i in group["in_article_images"]]]
    stack.kill9("generator")
    started = await owner_api.call(
        "POST",
        "/v1/writer/images/generate_images/",
        json={"ids": ids, "content_id": group["content_id"]},
        expect=202,
    )
    stack.start("generator")

    async def finished() -> Any:
        task = await owner_api.call("GET", f"/v1/tasks/{started['task_id']}/")
        return task if task["state"] != "running" else None

    task = await owner_api.eventually(finished, timeout_s=60)
    assert task["state"] == "completed"
    logs = await owner_api.call(
        "GET", "/v1/writer/images/ai_logs/", params={"content_id": group["content_id"]}
    )
    assert sorted(row["image_id"] for row in logs["results"]) == sorted(ids), "one provider call per image"
