"""Cache hits of the grouped view answered before routing.

A page already in the page cache was built by the route (which validated the query string, checked
the token and read Postgres); a later request with the same token's account and the same raw query
string gets the same bytes. Serving it here skips routing and parameter validation, which are most
of a cached page's cost. Anything else — no token, a bad one, a miss — goes to the route, which
answers and fills the cache. Invalidation is the cache's (NOTIFY + read-your-writes).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from images_api.adapters.page_cache import page_key
from images_api.adapters.security import TokenError
from images_api.entrypoints.http.deps import ApiState, conditional_bytes, verified_principal
from writer_images.http import ASGIApp, Receive, Scope, Send

GROUPED_VIEW_PATH = "/v1/writer/images/content_images/"


class CachedPageFastPath:
    def __init__(self, app: ASGIApp, get_state: Callable[[], ApiState | None]) -> None:
        self.app = app
        self.get_state = get_state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == GROUPED_VIEW_PATH:
            state = self.get_state()
            if state is not None and state.page_cache.enabled and state.notifier.listening:
                page = self._cached_page(scope, state)
                if page is not None:
                    await page(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _cached_page(self, scope: Scope, state: ApiState) -> Response | None:
        authorization = dict(scope.get("headers") or []).get(b"authorization", b"").decode(errors="ignore")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            principal = verified_principal(token, state.settings.jwt_secret)
        except TokenError:
            return None
        key = page_key(scope.get("query_string", b""), time.time(), state.settings.media_url_ttl_s)
        cached = state.page_cache.get(principal.account_id, key)
        if cached is None:
            return None
        return conditional_bytes(Request(scope), cached.data, cached.etag)
