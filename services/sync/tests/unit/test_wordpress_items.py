"""How the reconciler reads a post from the WordPress REST API (`context=edit`)."""

from __future__ import annotations

from datetime import UTC, datetime

from sync.adapters.wordpress import post_state


def test_a_rest_item_becomes_a_post_state_with_its_raw_title_and_publication_key() -> None:
    item = {
        "id": 42,
        "status": "trash",
        "modified_gmt": "2026-01-02T03:04:05",
        "link": "http://wp.test/?p=42",
        "title": {"raw": "Raw <b>title</b>", "rendered": "Raw <b>title</b> rendered"},
        "meta": {"_writer_images_publication_key": "wi-7-1-2"},
    }

    state = post_state(item)

    assert (state.post_id, state.wp_status, state.title, state.publication_key) == (
        42,
        "trash",
        "Raw <b>title</b>",
        "wi-7-1-2",
    )
    assert state.modified_gmt == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_a_site_without_the_plugin_has_no_publication_key() -> None:
    for meta in ([], {}, {"_writer_images_publication_key": ""}):
        item = {
            "id": 1,
            "status": "publish",
            "modified_gmt": None,
            "link": None,
            "title": {"raw": ""},
            "meta": meta,
        }

        assert post_state(item).publication_key is None
