"""Projections of other services' events, through the real broker: what WordPress and the generator tell us
reaches the grouped view, and nothing they say late, twice or about someone else's post overrides it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from images_api.testing import Tenant, generated_event, published_event
from writer_images import events
from writer_images.events import make_event, utcnow
from writer_images.testing.kafka_tools import emitted, send_events
from writer_images.testing.waiting import eventually

# --- WordPress → us ---------------------------------------------------------------------------


async def _until(tenant: Tenant, content_id: int, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The content's group in the grouped view once `done` holds (the consumer works asynchronously)."""
    return await eventually(lambda: tenant.group(content_id), done, what="the grouped view", timeout_s=10)


async def _requested(
    tenant: Tenant, kafka_bootstrap: str, site_id: int, title: str
) -> tuple[dict[str, Any], events.ContentPublishRequested]:
    """A content whose publication was requested through the API, and the request the publisher got."""
    content = await tenant.ready_content(site_id, title=title)
    response = await tenant.editor.post("/v1/publisher/publish/", json={"content_id": content["id"]})
    assert response.status_code == 202, response.text
    publication_id = response.json()["data"]["publication_id"]
    [request] = await emitted(kafka_bootstrap, events.ContentPublishRequested, publication_id=publication_id)
    return content, request


async def _published(
    tenant: Tenant, kafka_bootstrap: str, site_id: int, post_id: str, title: str = "A day in Lisbon"
) -> tuple[dict[str, Any], str]:
    """A content published through the API as WordPress post `post_id`; the content and its publication key."""
    content, request = await _requested(tenant, kafka_bootstrap, site_id, title)
    await send_events(kafka_bootstrap, [published_event(tenant.account_id, request, post_id)])
    await _until(tenant, content["id"], lambda g: g["external_id"] == post_id)
    return content, request.publication_key


def _post_changed(
    tenant: Tenant,
    site_id: int,
    post_id: str,
    *,
    wp_status: events.WordPressStatus = "publish",
    modified_gmt: datetime | None = None,
    title: str | None = None,
    publication_key: str | None = None,
    link: str | None = None,
) -> events.OutgoingEvent:
    payload = events.WordPressPostChanged(
        site_id=site_id,
        post_id=post_id,
        wp_status=wp_status,
        modified_gmt=modified_gmt or utcnow(),
        link=link or f"https://blog.example.com/?p={post_id}",
        title=title,
        publication_key=publication_key,
        source="webhook",
        observed_at=utcnow(),
    )
    return make_event(payload, account_id=tenant.account_id, correlation_id="t")


async def test_a_title_edited_in_wordpress_shows_in_the_grouped_view_and_an_older_one_never_overwrites_it(
    tenant: Tenant, kafka_bootstrap: str
) -> None:
    site = await tenant.site()
    content, key = await _published(tenant, kafka_bootstrap, site["id"], "5678")
    now = utcnow()

    await send_events(
        kafka_bootstrap,
        [
            _post_changed(
                tenant, site["id"], "5678", modified_gmt=now, title="Lisbon by tram", publication_key=key
            ),
            # an edit made before that one, delivered late (the reconciler catching up)
            _post_changed(
                tenant,
                site["id"],
                "5678",
                modified_gmt=now - timedelta(minutes=5),
                title="Lisbon, a draft title",
            ),
            # events of one site are handled in order: once this one shows, the two above were handled
            _post_changed(
                tenant, site["id"], "5678", wp_status="draft", modified_gmt=now + timedelta(seconds=1)
            ),
        ],
    )
    group = await _until(tenant, content["id"], lambda g: g["sync_status"] == "draft")

    assert group["content_title"] == "Lisbon by tram"  # and an event without a title left it alone


async def test_a_wordpress_title_is_shown_as_plain_text(tenant: Tenant, kafka_bootstrap: str) -> None:
    site = await tenant.site()
    content, _ = await _published(tenant, kafka_bootstrap, site["id"], "5678")

    # WordPress keeps a title as HTML: kses escapes "&" for most roles, and a rendered title is texturized
    changed = _post_changed(tenant, site["id"], "5678", title="Lisbon&#8217;s trams &amp; past&eacute;is")
    await send_events(kafka_bootstrap, [changed])
    group = await _until(tenant, content["id"], lambda g: g["content_title"] != "A day in Lisbon")

    assert group["content_title"] == "Lisbon\u2019s trams & pastéis"


