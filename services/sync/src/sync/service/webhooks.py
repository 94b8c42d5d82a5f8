"""Receiving a bridge-plugin webhook: authenticate it, dedupe it, and emit the change once."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from sync.adapters import repository
from sync.adapters.repository import Site
from sync.domain import signature
from sync.domain.changes import PostState, WebhookBody
from sync.domain.signature import SignatureError, SignedHeaders
from sync.service.changes import post_changed
from writer_images.secrets import SecretBox

# Verified against when the site is unknown, so that an unknown key costs the same as a wrong signature.
_DECOY_SECRET = secrets.token_hex(32)


class SecretOpener:
    """Opens sealed secrets once per sealed value (Fernet costs more than the HMAC itself)."""

    def __init__(self, box: SecretBox, max_entries: int = 4096) -> None:
        self._box = box
        self._opened: dict[str, str] = {}
        self._max_entries = max_entries

    def open(self, sealed: str) -> str:
        opened = self._opened.get(sealed)
        if opened is None:
            opened = self._box.open(sealed)
            if len(self._opened) >= self._max_entries:
                self._opened.clear()
            self._opened[sealed] = opened
        return opened


class SiteDirectory:
    """Live sites by key, cached in this process. A cached site is only a hint: the statement that accepts
    a webhook re-checks the site's revision, so a rotated secret or a deleted site is never trusted from a
    stale cache (see `receive`). Unknown keys are not cached (they would let anyone fill the memory)."""

    def __init__(self, pool: asyncpg.Pool, opener: SecretOpener, max_entries: int = 10_000) -> None:
        self._pool = pool
        self.opener = opener
        self._by_key: dict[str, Site] = {}
        self._max_entries = max_entries

    async def find(self, site_key: str, *, refresh: bool = False) -> Site | None:
        site = None if refresh else self._by_key.get(site_key)
        if site is None:
            site = await repository.live_site_by_key(self._pool, site_key)
            self._by_key.pop(site_key, None)
            if site is not None:
                if len(self._by_key) >= self._max_entries:
                    self._by_key.clear()
                self._by_key[site_key] = site
        return site


async def authenticate(
    directory: SiteDirectory, site_key: str, headers: SignedHeaders, body: bytes, *, refresh: bool
) -> Site:
    """The live site whose secret signed this body; else `SignatureError`."""
    site = await directory.find(site_key, refresh=refresh)
    secret = directory.opener.open(site.webhook_secret_sealed) if site is not None else _DECOY_SECRET
    signature.verify(secret, headers, body)
    if site is None:
        raise SignatureError("unknown site key")
    return site


@dataclass(frozen=True)
class Received:
    site: Site
    change: WebhookBody
    duplicate: bool  # this webhook id was seen before: nothing done
    emitted: bool  # the post's state changed: `wordpress.post.changed` is in the outbox


async def receive(
    pool: asyncpg.Pool,
    directory: SiteDirectory,
    wake_relay: Callable[[], None],
    site_key: str,
    headers: SignedHeaders,
    body: bytes,
    data: dict[str, Any],
    *,
    now: float,
    tolerance_s: int,
) -> Received:
    """Authenticate (SignatureError), validate (pydantic's ValidationError), then in ONE statement record the
    delivery, the post's new state and, when it is news, its event; then wake this process's relay. Answer
    only after that commit."""
    signature.check_timestamp(headers.timestamp, now=now, tolerance_s=tolerance_s)
    for refresh in (False, True):
        try:
            site = await authenticate(directory, site_key, headers, body, refresh=refresh)
        except SignatureError:
            if refresh:
                raise
            continue  # the cached secret may have been rotated: ask the database once
        change = WebhookBody.model_validate(data)
        state = PostState(
            post_id=change.post_id,
            wp_status=change.status,
            modified_gmt=change.modified_gmt,
            link=change.link,
            title=change.title,
            publication_key=change.publication_key,
        )
        event = post_changed(site, state, "webhook", correlation_id=f"webhook:{headers.webhook_id}")
        outcome = await repository.record_delivery(pool, headers.webhook_id, site, state, event)
        if outcome.news:
            wake_relay()
        if outcome.site_current:
            return Received(site, change, duplicate=not outcome.fresh, emitted=outcome.news)
        # The cached site is older than the database's: authenticate again, from the database.
    raise SignatureError("the site changed while the webhook was handled")
