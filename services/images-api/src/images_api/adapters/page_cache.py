"""A per-process cache of grouped-view pages, invalidated by Postgres NOTIFY on every write.

Triggers on `contents` and `images` notify `account:<id>` in the writer's transaction (delivered at
commit, duplicates collapsed). Each process bumps that account's generation when it hears it; a page
is stored only if the generation did not move while it was being built, so a page read from an older
snapshot is never kept. When the listener reconnects, everything is dropped (notifications may have
been missed). Signed image URLs age: the key includes the URL expiry window.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from images_api.adapters.security import media_expiry


def page_key(query_string: bytes, now: float, media_url_ttl_s: int) -> tuple[bytes, int]:
    """Pages are keyed by the raw query string (the route validated it before storing; the same bytes
    always parse the same way) and by the signed-URL expiry window (the URLs inside change with it)."""
    return query_string, media_expiry(now, media_url_ttl_s)


@dataclass(frozen=True)
class CachedPage:
    data: bytes
    etag: str


class PageCache:
    def __init__(self, max_entries: int = 2048) -> None:
        self._entries: OrderedDict[tuple[int, Hashable], CachedPage] = OrderedDict()
        self._generations: dict[int, int] = {}
        self._epoch = 0  # bumped when notifications may have been missed: every account is stale
        self._max = max_entries

    def generation(self, account_id: int) -> tuple[int, int]:
        return self._epoch, self._generations.get(account_id, 0)

    @property
    def enabled(self) -> bool:
        return self._max > 0

    def get(self, account_id: int, key: Hashable) -> CachedPage | None:
        entry = self._entries.get((account_id, key))
        if entry is not None:
            self._entries.move_to_end((account_id, key))
        return entry

    def put(self, account_id: int, key: Hashable, page: CachedPage, generation: tuple[int, int]) -> None:
        if generation != self.generation(account_id):
            return  # a write committed while the page was read: do not keep it
        self._entries[(account_id, key)] = page
        self._entries.move_to_end((account_id, key))
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def on_notification(self, topic: str) -> None:
        if topic == "*":
            self._entries.clear()
            self._epoch += 1
            return
        if topic.startswith("account:"):
            account_id = int(topic.split(":", 1)[1])
            self._generations[account_id] = self._generations.get(account_id, 0) + 1
            for key in [k for k in self._entries if k[0] == account_id]:
                del self._entries[key]
