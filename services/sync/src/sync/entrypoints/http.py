"""HTTP: the signed webhook receiver, on-demand reconciliation, and the ops routes."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Path, Request, Response
from fastapi.routing import APIRoute
from prometheus_client import Counter
from pydantic import ValidationError
from starlette.routing import request_response

from sync.adapters.wordpress import WordPressError
from sync.domain.signature import SignatureError, SignedHeaders
from sync.service import webhooks
from sync.service.reconcile import AlreadyRunningError, Reconciler, SiteNotFoundError
from sync.settings import SyncSettings
from writer_images.http import AppError, Ok, Problem, current_request_id, ok
from writer_images.logging import bound_context, get_logger
from writer_images.urlguard import UnsafeUrlError

log = get_logger(__name__)

WEBHOOKS = Counter("wi_sync_webhooks_total", "Webhooks received by outcome", ["outcome"])
_NOT_AUTHENTIC = "Invalid webhook signature"


@dataclass(frozen=True)
class SyncContext:
    settings: SyncSettings
    pool: Any  # asyncpg.Pool
    wake_relay: Callable[[], None]  # the relay runs in this process: a commit wakes it without a NOTIFY
    sites: webhooks.SiteDirectory
    reconciler: Reconciler


async def _context(request: Request) -> SyncContext:
    context: SyncContext = request.app.state.sync
    return context


Context = Annotated[SyncContext, Depends(_context)]


def _rejected(outcome: str, status: int, message: str, **log_fields: Any) -> AppError:
    WEBHOOKS.labels(outcome).inc()
    log.warning("webhook rejected", outcome=outcome, status=status, **log_fields)
    return AppError(status, message)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    # isascii(): str.isdigit() also accepts digits that int() refuses ("²").
    if declared is not None and not (declared.isascii() and declared.isdigit() and int(declared) <= limit):
        raise _rejected("too_large", 413, f"Request body too large (limit {limit} bytes)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:  # chunked bodies declare no length: count while reading
            raise _rejected("too_large", 413, f"Request body too large (limit {limit} bytes)")
    return bytes(body)


def _signed_headers(request: Request) -> SignedHeaders:
    webhook_id = request.headers.get("webhook-id", "")
    timestamp = request.headers.get("webhook-timestamp", "")
    signature = request.headers.get("webhook-signature", "")
    if not (0 < len(webhook_id) <= 200 and timestamp and 0 < len(signature) <= 2000):
        raise _rejected("unsigned", 401, _NOT_AUTHENTIC, reason="missing webhook headers")
    return SignedHeaders(webhook_id, timestamp, signature)


class _RequestOnlyRoute(APIRoute):
    """A route whose endpoint takes the bare `Request` and returns a finished `Response`, served as Starlette
    serves a plain route: FastAPI's per-request work (dependency solving, response validation, exit stacks
    for dependencies with `yield`) has nothing to do for it and cost ~30 µs of CPU per webhook (measured in
    process: 155 → 125 µs for the app's share of a webhook). OpenAPI still documents it. Registered on the
    app itself (`add_webhook_route`): a route reached through `include_router` is served by FastAPI's wrapper."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = request_response(endpoint)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return endpoint


router = APIRouter(tags=["sync"])


async def receive_wordpress_webhook(request: Request) -> Response:
    """A signed change notice from the bridge plugin: verified, deduplicated, emitted once.

    401 for anything not authentic or not fresh (unknown site key included, so that keys cannot be probed),
    413 for an oversized body, 400 for a body that is not JSON, 422 for a signed body of the wrong shape.
    A webhook id seen before answers 200 with `duplicate: true` and emits nothing.
    """
    # The hot path (`_RequestOnlyRoute`: no dependency injection) with a pre-shaped response (the `Ok`
    # envelope), measured in bench/bench_webhooks.py against a bare HMAC endpoint.
    ctx: SyncContext = request.app.state.sync
    settings = ctx.settings
    body = await _read_body(request, settings.webhook_max_body_bytes)
    headers = _signed_headers(request)
    with bound_context(webhook_id=headers.webhook_id):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _rejected("malformed", 400, "Malformed JSON body") from None
        site_key = data.get("site_key") if isinstance(data, dict) else None
        if not isinstance(site_key, str) or "\x00" in site_key:  # no key of ours has a NUL
            raise _rejected("unsigned", 401, _NOT_AUTHENTIC, reason="no site key in the body")
        try:
            received = await webhooks.receive(
                ctx.pool,
                ctx.sites,
                ctx.wake_relay,
                site_key,
                headers,
                body,
                data,
                now=time.time(),
                tolerance_s=settings.webhook_tolerance_s,
            )
        except SignatureError as exc:
            raise _rejected(
                "not_authentic", 401, _NOT_AUTHENTIC, reason=exc.reason, site_key=site_key[:200]
            ) from None
        except ValidationError as exc:
            WEBHOOKS.labels("invalid").inc()
            errors: dict[str, list[str]] = {}
            for err in exc.errors():
                errors.setdefault(".".join(str(p) for p in err["loc"]) or "body", []).append(err["msg"])
            log.warning(
                "webhook rejected", outcome="invalid", status=422, site_key=site_key[:200], errors=errors
            )
            raise AppError(422, "Invalid webhook body", errors=errors) from None
    outcome = "duplicate" if received.duplicate else ("emitted" if received.emitted else "unchanged")
    WEBHOOKS.labels(outcome).inc()
    log.info(
        "webhook accepted",
        outcome=outcome,
        site_id=received.site.site_id,
        post_id=received.change.post_id,
        wp_status=received.change.status,
        webhook_id=headers.webhook_id,
    )
    envelope = {
        "success": True,
        "data": {"duplicate": received.duplicate, "emitted": received.emitted},
        "request_id": current_request_id(),
    }
    return Response(orjson.dumps(envelope), media_type="application/json")


def add_webhook_route(app: FastAPI) -> None:
    """The webhook receiver, on the app itself (see `_RequestOnlyRoute`)."""
    app.router.add_api_route(
        "/v1/sync/wordpress/webhook",
        receive_wordpress_webhook,
        methods=["POST"],
        response_model=Ok[dict[str, bool]],
        responses={
            400: {"model": Problem, "description": "The body is not JSON"},
            401: {"model": Problem, "description": "Not authentic or not fresh (unknown site key included)"},
            413: {"model": Problem, "description": "Body too large"},
            422: {
                "model": Problem,
                "description": "A signed body of the wrong shape, with `errors` per field",
            },
        },
        tags=["sync"],
        route_class_override=_RequestOnlyRoute,
    )


async def _require_operator(request: Request, ctx: Context) -> None:
    token = ctx.settings.operator_token
    if not token:
        raise AppError(403, "On-demand reconciliation is disabled (no operator token configured)")
    offered = request.headers.get("authorization", "")
    if not hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
        raise AppError(401, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})


@router.post(
    "/v1/sync/reconcile/{site_id}",
    response_model=Ok[dict[str, Any]],
    responses={
        401: {"model": Problem, "description": "Operator token missing or wrong"},
        403: {"model": Problem, "description": "No operator token configured"},
        404: {"model": Problem, "description": "Site not found"},
        409: {"model": Problem, "description": "A reconciliation of this site is already running"},
        422: {"model": Problem, "description": "Invalid input, with `errors` per field"},
        502: {"model": Problem, "description": "WordPress could not be read"},
    },
    dependencies=[Depends(_require_operator)],
)
async def reconcile_site(site_id: Annotated[int, Path(ge=1, le=2**62)], ctx: Context) -> Ok[dict[str, Any]]:
    """Run one reconciliation pass over a site now (operator token required) and report what it found."""
    try:
        report = await ctx.reconciler.reconcile(site_id)
    except SiteNotFoundError:
        raise AppError(404, "Site not found") from None
    except AlreadyRunningError:
        raise AppError(409, "A reconciliation of this site is already running") from None
    except (WordPressError, UnsafeUrlError) as exc:
        raise AppError(502, f"WordPress could not be read: {exc}") from None
    return ok(report.as_dict())