async def test_a_title_edited_here_stays_until_the_title_changes_in_wordpress(
    tenant: Tenant, kafka_bootstrap: str
) -> None:
    site = await tenant.site()
    content, _ = await _published(tenant, kafka_bootstrap, site["id"], "5678")
    renamed = await tenant.editor.patch(
        f"/v1/writer/contents/{content['id']}/", json={"title": "Lisbon, renamed"}
    )
    assert renamed.status_code == 200, renamed.text
    now = utcnow()

    # the post is unpublished in WordPress: its title there is still the one we published
    await send_events(
        kafka_bootstrap,
        [
            _post_changed(
                tenant, site["id"], "5678", wp_status="draft", modified_gmt=now, title="A day in Lisbon"
            )
        ],
    )
    group = await _until(tenant, content["id"], lambda g: g["sync_status"] == "draft")
    assert group["content_title"] == "Lisbon, renamed"

    retitled = _post_changed(
        tenant, site["id"], "5678", modified_gmt=now + timedelta(seconds=1), title="Porto"
    )
    await send_events(kafka_bootstrap, [retitled])
    group = await _until(tenant, content["id"], lambda g: g["sync_status"] == "published")
    assert group["content_title"] == "Porto"


async def test_a_post_url_that_is_not_http_or_https_is_never_stored(
    tenant: Tenant, kafka_bootstrap: str
) -> None:
    # The page puts the post's URL into a link: a `javascript:` URL from WordPress must never get there.
    site = await tenant.site()
    content, request = await _requested(tenant, kafka_bootstrap, site["id"], "A day in Lisbon")
    now = utcnow()

    published = published_event(
        tenant.account_id, request, "5678", external_url="javascript:alert(document.cookie)"
    )
    await send_events(kafka_bootstrap, [published])
    group = await _until(tenant, content["id"], lambda g: g["external_id"] == "5678")
    assert group["external_url"] is None
    response = await tenant.viewer.get(f"/v1/writer/contents/{content['id']}/publications/")
    assert response.json()["data"][0]["external_url"] is None

    changed = _post_changed(
        tenant, site["id"], "5678", modified_gmt=now, title="Lisbon by tram", link=" JavaScript:alert(1)"
    )
    await send_events(kafka_bootstrap, [changed])
    group = await _until(tenant, content["id"], lambda g: g["content_title"] == "Lisbon by tram")
    assert group["external_url"] is None

    fixed = _post_changed(
        tenant,
        site["id"],
        "5678",
        modified_gmt=now + timedelta(seconds=1),
        link="https://blog.example.com/lisbon",
    )
    await send_events(kafka_bootstrap, [fixed])
    await _until(tenant, content["id"], lambda g: g["external_url"] == "https://blog.example.com/lisbon")


async def test_a_copy_of_our_post_carrying_its_publication_key_does_not_take_over_the_content(
    tenant: Tenant, kafka_bootstrap: str
) -> None:
    site = await tenant.site()
    content, key = await _published(tenant, kafka_bootstrap, site["id"], "5678")
    witness, _ = await _published(tenant, kafka_bootstrap, site["id"], "7000", title="A witness")

    await send_events(
        kafka_bootstrap,
        [
            # an editor duplicates our post: the copy is a draft with our meta, the publication key included
            _post_changed(
                tenant,
                site["id"],
                "9999",
                wp_status="draft",
                title="A day in Lisbon (copy)",
                publication_key=key,
            ),
            # events of one site are handled in order: once the witness shows this, the copy's event was handled
            _post_changed(tenant, site["id"], "7000", wp_status="draft"),
        ],
    )
    await _until(tenant, witness["id"], lambda g: g["sync_status"] == "draft")
    group = await tenant.group(content["id"])

    assert (group["external_id"], group["sync_status"], group["content_title"]) == (
        "5678",
        "published",
        "A day in Lisbon",
    )
    assert group["external_url"] == "https://blog.example.com/?p=5678"


