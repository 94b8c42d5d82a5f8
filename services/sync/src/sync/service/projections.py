"""What sync learns from other services' events: sites (with sealed secrets) and the posts we published."""

from __future__ import annotations

import asyncpg

from sync.adapters import repository
from sync.adapters.repository import Site
from writer_images.consumer import Handler, IncomingEvent, PermanentError
from writer_images.events import ContentPublished, SiteChanged


async def on_site_changed(conn: asyncpg.Connection, event: IncomingEvent) -> None:
    payload = event.payload
    assert isinstance(payload, SiteChanged)
    await repository.upsert_site(
        conn,
        Site(
            site_id=payload.site_id,
            account_id=event.envelope.account_id,
            site_key=payload.site_key,
            base_url=payload.base_url,
            username=payload.username,
            application_password_sealed=payload.application_password_encrypted,
            webhook_secret_sealed=payload.webhook_secret_encrypted,
            revision=payload.revision,
            deleted=payload.deleted,
        ),
    )


async def on_content_published(conn: asyncpg.Connection, event: IncomingEvent) -> None:
    payload = event.payload
    assert isinstance(payload, ContentPublished)
    if not payload.external_id.isdigit():
        raise PermanentError(f"external_id {payload.external_id!r} is not a WordPress post id")
    await repository.record_published(conn, payload.site_id, int(payload.external_id), payload.wp_status)


def handlers() -> dict[str, Handler]:
    return {"site.changed": on_site_changed, "content.published": on_content_published}
