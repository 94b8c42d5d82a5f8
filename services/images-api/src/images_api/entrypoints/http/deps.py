"""Dependencies shared by the routes, as `Annotated` aliases so that route signatures read like sentences."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
import orjson
from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from images_api.adapters.media import MediaSigner
from images_api.adapters.notifier import Notifier
from images_api.adapters.page_cache import PageCache
from images_api.adapters.security import Principal, TokenError, read_access_token
from images_api.service.auth import unauthorized
from images_api.settings import ImagesApiSettings
from writer_images.http import AppError, ok
from writer_images.runtime import ServiceResources
from writer_images.secrets import SecretBox


@dataclass
class ApiState:
    settings: ImagesApiSettings
    resources: ServiceResources
    notifier: Notifier
    signer: MediaSigner
    box: SecretBox
    page_cache: PageCache


async def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(get_state)]


async def get_conn(state: State) -> AsyncIterator[asyncpg.Connection]:
    async with state.resources.pool.acquire() as conn:
        yield conn


Conn = Annotated[asyncpg.Connection, Depends(get_conn)]

_bearer = HTTPBearer(auto_error=False, description="Access token from POST /v1/auth/login")
_TOKEN_MESSAGES = {
    "missing": "Authentication token missing",
    "invalid": "Authentication token invalid",
    "expired": "Authentication token expired",
}


# Verified access tokens with their expiry: a page load makes several requests with one token, and
# verifying the signature each time is a large share of a cached page's cost.
_verified: dict[str, tuple[Principal, float]] = {}
_VERIFIED_MAX = 10_000


def verified_principal(token: str, secret: str) -> Principal:
    """The token's principal; raises TokenError (missing/invalid/expired)."""
    known = _verified.get(token)
    if known is not None and known[1] > time.time():
        return known[0]
    principal, expires_at = read_access_token(token, secret)
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified[token] = (principal, expires_at)
    return principal


async def current_principal(
    state: State, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise unauthorized(_TOKEN_MESSAGES["missing"])
    try:
        return verified_principal(credentials.credentials, state.settings.jwt_secret)
    except TokenError as exc:
        raise unauthorized(_TOKEN_MESSAGES[exc.kind]) from None


async def editor_principal(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if principal.role not in ("owner", "editor"):
        raise AppError(403, "Permission denied: viewers cannot make changes")
    return principal


async def owner_principal(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if principal.role != "owner":
        raise AppError(403, "Permission denied: only the account owner can do this")
    return principal


Reader = Annotated[Principal, Depends(current_principal)]
Editor = Annotated[Principal, Depends(editor_principal)]
Owner = Annotated[Principal, Depends(owner_principal)]


def envelope_bytes(data: Any) -> bytes:
    return orjson.dumps(ok(data).model_dump(), option=orjson.OPT_NON_STR_KEYS)


def etag_of(data_bytes: bytes) -> str:
    return '"' + hashlib.sha256(data_bytes).hexdigest()[:32] + '"'


def conditional_bytes(request: Request, data_bytes: bytes, etag: str) -> Response:
    """The envelope around already-serialized data, with its ETag: a client that has it gets 304 until
    a write changes the bytes. The request id is left out of the hash so it stays stable."""
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if_none_match = request.headers.get("if-none-match", "")
    if etag in [t.strip() for t in if_none_match.split(",")] or if_none_match.strip() == "*":
        return Response(status_code=304, headers=headers)
    body = envelope_bytes(orjson.Fragment(data_bytes))
    return Response(body, media_type="application/json", headers=headers)


def conditional_json(request: Request, data: Any) -> Response:
    data_bytes = orjson.dumps(data)
    return conditional_bytes(request, data_bytes, etag_of(data_bytes))
