"""Publishing rules without I/O: where images go, how statuses map, how failures travel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from publisher.adapters.wordpress import classify
from publisher.domain.rules import (
    Failure,
    PlacedImage,
    fallback_post_slug,
    media_filename,
    parse_failure,
    place_images,
    sync_status_of,
    write_refusal,
)


def _image(n: int) -> PlacedImage:
    return PlacedImage(media_id=100 + n, url=f"http://wp.test/img{n}.jpg", alt_text=f"alt {n}", caption=None)


def test_the_nth_in_article_image_goes_right_after_the_nth_h2() -> None:
    article = "<p>a</p><h2>One</h2><p>b</p><h2>Two</h2><p>c</p>"

    placed = place_images(article, [_image(1), _image(2)])

    assert placed.index("wp-image-101") > placed.index("</h2>") > 0
    assert placed.index("wp-image-101") < placed.index("<p>b</p>") < placed.index("wp-image-102")
    assert placed.index("<h2>Two</h2>") < placed.index("wp-image-102") < placed.index("<p>c</p>")


def test_images_beyond_the_headings_follow_paragraphs_then_the_end() -> None:
    article = "<h2>Only</h2><p>a</p><p>b</p>"

    placed = place_images(article, [_image(1), _image(2), _image(3)])

    assert placed.index("wp-image-101") < placed.index("<p>a</p>")
    assert placed.index("<p>b</p>") < placed.index("wp-image-102")  # after the 2nd paragraph
    assert placed.rstrip().endswith("<!-- /wp:image -->") and placed.index("wp-image-102") < placed.index(
        "wp-image-103"
    )


def test_figures_are_image_blocks_with_escaped_alt_text_and_caption() -> None:
    image = PlacedImage(7, "http://wp.test/a.jpg", 'A "quoted" <alt>', "Cap & co")

    placed = place_images("", [image])

    assert '<figure class="wp-block-image size-large">' in placed
    assert 'alt="A &quot;quoted&quot; &lt;alt&gt;"' in placed and "Cap &amp; co" in placed
    assert '<!-- wp:image {"id":7,' in placed


def test_wordpress_status_maps_to_sync_status() -> None:
    assert [sync_status_of(s) for s in ("publish", "future", "draft", "pending", "trash")] == [
        "published",
        "scheduled",
        "draft",
        "pending",
        "removed",
    ]


def test_a_failure_survives_the_trip_through_a_job_reason() -> None:
    assert parse_failure(Failure("media_too_large", "upload of x.jpg: 413").render()) == Failure(
        "media_too_large", "upload of x.jpg: 413"
    )
    assert parse_failure("KeyError: 'id'").code == "unexpected_response"


def test_media_names_and_fallback_slugs_are_derived_from_stable_keys() -> None:
    assert media_filename("AB" * 32, "image/png") == f"wi-{'ab' * 20}.png"
    assert fallback_post_slug("wi-7-42-3") == "wi-7-42-3"


def _answer(status: int, body: object | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
    if body is None:
        return httpx.Response(status, text="<html>nope</html>", headers=headers)
    return httpx.Response(status, json=body, headers=headers)


def test_wordpress_answers_are_diagnosed_precisely() -> None:
    def code(response: httpx.Response) -> str | None:
        error = classify(response, what="call", username="editor")
        return None if error is None else error.code

    assert code(_answer(200, {})) is None
    assert code(_answer(401, {"code": "incorrect_password"})) == "bad_credentials"
    assert code(_answer(401, {"code": "rest_not_logged_in"})) == "not_authenticated"
    assert code(_answer(403, {"code": "rest_cannot_create"})) == "forbidden"
    assert code(_answer(404, {"code": "rest_no_route"})) == "rest_unavailable"
    assert code(_answer(404)) == "not_wordpress"
    assert code(_answer(413)) == "media_too_large"
    assert code(_answer(502)) == "server_error"
    limited = classify(_answer(429, {}, {"Retry-After": "7"}), what="call", username="editor")
    assert limited is not None and limited.retryable and limited.retry_after_s == 7.0
    refused = classify(_answer(413), what="call", username="editor")
    assert refused is not None and not refused.retryable


NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_an_attempt_may_write_before_its_deadline_while_no_newer_publication_is_known() -> None:
    assert write_refusal(5, 5, NOW + timedelta(seconds=1), NOW) is None


def test_an_attempt_of_an_older_publication_is_refused_as_superseded_whatever_its_deadline() -> None:
    refusal = write_refusal(5, 6, NOW + timedelta(minutes=10), NOW)

    assert refusal is not None and refusal.code == "superseded"
    assert refusal.message.startswith("superseded by a newer attempt")


def test_an_attempt_past_its_deadline_is_refused_but_a_write_already_made_is_still_reported() -> None:
    refusal = write_refusal(5, 5, NOW, NOW)

    assert refusal is not None and refusal.code == "deadline_passed"
    assert refusal.message.startswith("deadline passed before publishing")
    assert write_refusal(5, 5, None, NOW) is None
    assert write_refusal(5, 6, None, NOW) is not None  # ... unless a newer publication took over
