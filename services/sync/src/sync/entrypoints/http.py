"""HTTP: the signed webhook receiver, on-demand reconciliation, and the ops routes."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import Counter
from pydantic import ValidationError

from sync.adapters.wordpress import WordPressError
from sync.domain.signature import SignatureError, SignedHeaders
from sync.service import webhooks
from sync.service.reconcile import AlreadyRunningError, Reconciler, SiteNotFoundError
from sync.settings import SyncSettings
from writer_images.http import AppError, Ok, current_request_id, ok
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
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
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


router = APIRouter(tags=["sync"])


@router.post("/v1/sync/wordpress/webhook", response_model=Ok[dict[str, bool]])
async def receive_wordpress_webhook(request: Request) -> Response:
    """A signed change notice from the bridge plugin: verified, deduplicated, emitted once.

    401 for anything not authentic or not fresh (unknown site key included, so that keys cannot be probed),
    413 for an oversized body, 400 for a body that is not JSON, 422 for a signed body of the wrong shape.
    A webhook id seen before answers 200 with `duplicate: true` and emits nothing.
    """
    # The hot path: no dependency injection and a pre-shaped response (the `Ok` envelope), measured in
    # bench/bench_webhooks.py against a bare HMAC endpoint.
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
        if not isinstance(site_key, str):
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
    dependencies=[Depends(_require_operator)],
)
async def reconcile_site(site_id: int, ctx: Context) -> Ok[dict[str, Any]]:
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
