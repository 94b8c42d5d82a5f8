"""Publishing to a real WordPress and seeing WordPress-side changes come back, through every service."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from writer_images.infra.ports import free_port
from writer_images.testing.stack import Api, Stack, configure_bridge

pytestmark = [pytest.mark.slow, pytest.mark.wordpress]

ARTICLE = "<p>Intro</p><h2>Morning</h2><p>Coffee.</p><h2>Evening</h2><p>Wine.</p>"


def publishable(group: dict[str, Any]) -> bool:
    """The seed's rule, as the page evaluates it."""
    return (
        group["status"] == "published"
        and (not group["external_id"] or not group["external_url"])
        and group["sync_status"] != "published"
    )


async def _group(api: Api, content_id: int) -> dict[str, Any]:
    page = await api.call("GET", "/v1/writer/images/content_images/", params={"page_size": 100})
    return next(g for g in page["results"] if g["content_id"] == content_id)


@pytest.fixture(scope="module")
async def connected_site(stack: Stack, owner_api: Api, wordpress_with_bridge: Any) -> dict[str, Any]:
    wp = wordpress_with_bridge
    site = await owner_api.call(
        "POST",
        "/v1/sites/",
        expect=201,
        json={
            "name": "E2E blog",
            "base_url": wp.base_url,
            "username": wp.admin_user,
            "application_password": wp.app_password,
        },
    )
    configure_bridge(
        wp.root_dir / "wp-config.php",
        webhook_url=f"{stack.url('sync')}/v1/sync/wordpress/webhook",
        secret=site["webhook_secret"],
        site_key=site["site_key"],
    )
    return {"site": site, "wp": wp}


async def _published_content(api: Api, site_id: int) -> dict[str, Any]:
    content = await api.call(
        "POST",
        "/v1/writer/contents/",
        expect=201,
        json={
            "title": f"Lisbon {uuid.uuid4().hex[:6]}",
            "html": ARTICLE,
            "status": "published",
            "site_id": site_id,
        },
    )
    group = await _group(api, content["id"])
    ids = [group["featured_image"]["id"], *[i["id"] for i in group["in_article_images"]]]
    task = await api.call(
        "POST",
        "/v1/writer/images/generate_images/",
        expect=202,
        json={"ids": ids, "content_id": content["id"]},
    )

    async def generated() -> Any:
        state = await api.call("GET", f"/v1/tasks/{task['task_id']}/")
        return state["state"] == "completed"

    await api.eventually(generated, timeout_s=60)
    return await _group(api, content["id"])


