"""Cross-process wake-ups through Postgres LISTEN/NOTIFY.

Writers call `notify(conn, topic)` inside their transaction (delivered at commit). Each API process
holds ONE listening connection and fans the notifications out to in-process waiters, so SSE streams,
WebSocket feeds and `?wait=true` requests wake on any instance without a connection each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import TypeVar

import asyncpg

from writer_images.logging import get_logger

log = get_logger(__name__)
CHANNEL = "images_api_changes"
Member = TypeVar("Member")


async def notify(conn: asyncpg.Connection, topic: str) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, topic)


def account_topic(account_id: int) -> str:
    """Notified by the `contents` and `images` triggers on every change of an account's grouped view."""
    return f"account:{account_id}"


def task_topic(task_id: object) -> str:
    return f"task:{task_id}"


def publication_topic(account_id: int, publication_id: int) -> str:
    """Notified when a publication is requested and when it ends; `publications_prefix` covers an account's."""
    return f"{publications_prefix(account_id)}{publication_id}"


def publications_prefix(account_id: int) -> str:
    return f"publication:{account_id}:"


MISSED = "*"  # what a feed receives when notifications may have been missed (the listener reconnected)


class Notifier:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._feeds: dict[str, set[asyncio.Queue[str]]] = defaultdict(set)
        self._conn: asyncpg.Connection | None = None
        self._stopping = asyncio.Event()
        self._observers: list[Callable[[str], None]] = []
        self.listening = False

    def observe(self, callback: Callable[[str], None]) -> None:
        """Called with every notification's topic, and with "*" when notifications may have been missed."""
        self._observers.append(callback)

    async def run(self) -> None:
        """Keep one listening connection open; reconnect after a database outage."""
        while not self._stopping.is_set():
            try:
                self._conn = await asyncpg.connect(self._dsn)
                await self._conn.add_listener(CHANNEL, self._on_notify)
                self.listening = True
                self._wake_all()  # anything may have changed while we were not listening
                while not self._stopping.is_set() and not self._conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), 1.0)
            except Exception as exc:
                log.warning("notification listener lost; reconnecting", error=repr(exc))
                await asyncio.sleep(1.0)
            finally:
                self.listening = False
                if self._conn is not None:
                    with contextlib.suppress(Exception):
                        await self._conn.close()
                    self._conn = None

    def stop(self) -> None:
        self._stopping.set()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        for observer in self._observers:
            observer(payload)
        for event in self._waiters.get(payload, ()):
            event.set()
        for feed in self._feeds.get(payload[: payload.rfind(":") + 1], ()):
            feed.put_nowait(payload)

    def _wake_all(self) -> None:
        for observer in self._observers:
            observer(MISSED)
        for events in self._waiters.values():
            for event in events:
                event.set()
        for feeds in self._feeds.values():
            for feed in feeds:
                feed.put_nowait(MISSED)

    @contextlib.contextmanager
    def subscribe(self, topic: str) -> Iterator[asyncio.Event]:
        with _enrolled(self._waiters, topic, asyncio.Event()) as event:
            yield event

    @contextlib.contextmanager
    def feed(self, prefix: str) -> Iterator[asyncio.Queue[str]]:
        """Every topic notified under `prefix` (up to and including its last ":"), in order, and `MISSED`
        when some may have been lost."""
        if not prefix.endswith(":"):
            raise ValueError(f"a feed's prefix ends with ':' (got {prefix!r})")
        queue: asyncio.Queue[str] = asyncio.Queue()
        with _enrolled(self._feeds, prefix, queue):
            yield queue

    def feeds_under(self, prefix: str) -> int:
        """How many feeds listen under `prefix` now."""
        return len(self._feeds.get(prefix, ()))


@contextlib.contextmanager
def _enrolled(registry: dict[str, set[Member]], key: str, member: Member) -> Iterator[Member]:
    """`member` listed under `key` for the block; a key is forgotten with its last member."""
    registry[key].add(member)
    try:
        yield member
    finally:
        registry[key].discard(member)
        if not registry[key]:
            del registry[key]


async def wait_for(event: asyncio.Event, timeout_s: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout_s)
    except TimeoutError:
        return False
    event.clear()
    return True


__all__ = [
    "CHANNEL",
    "MISSED",
    "Notifier",
    "account_topic",
    "notify",
    "publication_topic",
    "publications_prefix",
    "task_topic",
    "wait_for",
]