async def test_a_post_on_another_site_never_changes_the_content_even_with_its_publication_key(
    tenant: Tenant, kafka_bootstrap: str
) -> None:
    site = await tenant.site()
    elsewhere = await tenant.site(name="Another blog", base_url="https://other.example.com")
    content, key = await _published(tenant, kafka_bootstrap, site["id"], "5678")
    witness, _ = await _published(tenant, kafka_bootstrap, elsewhere["id"], "7000", title="A witness")

    await send_events(
        kafka_bootstrap,
        [
            # the same post id and our key, on another site (a site cloned or migrated with our meta)
            _post_changed(tenant, elsewhere["id"], "5678", wp_status="trash", publication_key=key),
            _post_changed(tenant, elsewhere["id"], "7000", wp_status="draft"),
        ],
    )
    await _until(tenant, witness["id"], lambda g: g["sync_status"] == "draft")
    group = await tenant.group(content["id"])

    assert (group["external_id"], group["sync_status"]) == ("5678", "published")
    assert group["external_url"] == "https://blog.example.com/?p=5678"


# --- generation results -----------------------------------------------------------------------


async def _request(
    tenant: Tenant, kafka_bootstrap: str, content_id: int, image_id: int
) -> events.ImageGenerationRequested:
    started = await tenant.editor.post(
        "/v1/writer/images/generate_images/", json={"ids": [image_id], "content_id": content_id}
    )
    assert started.status_code == 202, started.text
    task_id = started.json()["data"]["task_id"]
    [request] = await emitted(kafka_bootstrap, events.ImageGenerationRequested, task_id=task_id)
    return request


async def _image_status(tenant: Tenant, image_id: int) -> str:
    status: str = (await tenant.viewer.get(f"/v1/writer/images/{image_id}/")).json()["data"]["status"]
    return status


async def _until_image(tenant: Tenant, image_id: int, status: str) -> None:
    await eventually(
        lambda: _image_status(tenant, image_id),
        lambda seen: seen == status,
        what=f"image {image_id} becoming {status}",
        timeout_s=10,
    )


async def test_a_generation_result_delivered_again_never_overrides_the_status_the_user_set(
    tenant: Tenant, kafka_bootstrap: str
) -> None:
    rendition = await tenant.stored_rendition()

    def generated(request: events.ImageGenerationRequested) -> events.OutgoingEvent:
        return generated_event(tenant.account_id, request, rendition)  # a new event id each time

    content = await tenant.content()
    first_id, second_id = (i["id"] for i in content["images"][:2])
    first = await _request(tenant, kafka_bootstrap, content["id"], first_id)
    await send_events(kafka_bootstrap, [generated(first)])
    await _until_image(tenant, first_id, "generated")
    marked = await tenant.editor.post(
        "/v1/writer/images/bulk_update/", json={"content_id": content["id"], "status": "failed"}
    )
    assert marked.status_code == 200, marked.text
    second = await _request(tenant, kafka_bootstrap, content["id"], second_id)

    # the generator answers a sweeper's re-request of a revision it already made with the stored result
    await send_events(kafka_bootstrap, [generated(first), generated(second)])
    await _until_image(tenant, second_id, "generated")  # results of one content are handled in order

    assert await _image_status(tenant, first_id) == "failed"


async def test_a_publication_result_older_than_a_change_made_in_wordpress_leaves_the_newer_state(
    tenant: Tenant, kafka_bootstrap: str
) -> None:
    site = await tenant.site()
    content, request = await _requested(tenant, kafka_bootstrap, site["id"], "A day in Lisbon")
    published_at = utcnow()
    # The editor unpublished the new post a moment after it went live, and that change came in first.
    await send_events(
        kafka_bootstrap,
        [
            _post_changed(
                tenant,
                site["id"],
                "5678",
                wp_status="draft",
                modified_gmt=published_at + timedelta(seconds=3),
                publication_key=request.publication_key,
            )
        ],
    )
    await _until(tenant, content["id"], lambda g: g["sync_status"] == "draft")

    await send_events(
        kafka_bootstrap, [published_event(tenant.account_id, request, "5678", modified_gmt=published_at)]
    )

    async def publication_recorded() -> bool:
        response = await tenant.viewer.get(f"/v1/writer/contents/{content['id']}/publications/")
        return bool(response.json()["data"][0]["status"] == "published")

    await eventually(publication_recorded, what="the publication's record", timeout_s=10)
    group = await tenant.group(content["id"])
    assert (group["sync_status"], group["external_url"], group["external_id"]) == ("draft", None, "5678")
