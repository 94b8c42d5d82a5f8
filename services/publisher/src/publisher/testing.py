"""Helpers for tests that run the publisher's job runner in-process against a real WordPress."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx

from publisher.adapters import repository as repo
from publisher.adapters.wordpress import WordPressClients
from publisher.domain.rules import job_key, site_group
from publisher.service.publishing import Publishing
from publisher.settings import SCHEMA
from writer_images import jobs
from writer_images.blobstore import FilesystemBlobStore
from writer_images.events import ContentPublishRequested, Envelope, SiteChanged, make_event
from writer_images.outbox import Outbox
from writer_images.secrets import SecretBox
from writer_images.settings import SiteSecretsSettings
from writer_images.testing.wordpress import WordPressSite

ACCOUNT_ID = 7
SITE_ID = 1


async def in_process_publishing(
    pool: asyncpg.Pool, site: WordPressSite, clients: WordPressClients, blob_dir: Path
) -> Publishing:
    """What the publisher's jobs need, with `site` known as site SITE_ID (its editor's application password)."""
    box = SecretBox(SiteSecretsSettings().secrets_key)
    async with pool.acquire() as conn:
        await repo.upsert_site(
            conn,
            ACCOUNT_ID,
            SiteChanged(
                site_id=SITE_ID,
                site_key="site-1",
                name="Site 1",
                base_url=site.base_url,
                username=site.editor_user,
                application_password_encrypted=box.seal(site.editor_app_password),
                webhook_secret_encrypted=box.seal("unused"),
                revision=1,
            ),
        )
    return Publishing(
        pool=pool,
        schema=SCHEMA,
        outbox=Outbox(SCHEMA),
        blobs=FilesystemBlobStore(blob_dir),
        clients=clients,
        secrets=box,
    )


def request_job(request: ContentPublishRequested) -> jobs.NewJob:
    """A publish request's job exactly as the consumer enqueues it."""
    event = make_event(request, account_id=ACCOUNT_ID, correlation_id="in-process")
    return jobs.NewJob(
        dedupe_key=job_key(request.publication_key, str(request.attempt_id)),
        group_key=site_group(request.site_id),
        payload={"envelope": Envelope.model_validate_json(event.value).model_dump(mode="json")},
    )


def post_ids_with_key(site: WordPressSite, publication_key: str) -> list[int]:
    """The posts of `site` that carry `publication_key`, by the bridge plugin's lookup route, in every status."""
    with httpx.Client(base_url=site.rest_url, auth=site.admin_auth, timeout=30) as client:
        response = client.get("/writer-images/v1/posts", params={"publication_key": publication_key})
        response.raise_for_status()
        return [int(p["id"]) for p in response.json()]
