"""The grouped-view page cache never keeps a page read across a write."""

from __future__ import annotations

from images_api.adapters.page_cache import CachedPage, PageCache


def test_a_notification_drops_the_accounts_pages_only() -> None:
    cache = PageCache()
    cache.put(1, "q", CachedPage(b"a", "e1"), cache.generation(1))
    cache.put(2, "q", CachedPage(b"b", "e2"), cache.generation(2))
    cache.on_notification("account:1")
    assert cache.get(1, "q") is None
    assert cache.get(2, "q") == CachedPage(b"b", "e2")


def test_a_page_read_while_a_write_committed_is_not_kept() -> None:
    cache = PageCache()
    before = cache.generation(1)
    cache.on_notification("account:1")  # the write's NOTIFY arrives while the page is being read
    cache.put(1, "q", CachedPage(b"stale", "e"), before)
    assert cache.get(1, "q") is None


def test_a_listener_reconnect_drops_everything_including_pages_in_flight() -> None:
    cache = PageCache()
    cache.put(1, "q", CachedPage(b"a", "e"), cache.generation(1))
    in_flight = cache.generation(3)
    cache.on_notification("*")
    assert cache.get(1, "q") is None
    cache.put(3, "q", CachedPage(b"a", "e"), in_flight)
    assert cache.get(3, "q") is None


def test_the_cache_is_bounded_and_can_be_disabled() -> None:
    cache = PageCache(max_entries=2)
    for key in ("a", "b", "c"):
        cache.put(1, key, CachedPage(b"x", "e"), cache.generation(1))
    assert cache.get(1, "a") is None and cache.get(1, "c") is not None
    assert not PageCache(max_entries=0).enabled
