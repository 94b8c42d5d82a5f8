"""Publishing: the seed's rule server-side, single/batch with partial failure, results projected back."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI

from images_api.testing import Tenant, published_event
from writer_images import events
from writer_images.events import make_event, utcnow
from writer_images.testing.kafka_tools import emitted, send_events
from writer_images.testing.waiting import eventually


async def test_publish_requests_the_publisher_and_projects_the_result(
    app: FastAPI, tenant: Tenant, kafka_bootstrap: str
) -> None:
    site = await tenant.site()
    content = await tenant.ready_content(site["id"])
    response = await tenant.editor.post(
        "/v1/publisher/publish/", json={"content_id": content["id"], "destinations": ["wordpress"]}
    )
    assert response.status_code == 202, response.text
    publication_id = response.json()["data"]["publication_id"]
    again = await tenant.editor.post("/v1/publisher/publish/", json={"content_id": content["id"]})
    assert again.status_code == 409  # one publication in flight at a time

    [request] = await emitted(kafka_bootstrap, events.ContentPublishRequested, publication_id=publication_id)
    assert request.publication_key == f"wi-{tenant.account_id}-{content['id']}-{site['id']}"
    assert len(request.images) == 4 and request.known_external_id is None
    assert request.wp_status == "publish"

    published = events.ContentPublished(
        publication_id=publication_id,
        attempt_id=request.attempt_id,
        content_id=content["id"],
        site_id=site["id"],
        external_id="5678",
        external_url="https://blog.example.com/a-day/",
        wp_status="publish",
        sync_status="published",
        featured_media_id=9,
        media_ids={},
    )
    await send_events(
        kafka_bootstrap, [make_event(published, account_id=tenant.account_id, correlation_id="t")]
    )
    group = await eventually(
        lambda: tenant.group(content["id"]), lambda g: g["external_id"], what="the post's id", timeout_s=5
    )
    assert (group["external_id"], group["external_url"], group["sync_status"]) == (
        "5678",
        "https://blog.example.com/a-day/",
        "published",
    )
    refused = await tenant.editor.post("/v1/publisher/publish/", json={"content_id": content["id"]})
    assert refused.status_code == 409 and "already" in refused.json()["error"]
    republish = await tenant.editor.post("/v1/publisher/republish/", json={"content_id": content["id"]})
    assert republish.status_code == 202

    # WordPress side: trashed → removed, external_url cleared, publishable again by the seed's rule
    trashed = events.WordPressPostChanged(
        site_id=site["id"],
        post_id="5678",
        wp_status="trash",
        modified_gmt=utcnow(),
        link=None,
        publication_key=request.publication_key,
        source="webhook",
        observed_at=utcnow(),
    )
    await send_events(
        kafka_bootstrap, [make_event(trashed, account_id=tenant.account_id, correlation_id="t")]
    )
    group = await eventually(
        lambda: tenant.group(content["id"]),
        lambda g: g["sync_status"] == "removed",
        what="the post's removal",
        timeout_s=5,
    )
    assert group["sync_status"] == "removed" and group["external_url"] is None
    again = await tenant.editor.post("/v1/publisher/publish/", json={"content_id": content["id"]})
    assert again.status_code == 409 and "in progress" in again.json()["error"]  # the republish is in flight


async def test_publish_refuses_by_the_seed_rule_and_missing_images(tenant: Tenant) -> None:
    site = await tenant.site()
    draft = await tenant.ready_content(site["id"], status="draft")
    response = await tenant.editor.post("/v1/publisher/publish/", json={"content_id": draft["id"]})
    assert response.status_code == 409 and "draft" in response.json()["error"]
    not_ready = await tenant.content(site_id=site["id"])
    response = await tenant.editor.post("/v1/publisher/publish/", json={"content_id": not_ready["id"]})
    assert response.status_code == 409 and "not generated" in response.json()["error"]
    allowed = await tenant.editor.post(
        "/v1/publisher/publish/", json={"content_id": not_ready["id"], "allow_missing_images": True}
    )
    assert allowed.status_code == 202
    bad_destination = await tenant.editor.post(
        "/v1/publisher/publish/", json={"content_id": not_ready["id"], "destinations": ["medium"]}
    )
    assert bad_destination.status_code == 422


async def test_batch_publish_reports_each_item_and_accepts_the_ready_ones(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    site = await tenant.site()
    ready_1 = await tenant.ready_content(site["id"])
    ready_2 = await tenant.ready_content(site["id"])
    draft = await tenant.ready_content(site["id"], status="draft")
    foreign = await other_tenant.content()
    response = await tenant.editor.post(
        "/v1/publisher/publish/batch/",
        json={
            "content_ids": [ready_1["id"], draft["id"], ready_2["id"], foreign["id"]],
            "destinations": ["wordpress"],
        },
    )
    assert response.status_code == 202, response.text
    data = response.json()["data"]
    assert (data["accepted"], data["refused"]) == (2, 2)
    by_id = {r["content_id"]: r for r in data["results"]}
    assert by_id[ready_1["id"]]["accepted"] and by_id[ready_2["id"]]["accepted"]
    assert "draft" in by_id[draft["id"]]["reason"]
    assert by_id[foreign["id"]]["reason"] == "Content not found"


async def test_a_content_too_large_for_the_broker_is_refused_413_alone_and_in_a_batch(tenant: Tenant) -> None:
    site = await tenant.site()
    # The largest body the API takes, in a two-byte script: its publish event would be ≈2 MB.
    huge = await tenant.ready_content(site["id"], html="<p>" + "é" * 999_990 + "</p>")
    ready = await tenant.ready_content(site["id"])

    alone = await tenant.editor.post("/v1/publisher/publish/", json={"content_id": huge["id"]})
    batch = await tenant.editor.post(
        "/v1/publisher/publish/batch/", json={"content_ids": [huge["id"], ready["id"]]}
    )

    assert alone.status_code == 413, alone.text
    assert "too large to publish" in alone.json()["error"]
    by_id = {r["content_id"]: r for r in batch.json()["data"]["results"]}
    assert "too large to publish" in by_id[huge["id"]]["reason"]
    assert by_id[ready["id"]]["accepted"]
    assert (await tenant.group(huge["id"]))["sync_status"] != "failed"  # nothing was requested for it


async def test_an_atomic_batch_with_one_refusal_requests_nothing_and_says_why(tenant: Tenant) -> None:
    site = await tenant.site()
    ready = await tenant.ready_content(site["id"])
    draft = await tenant.ready_content(site["id"], status="draft")
    batch = {"content_ids": [ready["id"], draft["id"]], "atomic": True}

    refused = await tenant.editor.post("/v1/publisher/publish/batch/", json=batch)

    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert "Nothing was published: 1 of 2" in problem["error"]
    assert list(problem["errors"]) == [str(draft["id"])] and "draft" in problem["errors"][str(draft["id"])][0]
    history = await tenant.viewer.get(f"/v1/writer/contents/{ready['id']}/publications/")
    assert history.json()["data"] == []  # the ready one's publication was rolled back with the rest
    alone = await tenant.editor.post(
        "/v1/publisher/publish/batch/", json={**batch, "content_ids": [ready["id"]]}
    )
    assert alone.status_code == 202 and alone.json()["data"]["accepted"] == 1


async def test_a_batch_can_schedule_every_post_for_a_date(tenant: Tenant) -> None:
    site = await tenant.site()
    contents = [await tenant.ready_content(site["id"]) for _ in range(2)]
    when = "2031-05-04T09:30:00+00:00"

    response = await tenant.editor.post(
        "/v1/publisher/publish/batch/",
        json={"content_ids": [c["id"] for c in contents], "publish_at": when, "atomic": True},
    )

    assert response.status_code == 202, response.text
    async with tenant.app.state.resources.pool.acquire() as conn:
        requests = await conn.fetch(
            "SELECT request FROM publications WHERE content_id = ANY($1::bigint[])",
            [c["id"] for c in contents],
        )
    assert [(r["request"]["wp_status"], r["request"]["publish_at"]) for r in requests] == [
        ("future", "2031-05-04T09:30:00Z"),
    ] * 2


async def test_failed_publication_is_visible_and_publishable_again(
    tenant: Tenant, kafka_bootstrap: str
) -> None:
    site = await tenant.site()
    content = await tenant.ready_content(site["id"])
    requested = (
        await tenant.editor.post("/v1/publisher/publish/", json={"content_id": content["id"]})
    ).json()["data"]
    history = (await tenant.viewer.get(f"/v1/writer/contents/{content['id']}/publications/")).json()["data"]
    failed = events.ContentPublishFailed(
        publication_id=requested["publication_id"],
        attempt_id=history[0]["attempt_id"],
        content_id=content["id"],
        site_id=site["id"],
        reason="401 from WordPress: bad application password",
        code="auth",
        retryable=False,
        attempts=1,
    )
    await send_events(kafka_bootstrap, [make_event(failed, account_id=tenant.account_id, correlation_id="t")])

    async def read_publication() -> dict[str, Any]:
        url = f"/v1/publisher/publications/{requested['publication_id']}/"
        data: dict[str, Any] = (await tenant.viewer.get(url)).json()["data"]
        return data

    publication = await eventually(
        read_publication, lambda p: p["status"] != "requested", what="the failure's record", timeout_s=5
    )
    assert publication["status"] == "failed" and "application password" in publication["reason"]
    assert (await tenant.group(content["id"]))["sync_status"] == "failed"
    retry = await tenant.editor.post("/v1/publisher/publish/", json={"content_id": content["id"]})
    assert retry.status_code == 202


async def test_publish_with_wait_returns_the_seed_shape_once_wordpress_answered(
    tenant: Tenant, kafka_bootstrap: str
) -> None:
    site = await tenant.site()
    content = await tenant.ready_content(site["id"])
    waiting = asyncio.create_task(
        tenant.editor.post("/v1/publisher/publish/?wait=true", json={"content_id": content["id"]}, timeout=40)
    )
    [request] = await emitted(kafka_bootstrap, events.ContentPublishRequested, content_id=content["id"])
    published = published_event(
        tenant.account_id, request, "77", external_url="https://blog.example.com/p77/"
    )
    await send_events(kafka_bootstrap, [published])
    response = await waiting
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {
        "content_id": content["id"],
        "external_id": "77",
        "external_url": "https://blog.example.com/p77/",
        "sync_status": "published",
    }


async def test_the_publishing_queue_lists_the_accounts_publications_and_the_calendar_its_scheduled_ones(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    site = await tenant.site()
    now_live, in_may, in_june = [await tenant.ready_content(site["id"]) for _ in range(3)]
    await tenant.editor.post("/v1/publisher/publish/", json={"content_id": now_live["id"]})
    for content, when in ((in_june, "2031-06-02T08:00:00Z"), (in_may, "2031-05-20T08:00:00Z")):
        await tenant.editor.post(
            "/v1/publisher/publish/", json={"content_id": content["id"], "publish_at": when}
        )
    other_site = await other_tenant.site()
    foreign = await other_tenant.ready_content(other_site["id"])
    await other_tenant.editor.post("/v1/publisher/publish/", json={"content_id": foreign["id"]})

    queue = (await tenant.viewer.get("/v1/publisher/publications/", params={"status": "requested"})).json()
    may = await tenant.viewer.get(
        "/v1/publisher/publications/",
        params={"scheduled_from": "2031-05-01T00:00:00Z", "scheduled_to": "2031-06-01T00:00:00Z"},
    )
    spring = await tenant.viewer.get(
        "/v1/publisher/publications/",
        params={"scheduled_from": "2031-05-01T00:00:00Z", "scheduled_to": "2031-07-01T00:00:00Z"},
    )

    mine = [r["content_id"] for r in queue["data"]["results"]]
    assert mine == [
        in_may["id"],
        in_june["id"],
        now_live["id"],
    ]  # newest first; the other tenant's is not here
    assert queue["data"]["results"][0]["title"] == in_may["title"]
    assert [r["content_id"] for r in may.json()["data"]["results"]] == [in_may["id"]]
    assert [(r["content_id"], r["publish_at"]) for r in spring.json()["data"]["results"]] == [
        (in_may["id"], "2031-05-20T08:00:00Z"),
        (in_june["id"], "2031-06-02T08:00:00Z"),
    ]


async def test_the_publishing_queue_refuses_a_backwards_or_naive_schedule_window(tenant: Tenant) -> None:
    backwards = await tenant.viewer.get(
        "/v1/publisher/publications/",
        params={"scheduled_from": "2031-06-01T00:00:00Z", "scheduled_to": "2031-05-01T00:00:00Z"},
    )
    naive = await tenant.viewer.get(
        "/v1/publisher/publications/", params={"scheduled_from": "2031-06-01T00:00:00"}
    )

    assert backwards.status_code == 422 and "scheduled_to" in backwards.json()["errors"]
    assert naive.status_code == 422 and naive.json()["success"] is False


async def test_a_publish_date_without_a_time_zone_is_422_on_the_field(tenant: Tenant) -> None:
    site = await tenant.site()
    content = await tenant.ready_content(site["id"])
    naive = "2030-01-01T10:00:00"

    single = await tenant.editor.post(
        "/v1/publisher/publish/", json={"content_id": content["id"], "publish_at": naive}
    )
    batch = await tenant.editor.post(
        "/v1/publisher/publish/batch/", json={"content_ids": [content["id"]], "publish_at": naive}
    )

    for response in (single, batch):
        assert response.status_code == 422, response.text
        assert list(response.json()["errors"]) == ["publish_at"]
    history = await tenant.viewer.get(f"/v1/writer/contents/{content['id']}/publications/")
    assert history.json()["data"] == []


OUT_OF_RANGE = (
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59.999999Z",
    "0001-01-01T00:00:00Z",
)


async def test_a_date_outside_the_calendar_in_utc_is_422_on_the_field_not_a_server_error(
    tenant: Tenant,
) -> None:
    site = await tenant.site()
    content = await tenant.ready_content(site["id"])
    # Valid ISO dates whose UTC instant is before year 1 or after 9999: no timestamptz Postgres can store;
    # the first and last microsecond of the calendar, which the driver sends as -infinity and infinity.
    for moment in OUT_OF_RANGE:
        single = await tenant.editor.post(
            "/v1/publisher/publish/", json={"content_id": content["id"], "publish_at": moment}
        )
        batch = await tenant.editor.post(
            "/v1/publisher/publish/batch/", json={"content_ids": [content["id"]], "publish_at": moment}
        )
        for response in (single, batch):
            assert response.status_code == 422, (moment, response.text)
            assert list(response.json()["errors"]) == ["publish_at"]
        for bound in ("scheduled_from", "scheduled_to"):
            queue = await tenant.viewer.get("/v1/publisher/publications/", params={bound: moment})
            assert queue.status_code == 422, (bound, moment, queue.text)
            assert list(queue.json()["errors"]) == [bound]
    history = await tenant.viewer.get(f"/v1/writer/contents/{content['id']}/publications/")
    assert history.json()["data"] == []


async def _published_on(tenant: Tenant, content_id: int, site_id: int, post_id: str) -> None:
    """The content as the projections leave it once the post went live on that site."""
    async with tenant.app.state.resources.pool.acquire() as conn:
        await conn.execute(
            """UPDATE contents SET external_id = $2, external_url = $3, sync_status = 'published',
                   wp_status = 'publish', wp_modified_at = now(), publication_key = $4 WHERE id = $1""",
            content_id,
            post_id,
            f"https://blog.example.com/p{post_id}/",
            f"wi-{tenant.account_id}-{content_id}-{site_id}",
        )


async def _request_of(tenant: Tenant, publication_id: int) -> dict[str, Any]:
    async with tenant.app.state.resources.pool.acquire() as conn:
        request: dict[str, Any] = await conn.fetchval(
            "SELECT request FROM publications WHERE id = $1", publication_id
        )
    return request


async def test_content_moved_to_another_site_is_published_there_as_a_new_post(tenant: Tenant) -> None:
    old_site = await tenant.site(name="Old")
    new_site = await tenant.site(name="New", base_url="https://other.example.com")
    content = await tenant.ready_content(old_site["id"])
    await _published_on(tenant, content["id"], old_site["id"], "5678")

    moved = await tenant.editor.patch(
        f"/v1/writer/contents/{content['id']}/", json={"site_id": new_site["id"]}
    )

    assert moved.status_code == 200, moved.text
    data = moved.json()["data"]
    link = ("external_id", "external_url", "sync_status", "wp_status", "publication_key")
    assert data["site_id"] == new_site["id"] and {k: data[k] for k in link} == dict.fromkeys(link)
    republish = await tenant.editor.post("/v1/publisher/republish/", json={"content_id": content["id"]})
    assert republish.status_code == 409 and "never been published" in republish.json()["error"]
    publish = await tenant.editor.post("/v1/publisher/publish/", json={"content_id": content["id"]})
    assert publish.status_code == 202, publish.text
    request = await _request_of(tenant, publish.json()["data"]["publication_id"])
    assert (request["site_id"], request["publication_key"], request["known_external_id"]) == (
        new_site["id"],
        f"wi-{tenant.account_id}-{content['id']}-{new_site['id']}",
        None,
    )


async def test_a_post_id_is_sent_only_to_the_site_the_content_was_published_on(tenant: Tenant) -> None:
    site = await tenant.site(name="Old")
    other_site = await tenant.site(name="New", base_url="https://other.example.com")
    same_site = await tenant.ready_content(site["id"])
    await _published_on(tenant, same_site["id"], site["id"], "11")
    # left by a move before moves dropped the link: the id and key of a post on the other site
    moved_earlier = await tenant.ready_content(other_site["id"])
    await _published_on(tenant, moved_earlier["id"], site["id"], "22")

    known = {}
    for content in (same_site, moved_earlier):
        response = await tenant.editor.post("/v1/publisher/republish/", json={"content_id": content["id"]})
        assert response.status_code == 202, response.text
        request = await _request_of(tenant, response.json()["data"]["publication_id"])
        known[content["id"]] = request["known_external_id"]

    assert known == {same_site["id"]: "11", moved_earlier["id"]: None}


async def test_content_cannot_change_site_while_a_publication_is_in_flight(tenant: Tenant) -> None:
    site = await tenant.site(name="Old")
    other_site = await tenant.site(name="New", base_url="https://other.example.com")
    content = await tenant.ready_content(site["id"])
    requested = await tenant.editor.post("/v1/publisher/publish/", json={"content_id": content["id"]})

    refused = await tenant.editor.patch(
        f"/v1/writer/contents/{content['id']}/", json={"site_id": other_site["id"]}
    )
    renamed = await tenant.editor.patch(
        f"/v1/writer/contents/{content['id']}/", json={"site_id": site["id"], "title": "Renamed"}
    )

    assert refused.status_code == 409, refused.text
    assert str(requested.json()["data"]["publication_id"]) in refused.json()["errors"]["site_id"][0]
    assert renamed.status_code == 200 and renamed.json()["data"]["publication_key"] is not None
