"""The reconciler: what webhooks missed, read back from WordPress.

A pass over one site (1) pages through posts modified after the site's watermark, oldest first, and emits
`wordpress.post.changed` for every post whose state is news, advancing the watermark in the same
transaction as each page's events; (2) checks every post we published that is not known to be deleted,
100 ids per request: a post missing from the listing and answering 404/410 on its own URL is `deleted`.

The watermark is WordPress's own `modified_gmt` (never our clock), less an overlap because
`modified_after` is exclusive and WordPress keeps whole seconds; what was already seen emits nothing.
WordPress compares `modified_after` with local time: near the hour when the site's clocks go back, a pass
starts that much earlier (`sync.domain.site_time`); elsewhere it starts at the watermark.
The first pass of a site (no watermark) sets a baseline: it emits only for posts we already know or that
carry a publication key, not for the site's whole history.

One pass per site at a time, across processes: a session advisory lock held on the pass's connection (a
dead process releases it with its connection).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
from prometheus_client import Counter

from sync.adapters import repository
from sync.adapters.repository import Site
from sync.adapters.wordpress import WordPressClient, WordPressError
from sync.domain.changes import WORDPRESS_STATUSES, PostState
from sync.domain.site_time import listing_start
from sync.service.changes import post_changed
from sync.service.webhooks import SecretOpener
from sync.settings import SyncSettings
from writer_images.logging import get_logger
from writer_images.outbox import Outbox
from writer_images.retry import RetryPolicy
from writer_images.urlguard import check_url

log = get_logger(__name__)

PASSES = Counter("wi_sync_reconcile_passes_total", "Scheduled reconciliation passes by outcome", ["outcome"])
EMITTED = Counter(
    "wi_sync_reconcile_emitted_total", "Changes the reconciler found that webhooks had not told"
)

_LOCK_NAMESPACE = 0x5359_4E43  # "SYNC": advisory-lock class for reconciler passes
_INT4_MAX = 0x7FFF_FFFF


def _lock_key(site_id: int) -> int:
    """The lock's second key, an int4 like the first: a site id beyond it (ids are bigint) is folded onto it.
    Two sites that share a key only take turns (one pass is skipped as already running)."""
    return site_id if site_id <= _INT4_MAX else (site_id ^ (site_id >> 31)) & _INT4_MAX


class SiteNotFoundError(Exception):
    pass


class AlreadyRunningError(Exception):
    pass


@dataclass
class ReconcileReport:
    site_id: int
    pages: int = 0
    posts_seen: int = 0
    checked: int = 0
    emitted: int = 0
    deleted: list[int] = field(default_factory=list)
    watermark: datetime | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "site_id": self.site_id,
            "pages": self.pages,
            "posts_seen": self.posts_seen,
            "checked": self.checked,
            "emitted": self.emitted,
            "deleted": self.deleted,
            "watermark": self.watermark.isoformat() if self.watermark else None,
        }


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Reconciler:
    def __init__(
        self, pool: asyncpg.Pool, outbox: Outbox, secrets: SecretOpener, settings: SyncSettings
    ) -> None:
        self._pool = pool
        self._outbox = outbox
        self._secrets = secrets
        self._settings = settings
        self.backoff = RetryPolicy(
            max_attempts=1_000_000,
            base_s=settings.reconcile_backoff_base_s,
            max_s=settings.reconcile_backoff_max_s,
        )

    async def reconcile(self, site_id: int) -> ReconcileReport:
        """One pass over a site; raises SiteNotFoundError, AlreadyRunningError, WordPressError or UnsafeUrlError."""
        async with self._pool.acquire() as conn:
            locked = await conn.fetchval(
                "SELECT pg_try_advisory_lock($1, $2)", _LOCK_NAMESPACE, _lock_key(site_id)
            )
            if not locked:
                raise AlreadyRunningError(f"site {site_id} is being reconciled elsewhere")
            try:
                return await self._pass(conn, site_id)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1, $2)", _LOCK_NAMESPACE, _lock_key(site_id))

    async def run_scheduled(self, site_id: int) -> ReconcileReport | None:
        """A pass with its bookkeeping: success schedules the next pass, failure backs off (per site)."""
        try:
            report = await self.reconcile(site_id)
        except (AlreadyRunningError, SiteNotFoundError):
            PASSES.labels("skipped").inc()
            return None
        except Exception as exc:
            state = await repository.reconcile_state(self._pool, site_id)
            retry_after = exc.retry_after_s if isinstance(exc, WordPressError) else None
            delay = self.backoff.delay(state.failures + 1, retry_after)
            PASSES.labels("failed").inc()
            failures = await repository.record_failure(
                self._pool, site_id, f"{type(exc).__name__}: {exc}", delay
            )
            log.warning(
                "reconciliation failed; backing off",
                site_id=site_id,
                error=f"{type(exc).__name__}: {exc}",
                failures=failures,
                retry_in_s=round(delay, 1),
            )
            return None
        await repository.record_success(self._pool, site_id, self._settings.reconcile_interval_s)
        PASSES.labels("succeeded").inc()
        if report.emitted:
            log.info("reconciliation emitted changes", **report.as_dict())
        return report

    async def _pass(self, conn: asyncpg.Connection, site_id: int) -> ReconcileReport:
        site = await repository.site_by_id(conn, site_id)
        if site is None or site.deleted:
            raise SiteNotFoundError(f"site {site_id} is not known to sync")
        await check_url(site.base_url, allow_private=self._settings.allow_private_urls)
        password = self._secrets.open(site.application_password_sealed)
        correlation_id = f"reconcile:{site_id}:{uuid.uuid4().hex[:12]}"
        report = ReconcileReport(site_id)
        async with WordPressClient(
            site.base_url, site.username, password, timeout_s=self._settings.reconcile_timeout_s
        ) as wordpress:
            await wordpress.check_credentials()
            await self._scan_changes(conn, site, wordpress, report, correlation_id)
            await self._check_ours(conn, site, wordpress, report, correlation_id)
        return report

    async def _scan_changes(
        self,
        conn: asyncpg.Connection,
        site: Site,
        wordpress: WordPressClient,
        report: ReconcileReport,
        correlation_id: str,
    ) -> None:
        state = await repository.reconcile_state(conn, site.site_id)
        baseline = state.modified_after is None
        bound, page = state.modified_after, 1
        if bound is not None:
            bound = listing_start(
                bound,
                await wordpress.time_zone(),
                unknown_zone_setback=timedelta(seconds=self._settings.reconcile_unknown_zone_setback_s),
            )
        per_page, overlap = (
            self._settings.reconcile_page_size,
            timedelta(seconds=self._settings.reconcile_overlap_s),
        )
        for _ in range(self._settings.reconcile_max_pages):
            posts = await wordpress.changed_posts(bound, page=page, per_page=per_page)
            if not posts:
                break
            modified = [p.modified_gmt for p in posts if p.modified_gmt is not None]
            next_bound = max(modified) - overlap if modified else bound
            moves_on = next_bound is not None and (bound is None or next_bound > bound)
            async with conn.transaction():
                await self._record(conn, site, posts, report, correlation_id, baseline=baseline)
                if moves_on:
                    assert next_bound is not None
                    await repository.advance_watermark(conn, site.site_id, next_bound)
            report.pages += 1
            report.posts_seen += len(posts)
            if len(posts) < per_page:
                break
            # Keyset paging on modified_gmt (stable while editors keep editing); page numbers only when a
            # whole page shares one second.
            bound, page = (next_bound, 1) if moves_on else (bound, page + 1)
        report.watermark = (await repository.reconcile_state(conn, site.site_id)).modified_after

    async def _check_ours(
        self,
        conn: asyncpg.Connection,
        site: Site,
        wordpress: WordPressClient,
        report: ReconcileReport,
        correlation_id: str,
    ) -> None:
        for chunk in _chunks(await repository.posts_to_check(conn, site.site_id), 100):
            found = {p.post_id: p for p in await wordpress.posts_by_id(chunk)}
            for post_id in (i for i in chunk if i not in found):
                # Missing from the listing: gone, or in a status the listing does not name.
                alone = await wordpress.post(post_id)
                # A deletion has no modification time of its own; None never loses to a stale one.
                found[post_id] = alone or PostState(post_id, "deleted", None, None, None, None)
            async with conn.transaction():
                await self._record(conn, site, list(found.values()), report, correlation_id, baseline=False)
            report.checked += len(chunk)

    async def _record(
        self,
        conn: asyncpg.Connection,
        site: Site,
        posts: Sequence[PostState],
        report: ReconcileReport,
        correlation_id: str,
        *,
        baseline: bool,
    ) -> None:
        usable = [p for p in posts if p.wp_status in WORDPRESS_STATUSES]
        news = await repository.record_observations(conn, site.site_id, usable)
        latest = {p.post_id: p for p in usable}
        emit = [
            latest[post_id]
            for post_id, was_unknown in news.items()
            if not (baseline and was_unknown and latest[post_id].publication_key is None)
        ]
        events = [post_changed(site, p, "reconciler", correlation_id=correlation_id) for p in emit]
        await self._outbox.write(conn, events)
        report.emitted += len(events)
        EMITTED.inc(len(events))
        report.deleted += [p.post_id for p in emit if p.wp_status == "deleted"]
