"""The domain rules of docs/architecture.md, as a specification."""

from __future__ import annotations

import itertools
import time

import pytest

from images_api.domain import rules
from images_api.domain.rules import PublishState


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], "pending"),
        (["pending", "pending"], "pending"),
        (["queued", "generating"], "pending"),
        (["generated", "pending"], "partial"),
        (["generated", "generated"], "complete"),
        (["generated", "failed"], "failed"),
        (["failed", "pending"], "failed"),
    ],
)
def test_overall_status(statuses: list[str], expected: str) -> None:
    assert rules.overall_status(statuses) == expected


def test_image_lifecycle_and_regenerate() -> None:
    assert rules.can_transition("pending", "queued")
    assert rules.can_transition("queued", "generating")
    assert rules.can_transition("generating", "generated")
    assert rules.can_transition("generating", "failed")
    assert rules.can_transition("generated", "queued")  # regenerate
    assert not rules.can_transition("pending", "generated")
    assert not rules.can_request_generation("queued")
    assert not rules.can_request_generation("generating")
    assert rules.can_request_generation("failed")


def test_bulk_update_may_set_only_the_modal_statuses() -> None:
    assert [s for s in rules.IMAGE_STATUSES if rules.can_set_manually(s)] == [
        "pending",
        "generated",
        "failed",
    ]


def test_publishability_is_the_seed_rule() -> None:
    for status, ext_id, ext_url, sync in itertools.product(
        ["draft", "published"], [None, "12"], [None, "https://x/p"], [None, *rules.SYNC_STATUSES]
    ):
        state = PublishState(status, ext_id, ext_url, sync)
        seed = status == "published" and (not ext_id or not ext_url) and (not sync or sync != "published")
        assert rules.is_publishable(state) == seed
        assert (rules.publish_refusal(state) is None) == seed


def test_republish_is_its_own_action_and_needs_a_post() -> None:
    assert rules.republish_refusal(PublishState("published", "12", "https://x/p", "published")) is None
    assert rules.republish_refusal(PublishState("published", None, None, None)) is not None
    assert rules.republish_refusal(PublishState("published", "12", None, "removed")) is not None


@pytest.mark.parametrize(
    ("wp", "sync"),
    [
        ("publish", "published"),
        ("future", "scheduled"),
        ("draft", "draft"),
        ("pending", "pending"),
        ("private", "draft"),
        ("trash", "removed"),
        ("deleted", "removed"),
    ],
)
def test_wordpress_status_maps_to_sync_status(wp: str, sync: str) -> None:
    assert rules.sync_status_for(wp) == sync


def test_default_prompts_come_from_the_title_and_the_h2_headings_in_order() -> None:
    slots = rules.default_slots("Lisbon", "<h2>Trams &amp; hills</h2><p>x</p><H2 class='a'>Food</H2>", 3)
    assert [s.image_type for s in slots] == ["featured", "in_article", "in_article", "in_article"]
    assert "Lisbon" in slots[0].prompt
    assert "Trams & hills" in slots[1].prompt
    assert "Food" in slots[2].prompt
    assert "Lisbon" in slots[3].prompt
    assert [s.position for s in slots] == [0, 1, 2, 3]


def test_headings_beyond_the_slots_are_not_needed_and_a_long_one_is_cut() -> None:
    html = "<h2>Section</h2>" * 100_000 + "<h2>" + "word " * 1_000 + "</h2>"
    assert rules.h2_headings(html, limit=3) == ["Section"] * 3
    assert len(rules.h2_headings(html)) == rules.MAX_HEADINGS
    assert [len(h) for h in rules.h2_headings("<h2>" + "x" * 5_000 + "</h2>")] == [rules.MAX_HEADING_CHARS]


@pytest.mark.parametrize(
    "html",
    [
        "<h2>" * 250_000,  # openings that never close: the shape that was quadratic
        "<h2 " * 250_000,  # openings that never end
        "<h2>" + "<" * 999_990 + "</h2>",  # a heading full of tag starts
        "</h2 " * 200_000,  # closings that never end
        "<h2>x</h2" + " " * 999_990,  # a closing that never ends, after a long run of spaces
        "<h2>" + "&#" * 499_995 + "</h2>",  # entity starts
    ],
    ids=["unclosed", "unended", "tag-starts", "unended-closings", "spaces", "entities"],
)
def test_headings_of_the_largest_body_are_read_in_linear_time(html: str) -> None:
    """1,000,000 characters (what the schema allows) in a few milliseconds; a scan that went back over the
    body for each "<h2" (quadratic) needed 6.6 s for 80 kB of these and would need hours here."""
    assert len(html) >= 999_990
    started = time.process_time()
    rules.default_slots("Lisbon", html, 10)
    assert time.process_time() - started < 1.0


def test_publication_key_is_stable() -> None:
    assert rules.publication_key(1, 42, 7) == "wi-1-42-7"


def test_only_live_or_scheduled_posts_keep_their_public_url() -> None:
    kept = {s for s in rules.SYNC_STATUSES if rules.keeps_public_url(s)}
    assert kept == {"published", "scheduled"}
    # a post drafted in WordPress becomes publishable again by the seed's rule
    drafted = PublishState("published", "12", None, rules.sync_status_for("draft"))
    assert rules.is_publishable(drafted)


@pytest.mark.parametrize(
    ("revision", "requested_revision", "asked"),
    [
        (1, 0, 1),  # never requested: the current revision
        (1, 1, 2),  # requested once already: a regeneration is a new revision
        (3, 3, 4),
    ],
)
def test_a_generation_request_asks_for_a_new_revision_once_the_current_one_was_requested(
    revision: int, requested_revision: int, asked: int
) -> None:
    assert rules.next_revision(revision, requested_revision) == asked
