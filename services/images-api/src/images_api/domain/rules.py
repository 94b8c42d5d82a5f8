"""The domain rules of Writer Images, pure (no I/O): one place, unit-tested.

Where the seed is silent these follow docs/architecture.md and the design note.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import unescape
from typing import Literal

ImageStatus = Literal["pending", "queued", "generating", "generated", "failed"]
OverallStatus = Literal["pending", "partial", "complete", "failed"]
SyncStatus = Literal["draft", "pending", "scheduled", "published", "synced", "failed", "removed"]

IMAGE_STATUSES: tuple[ImageStatus, ...] = ("pending", "queued", "generating", "generated", "failed")
OVERALL_STATUSES: tuple[OverallStatus, ...] = ("pending", "partial", "complete", "failed")
SYNC_STATUSES: tuple[SyncStatus, ...] = (
    "draft",
    "pending",
    "scheduled",
    "published",
    "synced",
    "failed",
    "removed",
)
# What the seed's status modal may set by hand through bulk_update.
MANUAL_STATUSES: tuple[ImageStatus, ...] = ("pending", "generated", "failed")
RUNNING_STATUSES: frozenset[str] = frozenset({"queued", "generating"})

_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"queued"}),
    "queued": frozenset({"generating", "generated", "failed"}),
    "generating": frozenset({"generated", "failed"}),
    "generated": frozenset({"queued"}),  # regenerate
    "failed": frozenset({"queued"}),  # retry
}


def overall_status(statuses: Iterable[str]) -> OverallStatus:
    """complete when every slot is generated; else failed if any failed; else partial if one is
    generated; else pending. No slots at all is pending."""
    listed = list(statuses)
    if not listed:
        return "pending"
    if all(s == "generated" for s in listed):
        return "complete"
    if any(s == "failed" for s in listed):
        return "failed"
    if any(s == "generated" for s in listed):
        return "partial"
    return "pending"


def can_transition(current: str, target: str) -> bool:
    """The generation lifecycle: pending → queued → generating → generated | failed; regenerate → queued."""
    return target in _TRANSITIONS.get(current, frozenset())


def can_set_manually(target: str) -> bool:
    """bulk_update may set pending, generated or failed by hand, from any status."""
    return target in MANUAL_STATUSES


def can_request_generation(current: str) -> bool:
    """An image already queued or generating must not be requested twice."""
    return current not in RUNNING_STATUSES


def next_revision(revision: int, requested_revision: int) -> int:
    """The revision a generation request asks for. A revision already requested once is bumped: regenerating
    must produce a new image, and the generator treats (image_id, revision) as the idempotency key."""
    return revision + 1 if requested_revision >= revision else revision


@dataclass(frozen=True)
class PublishState:
    status: str
    external_id: str | None
    external_url: str | None
    sync_status: str | None


def is_publishable(state: PublishState) -> bool:
    """The seed's rule (shouldShow), enforced server-side."""
    return (
        state.status == "published"
        and (not state.external_id or not state.external_url)
        and state.sync_status != "published"
    )


def publish_refusal(state: PublishState) -> str | None:
    """Why `publish` is refused for this content, or None when the seed's rule allows it."""
    if state.status != "published":
        return f"content status is {state.status!r}; only 'published' content can be published"
    if state.sync_status == "published":
        return "content is already published on WordPress"
    if state.external_id and state.external_url:
        return "content is already on WordPress; use republish to update the post"
    return None


def republish_refusal(state: PublishState) -> str | None:
    """Republish updates the existing post: it needs one."""
    if state.status != "published":
        return f"content status is {state.status!r}; only 'published' content can be republished"
    if not state.external_id:
        return "content has never been published; use publish"
    if state.sync_status == "removed":
        return "the WordPress post was removed; use publish to restore it"
    return None


