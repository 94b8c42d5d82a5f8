"""Content and image slots: default prompts from any body the schema accepts, what may be deleted when,
and dates that need a time zone."""

from __future__ import annotations

import asyncio

from images_api.testing import Tenant


async def test_a_body_of_unclosed_headings_gets_its_prompts_from_the_title(tenant: Tenant) -> None:
    unclosed = "<h2>" * 250_000  # 1,000,000 characters, the most the schema allows

    created = await tenant.editor.post(
        "/v1/writer/contents/", json={"title": "Lisbon", "html": unclosed}, timeout=30
    )

    assert created.status_code == 201, created.text[:300]
    in_article = [i["prompt"] for i in created.json()["data"]["images"] if i["image_type"] == "in_article"]
    assert in_article == [f"Illustration for the section: Lisbon (illustration {n})" for n in (1, 2, 3)]


async def test_an_image_being_generated_cannot_be_deleted_until_its_status_is_set(tenant: Tenant) -> None:
    content = await tenant.content()
    image = content["images"][1]
    started = await tenant.editor.post(
        "/v1/writer/images/generate_images/", json={"ids": [image["id"]], "content_id": content["id"]}
    )
    task_url = f"/v1/tasks/{started.json()['data']['task_id']}/"

    refused = await tenant.editor.delete(f"/v1/writer/images/{image['id']}/")

    assert refused.status_code == 409, refused.text
    assert "queued" in refused.json()["error"] and "set its status" in refused.json()["error"]
    assert (await tenant.viewer.get(f"/v1/writer/images/{image['id']}/")).status_code == 200
    task = (await tenant.viewer.get(task_url)).json()["data"]
    assert (task["state"], [i["image_id"] for i in task["items"]]) == ("running", [image["id"]])

    # the status modal ends the generation (and the task); then the slot can go
    await tenant.editor.post(
        "/v1/writer/images/bulk_update/", json={"content_id": content["id"], "status": "failed"}
    )
    deleted = await tenant.editor.delete(f"/v1/writer/images/{image['id']}/")

    assert deleted.status_code == 200, deleted.text
    assert (await tenant.viewer.get(f"/v1/writer/images/{image['id']}/")).status_code == 404
    assert (await tenant.viewer.get(task_url)).json()["data"]["state"] == "completed"


async def test_a_publish_date_without_a_time_zone_is_422_on_the_field(tenant: Tenant) -> None:
    naive = "2030-01-01T10:00:00"
    content = await tenant.content()

    created = await tenant.editor.post("/v1/writer/contents/", json={"title": "x", "publish_at": naive})
    patched = await tenant.editor.patch(f"/v1/writer/contents/{content['id']}/", json={"publish_at": naive})
    aware = await tenant.editor.patch(
        f"/v1/writer/contents/{content['id']}/", json={"publish_at": "2030-01-01T10:00:00+02:00"}
    )

    for response in (created, patched):
        assert response.status_code == 422, response.text
        assert list(response.json()["errors"]) == ["publish_at"]
    assert aware.status_code == 200 and aware.json()["data"]["publish_at"] == "2030-01-01T08:00:00Z"


OUT_OF_RANGE = (
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59.999999Z",
    "0001-01-01T00:00:00Z",
)


async def test_a_publish_date_outside_the_calendar_in_utc_is_422_on_the_field(tenant: Tenant) -> None:
    content = await tenant.content()
    # Valid ISO dates whose UTC instant is before year 1 or after 9999: no timestamptz Postgres can store;
    # the first and last microsecond of the calendar, which the driver sends as -infinity and infinity.
    for moment in OUT_OF_RANGE:
        created = await tenant.editor.post("/v1/writer/contents/", json={"title": "x", "publish_at": moment})
        patched = await tenant.editor.patch(
            f"/v1/writer/contents/{content['id']}/", json={"publish_at": moment}
        )

        for response in (created, patched):
            assert response.status_code == 422, (moment, response.text)
            assert list(response.json()["errors"]) == ["publish_at"]


async def test_a_sector_deleted_while_a_content_moves_into_it_is_404_not_a_server_error(
    tenant: Tenant,
) -> None:
    site = await tenant.site()
    sector = await tenant.sector(site["id"])
    content = await tenant.content()
    async with tenant.app.state.resources.pool.acquire() as conn, conn.transaction():
        # Deleted by a concurrent request: not committed yet when the move checks the sector.
        await conn.execute("DELETE FROM sectors WHERE id = $1", sector["id"])
        move = asyncio.create_task(
            tenant.editor.patch(
                f"/v1/writer/contents/{content['id']}/",
                json={"site_id": site["id"], "sector_id": sector["id"]},
            )
        )
        await asyncio.sleep(0.5)  # the move has checked the sector and waits for its row
    response = await move

    assert response.status_code == 404, response.text
    assert response.json()["error"] == "Sector not found"
    assert (await tenant.viewer.get(f"/v1/writer/contents/{content['id']}/")).json()["data"][
        "sector_id"
    ] is None
