"""Pure publishing rules: status mapping, failure codes, idempotency keys and where images go."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from writer_images.events import SyncStatus

FailureCode = Literal[
    "bad_credentials",
    "not_authenticated",
    "forbidden",
    "rest_unavailable",
    "not_wordpress",
    "unreachable",
    "timeout",
    "rate_limited",
    "server_error",
    "media_too_large",
    "media_rejected",
    "featured_media_rejected",
    "status_mismatch",
    "unsafe_url",
    "redirected",
    "site_unknown",
    "site_deleted",
    "secret_unreadable",
    "image_missing",
    "not_found",
    "unexpected_response",
    "superseded",
    "deadline_passed",
]


@dataclass(frozen=True)
class Failure:
    code: str
    message: str

    def render(self) -> str:
        return f"[{self.code}] {self.message}"


_RENDERED = re.compile(r"^\[(?P<code>[a-z_]+)\] (?P<message>.*)$", re.DOTALL)


def parse_failure(reason: str) -> Failure:
    """Turn a job's failure reason back into code + message (reasons without a code are `unexpected_response`)."""
    match = _RENDERED.match(reason)
    if match is None:
        return Failure("unexpected_response", reason)
    return Failure(match["code"], match["message"])


def write_refusal(
    publication_id: int, newest_publication_id: int, deadline_at: datetime | None, now: datetime
) -> Failure | None:
    """Why an attempt may not write to WordPress now, or None.

    Each publication of a content to a site shares the publication key, hence the post, and has a larger id than
    the ones before it: once a newer one is known, an older one's content is stale. Past its deadline images-api
    has given up on the attempt (or re-requested it, with a later deadline). A write already made is reported
    whatever the deadline: pass `deadline_at=None`.
    """
    if newest_publication_id > publication_id:
        return Failure(
            "superseded",
            f"superseded by a newer attempt (publication {newest_publication_id} of this content)",
        )
    if deadline_at is not None and deadline_at <= now:
        return Failure(
            "deadline_passed",
            f"deadline passed before publishing (it was {deadline_at.isoformat(timespec='seconds')})",
        )
    return None


def sync_status_of(wp_status: str) -> SyncStatus:
    mapping: dict[str, SyncStatus] = {
        "publish": "published",
        "future": "scheduled",
        "draft": "draft",
        "pending": "pending",
        "private": "published",
    }
    return mapping.get(wp_status, "removed")


def job_key(publication_key: str, attempt_id: str) -> str:
    return f"publish:{publication_key}:{attempt_id}"


def site_group(site_id: int) -> str:
    return f"site:{site_id}"


def media_filename(sha256: str, content_type: str) -> str:
    """The upload's file name, hence its slug: `wi-<sha256 prefix>` lets a retry find an upload a crash hid."""
    extension = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}.get(content_type, "bin")
    return f"{media_slug(sha256)}.{extension}"


def media_slug(sha256: str) -> str:
    return f"wi-{sha256[:40].lower()}"


def fallback_post_slug(publication_key: str) -> str:
    """Slug for sites without the bridge plugin: the only stable handle we can search for."""
    return re.sub(r"[^a-z0-9-]+", "-", publication_key.lower()).strip("-")


@dataclass(frozen=True)
class PlacedImage:
    media_id: int
    url: str
    alt_text: str
    caption: str | None


def figure_block(image: PlacedImage) -> str:
    """A Gutenberg image block, as the block editor itself would save it."""
    caption = (
        f'<figcaption class="wp-element-caption">{html.escape(image.caption)}</figcaption>'
        if image.caption
        else ""
    )
    return (
        f'<!-- wp:image {{"id":{image.media_id},"sizeSlug":"large","linkDestination":"none"}} -->\n'
        f'<figure class="wp-block-image size-large"><img src="{html.escape(image.url, quote=True)}" '
        f'alt="{html.escape(image.alt_text, quote=True)}" class="wp-image-{image.media_id}"/>{caption}</figure>\n'
        "<!-- /wp:image -->"
    )


_H2_END = re.compile(r"</h2\s*>", re.IGNORECASE)
_P_END = re.compile(r"</p\s*>", re.IGNORECASE)


def place_images(article_html: str, images: list[PlacedImage]) -> str:
    """Insert in-article images (already in position order) into the article.

    Rule: the n-th in-article image (1-based, ordered by `position`) goes right after the n-th `</h2>`;
    when the article has fewer H2 headings, after the n-th `</p>`; when it has fewer paragraphs too, it is
    appended at the end. Each image is placed by its own ordinal in the ORIGINAL article, so inserting
    one image never shifts where the next one lands.
    """
    headings = [m.end() for m in _H2_END.finditer(article_html)]
    paragraphs = [m.end() for m in _P_END.finditer(article_html)]
    inserts: list[tuple[int, int, str]] = []
    for ordinal, image in enumerate(images, start=1):
        if ordinal <= len(headings):
            at = headings[ordinal - 1]
        elif ordinal <= len(paragraphs):
            at = paragraphs[ordinal - 1]
        else:
            at = len(article_html)
        inserts.append((at, ordinal, "\n" + figure_block(image) + "\n"))
    result = article_html
    for at, _, block in sorted(inserts, key=lambda i: (i[0], i[1]), reverse=True):
        result = result[:at] + block + result[at:]
    return result