def missing_images_refusal(statuses: Sequence[str]) -> str | None:
    """Images must be generated before publishing (unless the caller allows missing images)."""
    missing = sum(1 for s in statuses if s != "generated")
    if missing:
        return f"{missing} of {len(statuses)} images are not generated; generate them or pass allow_missing_images"
    return None


_WP_TO_SYNC: dict[str, SyncStatus] = {
    "publish": "published",
    "future": "scheduled",
    "draft": "draft",
    "pending": "pending",
    "private": "draft",
    "trash": "removed",
    "deleted": "removed",
}


def sync_status_for(wp_status: str) -> SyncStatus:
    """WordPress post status → our sync_status."""
    try:
        return _WP_TO_SYNC[wp_status]
    except KeyError:
        raise ValueError(f"unknown WordPress status {wp_status!r}") from None


def keeps_public_url(sync_status: str) -> bool:
    """Only a live (or scheduled) post has a public URL. A post moved back to draft, pending, private
    or the trash loses it, so the seed's rule offers the publish button again (which then updates or
    restores the known post)."""
    return sync_status in ("published", "scheduled")


def publication_key(account_id: int, content_id: int, site_id: int) -> str:
    """Stable for a content on a site: the publisher finds an existing post by it after a crash."""
    return f"wi-{account_id}-{content_id}-{site_id}"


# One forward scan with patterns that cannot run past the next "<" or ">": linear in the HTML. The lazy
# "<h2[^>]*>(.*?)</h2>" this replaced was retried from every "<h2" of a body without closing tags, which
# is quadratic (80 kB of "<h2>" held the event loop for 6.6 s; content HTML may be 1,000,000 characters).
_H2_OPEN = re.compile(r"<h2\b", re.IGNORECASE)
_H2_CLOSE = re.compile(r"</h2\s*>", re.IGNORECASE)
_TAG = re.compile(r"<[^<>]*>")
_SPACE = re.compile(r"\s+")
# More headings than any account has slots for are never needed (settings allow at most 10), and a
# heading becomes a prompt that travels in events: as long as a title at most.
MAX_HEADINGS = 100
MAX_HEADING_CHARS = 500


def h2_headings(html: str, limit: int = MAX_HEADINGS) -> list[str]:
    """The text of the first `limit` non-empty H2 headings, in document order (each cut to
    MAX_HEADING_CHARS)."""
    headings: list[str] = []
    pos = 0
    while len(headings) < limit:
        opening = _H2_OPEN.search(html, pos)
        if opening is None:
            break
        body_start = html.find(">", opening.end()) + 1
        if body_start == 0:
            break  # no tag after this one is closed either
        closing = _H2_CLOSE.search(html, body_start)
        if closing is None:
            break  # nor does any later heading have a closing tag
        text = _SPACE.sub(" ", unescape(_TAG.sub("", html[body_start : closing.start()]))).strip()
        if text:
            headings.append(text[:MAX_HEADING_CHARS].rstrip())
        pos = closing.end()
    return headings


@dataclass(frozen=True)
class ImageSlot:
    image_type: Literal["featured", "in_article"]
    position: int
    prompt: str
    alt_text: str


def alt_text_from_prompt(prompt: str) -> str:
    text = _SPACE.sub(" ", prompt).strip()
    return text if len(text) <= 125 else text[:124].rstrip() + "…"


def default_slots(title: str, html: str, in_article: int) -> list[ImageSlot]:
    """One featured image from the title, then `in_article` slots from the H2 headings in order
    (the title stands in when there are fewer headings than slots)."""
    featured = f"Featured image for an article titled: {title}"
    slots = [ImageSlot("featured", 0, featured, alt_text_from_prompt(title))]
    headings = h2_headings(html, limit=in_article)
    for i in range(in_article):
        subject = headings[i] if i < len(headings) else f"{title} (illustration {i + 1})"
        prompt = f"Illustration for the section: {subject}"
        slots.append(ImageSlot("in_article", i + 1, prompt, alt_text_from_prompt(subject)))
    return slots
