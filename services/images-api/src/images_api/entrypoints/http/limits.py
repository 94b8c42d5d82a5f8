"""Request body limit: 413 in the envelope before a large body is read into memory."""

from __future__ import annotations

from collections.abc import Callable

from writer_images.http import ASGIApp, Message, Receive, Scope, Send, problem_response


class BodySizeLimitMiddleware:
    """Refuses bodies whose Content-Length exceeds the limit (uvicorn itself bounds chunked bodies
    only by time, so clients of this API send Content-Length, as httpx and browsers do)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = dict(scope.get("headers") or []).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.max_bytes:
                response = problem_response(413, f"Request body too large (at most {self.max_bytes} bytes)")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class InvalidatePagesOnWriteMiddleware:
    """Read-your-writes on this instance: when a write request answers (its transaction committed),
    drop the cached pages at once instead of waiting for the NOTIFY round trip. Other instances
    hear the NOTIFY within milliseconds."""

    def __init__(self, app: ASGIApp, on_write: Callable[[], None]) -> None:
        self.app = app
        self.on_write = on_write

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return

        async def send_and_invalidate(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.on_write()
            await send(message)

        await self.app(scope, receive, send_and_invalidate)
