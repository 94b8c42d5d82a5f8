"""The publishing feed: a WebSocket that pushes each change of the account's publications as it happens
(requested, published, failed), the seed's "WebSocket for publishing progress".

Protocol (JSON text frames). The client's first frame is `{"access_token": "..."}` (a browser cannot put
an Authorization header on a WebSocket, and a token in the URL would end up in access logs); then the
server sends `{"type": "ready"}`, `{"type": "publication", "data": <a row of the publishing queue>}` for
every change, and `{"type": "resync"}` when changes may have been missed (reload the queue). A missing,
invalid or expired token closes the connection with code 4401, as does the token's expiry later: the
client renews its token and connects again. Woken by Postgres NOTIFY, so any API instance serves any
client; the client's own frames after the first are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from images_api.adapters.notifier import MISSED, publications_prefix
from images_api.adapters.security import Principal, TokenError, read_access_token
from images_api.entrypoints.http.deps import ApiState
from images_api.entrypoints.http.schemas import QueuedPublicationOut
from images_api.service.publishing import queued_publications

PUBLICATION_FEED_PATH = "/v1/publisher/publications/live"
AUTH_TIMEOUT_S = 10.0
UNAUTHORIZED = 4401  # an application close code (4000-4999) that reads as HTTP's 401
_SENT_MAX = 10_000  # publications whose last sent status a connection remembers

live_router = APIRouter()


class _RefusedError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@live_router.websocket(PUBLICATION_FEED_PATH)
async def publication_feed(websocket: WebSocket) -> None:
    state: ApiState = websocket.app.state.api
    await websocket.accept()
    with contextlib.suppress(WebSocketDisconnect):  # the client left: nothing more to do
        await _serve(websocket, state)


async def _serve(websocket: WebSocket, state: ApiState) -> None:
    try:
        principal, expires_at = await _authenticated(websocket, state.settings.jwt_secret)
    except _RefusedError as refused:
        await websocket.close(UNAUTHORIZED, refused.reason)
        return
    with state.notifier.feed(publications_prefix(principal.account_id)) as feed:
        await websocket.send_json({"type": "ready"})
        until_gone = asyncio.ensure_future(_until_disconnected(websocket))
        try:
            if await _push_changes(websocket, state, principal, feed, until_gone, expires_at):
                await websocket.close(UNAUTHORIZED, "Authentication token expired")
        finally:
            until_gone.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # its end is not news any more
                await until_gone


async def _authenticated(websocket: WebSocket, secret: str) -> tuple[Principal, float]:
    try:
        first = await asyncio.wait_for(websocket.receive_text(), AUTH_TIMEOUT_S)
        token = orjson.loads(first).get("access_token")
    except (TimeoutError, orjson.JSONDecodeError, AttributeError, KeyError):  # KeyError: a binary frame
        raise _RefusedError("Authentication token missing") from None
    if not isinstance(token, str) or not token:
        raise _RefusedError("Authentication token missing")
    try:
        return read_access_token(token, secret)
    except TokenError as error:
        raise _RefusedError(f"Authentication token {error.kind}") from None


async def _until_disconnected(websocket: WebSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


async def _push_changes(
    websocket: WebSocket,
    state: ApiState,
    principal: Principal,
    feed: asyncio.Queue[str],
    until_gone: asyncio.Future[None],
    expires_at: float,
) -> bool:
    """Send each change until the client leaves (False) or its token expires (True)."""
    sent: dict[int, str] = {}
    while True:
        remaining = expires_at - time.time()
        if remaining <= 0:
            return True
        next_topic = asyncio.ensure_future(feed.get())
        try:
            waiting: set[asyncio.Future[Any]] = {next_topic, until_gone}
            done, _ = await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not next_topic.done():
                next_topic.cancel()  # a cancelled get leaves its item in the queue
                with contextlib.suppress(asyncio.CancelledError):
                    await next_topic
        if next_topic.cancelled():
            if until_gone in done:
                return False
            continue
        topics = [next_topic.result()]
        while not feed.empty():  # a burst (a batch of publications) is one query
            topics.append(feed.get_nowait())
        for message in await _messages(state, principal.account_id, topics, sent):
            await websocket.send_text(orjson.dumps(message).decode())


async def _messages(
    state: ApiState, account_id: int, topics: list[str], sent: dict[int, str]
) -> list[dict[str, Any]]:
    """What notifications tell the client: `resync` if some were missed, else each publication as the queue
    shows it, once per status."""
    if MISSED in topics:
        sent.clear()
        return [{"type": "resync"}]
    ids = list(dict.fromkeys(int(topic.rsplit(":", 1)[1]) for topic in topics))
    async with state.resources.pool.acquire() as conn:
        rows = await queued_publications(conn, account_id, ids)
    messages = []
    for row in rows:
        if sent.get(row["publication_id"]) == row["status"]:
            continue  # a notification that changed nothing this client saw
        if len(sent) >= _SENT_MAX:
            sent.clear()
        sent[row["publication_id"]] = row["status"]
        data = QueuedPublicationOut.model_validate(row).model_dump(mode="json")
        messages.append({"type": "publication", "data": data})
    return messages