async def _wp_post(wp: Any, post_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(auth=wp.admin_auth, timeout=30) as client:
        response = await client.get(f"{wp.rest_url}/wp/v2/posts/{post_id}", params={"context": "edit"})
        response.raise_for_status()
        return dict(response.json())


async def _as_editor(wp: Any, method: str, path: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(auth=wp.editor_auth, timeout=30) as client:
        return await client.request(method, f"{wp.rest_url}{path}", **kw)


async def _wait_for_sync_status(
    api: Api, content_id: int, wanted: str, timeout_s: float
) -> tuple[dict[str, Any], float]:
    started = time.monotonic()

    async def probe() -> Any:
        group = await _group(api, content_id)
        return group if group["sync_status"] == wanted else None

    group = await api.eventually(probe, timeout_s=timeout_s, interval_s=0.05)
    return group, time.monotonic() - started


async def test_publish_creates_one_post_and_wordpress_changes_come_back(
    owner_api: Api, connected_site: dict[str, Any]
) -> None:
    wp = connected_site["wp"]
    group = await _published_content(owner_api, connected_site["site"]["id"])
    assert publishable(group)

    result = await owner_api.call(
        "POST",
        "/v1/publisher/publish/",
        params={"wait": "true"},
        json={"content_id": group["content_id"], "destinations": ["wordpress"]},
    )
    assert result["sync_status"] == "published"
    post = await _wp_post(wp, result["external_id"])
    assert post["status"] == "publish"
    assert post["link"] == result["external_url"]
    assert post["featured_media"] > 0
    in_article = len(group["in_article_images"])
    assert in_article >= 2
    assert post["content"]["raw"].count("<figure") == in_article, "every in-article image placed in the body"
    after = await _group(owner_api, group["content_id"])
    assert not publishable(after), "the seed's button disappears once the post is live"
    again = await owner_api.client.post(
        "/v1/publisher/publish/", json={"content_id": group["content_id"], "destinations": ["wordpress"]}
    )
    assert again.status_code == 409

    # An editor unpublishes in WordPress: the webhook brings it back within 2 s and the button returns.
    moved = await _as_editor(wp, "POST", f"/wp/v2/posts/{result['external_id']}", json={"status": "draft"})
    assert moved.status_code == 200
    drafted, seconds = await _wait_for_sync_status(owner_api, group["content_id"], "draft", timeout_s=10)
    assert seconds < 2.0
    assert publishable(drafted)

    # The editor publishes it again and retitles it at once (often within the second, which WordPress's
    # modification time cannot tell apart): the grouped view shows the new title, as plain text.
    await _as_editor(wp, "POST", f"/wp/v2/posts/{result['external_id']}", json={"status": "publish"})
    await _wait_for_sync_status(owner_api, group["content_id"], "published", timeout_s=10)
    retitled = await _as_editor(
        wp, "POST", f"/wp/v2/posts/{result['external_id']}", json={"title": "Lisbon & the sea"}
    )
    assert retitled.status_code == 200

    async def shows_the_new_title() -> Any:
        return (await _group(owner_api, group["content_id"]))["content_title"] == "Lisbon & the sea"

    await owner_api.eventually(shows_the_new_title, timeout_s=10, interval_s=0.05)

    # Trash, then force delete: both read as removed.
    trashed = await _as_editor(wp, "DELETE", f"/wp/v2/posts/{result['external_id']}")
    assert trashed.status_code == 200
    removed, _ = await _wait_for_sync_status(owner_api, group["content_id"], "removed", timeout_s=10)
    assert removed["external_url"] in (None, "")
    assert publishable(removed)


async def test_force_delete_reads_as_removed(owner_api: Api, connected_site: dict[str, Any]) -> None:
    wp = connected_site["wp"]
    group = await _published_content(owner_api, connected_site["site"]["id"])
    result = await owner_api.call(
        "POST",
        "/v1/publisher/publish/",
        params={"wait": "true"},
        json={"content_id": group["content_id"], "destinations": ["wordpress"]},
    )
    deleted = await _as_editor(
        wp, "DELETE", f"/wp/v2/posts/{result['external_id']}", params={"force": "true"}
    )
    assert deleted.status_code == 200
    await _wait_for_sync_status(owner_api, group["content_id"], "removed", timeout_s=10)


async def test_reconciler_catches_changes_the_webhooks_missed(
    stack: Stack, owner_api: Api, connected_site: dict[str, Any]
) -> None:
    wp, site = connected_site["wp"], connected_site["site"]
    group = await _published_content(owner_api, site["id"])
    result = await owner_api.call(
        "POST",
        "/v1/publisher/publish/",
        params={"wait": "true"},
        json={"content_id": group["content_id"], "destinations": ["wordpress"]},
    )
    wp_config = wp.root_dir / "wp-config.php"
    dead_end = f"http://127.0.0.1:{free_port()}/nowhere"
    configure_bridge(wp_config, webhook_url=dead_end, secret="unused", site_key=site["site_key"])
    stack.processes["sync"].stop()
    try:
        moved = await _as_editor(
            wp, "POST", f"/wp/v2/posts/{result['external_id']}", json={"status": "pending"}
        )
        assert moved.status_code == 200
    finally:
        stack.start("sync")
    await _wait_for_sync_status(owner_api, group["content_id"], "pending", timeout_s=30)
