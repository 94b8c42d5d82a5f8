"""Turning an observed post state into the `wordpress.post.changed` event."""

from __future__ import annotations

from sync.adapters.repository import Site
from sync.domain.changes import PostState, Source
from writer_images.events import OutgoingEvent, WordPressPostChanged, make_event, utcnow


def post_changed(site: Site, state: PostState, source: Source, *, correlation_id: str) -> OutgoingEvent:
    payload = WordPressPostChanged(
        site_id=site.site_id,
        post_id=str(state.post_id),
        wp_status=state.wp_status,  # validated by the pydantic model
        modified_gmt=state.modified_gmt,
        link=state.link,
        title=state.title,
        publication_key=state.publication_key,
        source=source,
        observed_at=utcnow(),
    )
    return make_event(payload, account_id=site.account_id, correlation_id=correlation_id)
