"""Publishing to a real WordPress through the real broker, exactly as images-api asks for it."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest

from publisher.testing import post_ids_with_key
from writer_images.events import utcnow
from writer_images.testing.wordpress import WordPressSite

pytestmark = [pytest.mark.slow, pytest.mark.wordpress]


def _post(site: WordPressSite, post_id: str) -> dict:  # type: ignore[type-arg]
    with httpx.Client(base_url=site.rest_url, auth=site.admin_auth, timeout=30) as client:
        response = client.get(f"/wp/v2/posts/{post_id}", params={"context": "edit"})
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


def _media(site: WordPressSite, media_id: int) -> dict:  # type: ignore[type-arg]
    with httpx.Client(base_url=site.rest_url, auth=site.admin_auth, timeout=30) as client:
        response = client.get(f"/wp/v2/media/{media_id}", params={"context": "edit"})
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


async def test_publish_creates_one_post_with_its_featured_and_in_article_images_in_place(
    harness, bridged_site: WordPressSite
) -> None:
    site_id = await harness.add_site(bridged_site)
    content = await harness.content(site_id, in_article=3)
    await harness.send([harness.publish_requested(content)])

    [published] = (await harness.outcomes({content.content_id}))[content.content_id]

    assert published["_type"] == "content.published"
    assert published["sync_status"] == "published" and published["wp_status"] == "publish"
    assert post_ids_with_key(bridged_site, content.publication_key) == [int(published["external_id"])]
    post = _post(bridged_site, published["external_id"])
    # The post's modification time orders this result among the changes made in WordPress (another topic).
    assert published["modified_gmt"].removesuffix("Z").removesuffix("+00:00") == post["modified_gmt"]
    featured, *in_article = content.images
    media_ids = published["media_ids"]
    assert len(set(media_ids.values())) == 4
    assert post["featured_media"] == published["featured_media_id"] == media_ids[str(featured.image_id)]
    for image in content.images:
        assert _media(bridged_site, media_ids[str(image.image_id)])["alt_text"] == image.alt_text
    # The rule: the n-th in-article image right after the n-th </h2>.
    body = post["content"]["raw"]
    for section, image in zip(body.split("</h2>")[1:], in_article, strict=True):
        first_figure = re.search(
            r'<figure class="wp-block-image[^"]*"><img src="([^"]+)" alt="([^"]*)"', section
        )
        assert first_figure is not None and section.index("<figure") < section.index("<p>")
        assert first_figure[2] == image.alt_text
        assert f"wp-image-{media_ids[str(image.image_id)]}" in section.split("</figure>")[0]
    assert body.count("wp-block-image") == 3
    page = httpx.get(published["external_url"], timeout=30)
    assert page.status_code == 200 and content.title in page.text


async def test_republish_after_an_edit_updates_the_same_post_and_reuses_its_media(
    harness, bridged_site: WordPressSite
) -> None:
    site_id = await harness.add_site(bridged_site)
    content = await harness.content(site_id, in_article=2)
    await harness.send([harness.publish_requested(content)])
    [first] = (await harness.outcomes({content.content_id}))[content.content_id]
    media_before = _total(bridged_site, "/wp/v2/media")

    content.title, content.html = content.title + " (edited)", content.html.replace("One.", "One, revised.")
    await harness.send(
        [harness.publish_requested(content, action="republish", known_external_id=first["external_id"])]
    )
    outcomes = await harness.outcomes({content.content_id}, at_least=1, timeout_s=60)
    await _wait_for(harness, content.content_id, 2)
    second = (await harness.outcomes({content.content_id}))[content.content_id][-1]

    assert second["_type"] == "content.published"
    assert second["external_id"] == first["external_id"]
    assert second["media_ids"] == first["media_ids"]
    assert _total(bridged_site, "/wp/v2/media") == media_before
    post = _post(bridged_site, second["external_id"])
    assert post["title"]["raw"] == content.title and "One, revised." in post["content"]["raw"]
    assert len(post_ids_with_key(bridged_site, content.publication_key)) == 1
    assert outcomes


async def test_scheduled_publish_creates_a_future_post(harness, bridged_site: WordPressSite) -> None:
    site_id = await harness.add_site(bridged_site)
    content = await harness.content(site_id, in_article=1)
    publish_at = (utcnow() + timedelta(days=2)).replace(microsecond=0)
    await harness.send([harness.publish_requested(content, wp_status="future", publish_at=publish_at)])

    [scheduled] = (await harness.outcomes({content.content_id}))[content.content_id]

    assert scheduled["wp_status"] == "future" and scheduled["sync_status"] == "scheduled"
    post = _post(bridged_site, scheduled["external_id"])
    assert post["status"] == "future"
    assert post["date_gmt"] == publish_at.replace(tzinfo=None).isoformat()


async def test_a_bulk_publish_never_has_more_than_two_requests_in_flight_against_one_site(
    harness, bridged_site: WordPressSite, faulty_proxy
) -> None:
    with faulty_proxy(bridged_site.base_url, delay_s=0.05) as watched_host:
        site_id = await harness.add_site(bridged_site, base_url=watched_host.url)
        contents = [await harness.content(site_id, in_article=1) for _ in range(8)]
        await harness.send([harness.publish_requested(c) for c in contents])
        outcomes = await harness.outcomes({c.content_id for c in contents}, timeout_s=120)

    assert all(o[0]["_type"] == "content.published" for o in outcomes.values())
    assert watched_host.max_in_flight == 2, "the per-site limit is what the host sees, whatever the jobs"


async def test_a_request_whose_deadline_passed_writes_nothing_to_wordpress_and_fails_with_the_reason(
    harness, bridged_site: WordPressSite
) -> None:
    site_id = await harness.add_site(bridged_site)
    content = await harness.content(site_id, in_article=1)
    media_before = _total(bridged_site, "/wp/v2/media")
    # images-api's sweeper has given up on this publication by now; a post made after it would be a surprise.
    await harness.send([harness.publish_requested(content, deadline_at=utcnow() - timedelta(seconds=1))])

    [failed] = (await harness.outcomes({content.content_id}))[content.content_id]

    assert failed["_type"] == "content.publish.failed"
    assert failed["code"] == "deadline_passed" and "deadline passed before publishing" in failed["reason"]
    assert failed["retryable"] is False
    assert post_ids_with_key(bridged_site, content.publication_key) == []
    assert _total(bridged_site, "/wp/v2/media") == media_before


async def test_an_older_publication_arriving_after_a_newer_one_was_published_leaves_the_post_alone_and_fails(
    harness, bridged_site: WordPressSite
) -> None:
    site_id = await harness.add_site(bridged_site)
    content = await harness.content(site_id, in_article=1)
    older_id, newer_id = harness.next_id(), harness.next_id()
    older = harness.publish_requested(content, publication_id=older_id)
    content.title, content.html = content.title + " (newer)", content.html.replace("One.", "One, newer.")
    await harness.send([harness.publish_requested(content, publication_id=newer_id)])
    [published] = (await harness.outcomes({content.content_id}))[content.content_id]

    await harness.send([older])
    await _wait_for(harness, content.content_id, 2)
    outcomes = (await harness.outcomes({content.content_id}))[content.content_id]

    late = [o for o in outcomes if o["publication_id"] == older_id]
    assert [o["_type"] for o in late] == ["content.publish.failed"]
    assert late[0]["code"] == "superseded" and "superseded by a newer attempt" in late[0]["reason"]
    assert late[0]["retryable"] is False
    post = _post(bridged_site, published["external_id"])
    assert post["title"]["raw"] == content.title and "One, newer." in post["content"]["raw"]
    assert post_ids_with_key(bridged_site, content.publication_key) == [post["id"]]


def _total(site: WordPressSite, path: str, **params: str) -> int:
    with httpx.Client(base_url=site.rest_url, auth=site.admin_auth, timeout=30) as client:
        response = client.get(path, params={**params, "per_page": "1"})
        response.raise_for_status()
        return int(response.headers["x-wp-total"])


async def _wait_for(harness, content_id: int, count: int) -> None:  # type: ignore[no-untyped-def]
    """Until `count` outcomes of the content reached the broker."""
    import asyncio

    for _ in range(120):
        found = (await harness.outcomes({content_id}, timeout_s=2)).get(content_id, [])
        if len(found) >= count:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"content {content_id}: fewer than {count} outcomes")


async def test_bulk_publish_of_20_with_3_failures_publishes_the_other_17_and_touches_nothing_else(
    harness, bridged_site: WordPressSite, faulty_proxy
) -> None:
    posts_before = _total(bridged_site, "/wp/v2/posts", status="publish,future,draft,pending,private,trash")
    media_before = _total(bridged_site, "/wp/v2/media")
    with (
        faulty_proxy(bridged_site.base_url, status_for_all=500) as broken_host,
        faulty_proxy(bridged_site.base_url, max_body=300_000) as small_uploads_host,
    ):
        good_site = await harness.add_site(bridged_site)
        bad_password_site = await harness.add_site(bridged_site, password="abcd efgh ijkl mnop qrst uvwx")
        broken_site = await harness.add_site(bridged_site, base_url=broken_host.url)
        small_uploads_site = await harness.add_site(bridged_site, base_url=small_uploads_host.url)
        good = [await harness.content(good_site) for _ in range(17)]
        bad_password = await harness.content(bad_password_site)
        broken = await harness.content(broken_site)
        oversized = await harness.content(small_uploads_site, big_image=True)
        failing = {bad_password.content_id, broken.content_id, oversized.content_id}
        everything = [*good[:8], bad_password, *good[8:12], broken, *good[12:], oversized]
        await harness.send([harness.publish_requested(c) for c in everything])

        outcomes = await harness.outcomes({c.content_id for c in everything}, timeout_s=120)

    assert {cid: [o["_type"] for o in found] for cid, found in outcomes.items()} == {
        c.content_id: ["content.publish.failed" if c.content_id in failing else "content.published"]
        for c in everything
    }
    failed = {cid: found[0] for cid, found in outcomes.items() if cid in failing}
    assert failed[bad_password.content_id]["code"] in ("bad_credentials", "not_authenticated")
    assert "application password" in failed[bad_password.content_id]["reason"]
    assert failed[bad_password.content_id]["retryable"] is False
    assert failed[broken.content_id]["code"] == "server_error"
    assert failed[broken.content_id]["retryable"] is True and failed[broken.content_id]["attempts"] == 3
    assert failed[oversized.content_id]["code"] == "media_too_large"
    assert "upload of wi-" in failed[oversized.content_id]["reason"]  # names the image that was refused
    assert failed[oversized.content_id]["retryable"] is False
    letters = await harness.dead_letters(failing)
    assert {int(letter["original"]["payload"]["content_id"]) for letter in letters} == failing
    # Nothing else touched: 17 new posts, 4 media each, none for the failed contents.
    assert (
        _total(bridged_site, "/wp/v2/posts", status="publish,future,draft,pending,private,trash")
        == posts_before + 17
    )
    assert _total(bridged_site, "/wp/v2/media") == media_before + 17 * 4
    for content in (bad_password, broken, oversized):
        assert post_ids_with_key(bridged_site, content.publication_key) == []


@pytest.mark.parametrize("with_plugin", [True, False], ids=["bridge-plugin", "no-plugin-slug-fallback"])
async def test_a_post_whose_id_was_never_stored_is_found_by_its_key_instead_of_created_again(
    harness, bridged_site: WordPressSite, wordpress_site: WordPressSite, with_plugin: bool
) -> None:
    import asyncpg

    site = bridged_site if with_plugin else wordpress_site
    site_id = await harness.add_site(site)
    content = await harness.content(site_id, in_article=1)
    await harness.send([harness.publish_requested(content)])
    [first] = (await harness.outcomes({content.content_id}))[content.content_id]
    # As if the publisher had crashed between WordPress creating the post and the commit of its id.
    conn = await asyncpg.connect(harness.database_url)
    await conn.execute(
        "UPDATE publisher.publications SET post_id = NULL WHERE publication_key = $1", content.publication_key
    )
    await conn.close()

    await harness.send([harness.publish_requested(content)])
    await _wait_for(harness, content.content_id, 2)
    second = (await harness.outcomes({content.content_id}))[content.content_id][-1]

    assert second["_type"] == "content.published" and second["external_id"] == first["external_id"]
    with httpx.Client(base_url=site.rest_url, auth=site.admin_auth, timeout=30) as client:
        titled = client.get(
            "/wp/v2/posts", params={"search": content.title, "status": "publish,draft,trash"}
        ).json()
    assert [p["id"] for p in titled] == [int(first["external_id"])]
