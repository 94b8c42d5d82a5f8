"""The one HTTP envelope and error mapping for every FastAPI service.

Success: `{"success": true, "data": ..., "request_id": "..."}`.
Failure: `{"success": false, "error": "...", "errors": {field: [messages]} | null, "request_id": "..."}`.
Every response carries `X-Request-ID` (taken from the request when it is sane, else generated),
and every log line written while handling the request carries `request_id`.
"""

from __future__ import annotations

import contextvars
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Generic, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from writer_images import metrics
from writer_images.events import EventTooLargeError
from writer_images.logging import bind_context, get_logger

log = get_logger(__name__)

T = TypeVar("T")
REQUEST_ID_HEADER = "X-Request-ID"
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def current_request_id() -> str:
    return _request_id.get()


class Ok(BaseModel, Generic[T]):
    """Success envelope."""

    success: bool = True
    data: T
    request_id: str


class Problem(BaseModel):
    """Failure envelope."""

    success: bool = False
    error: str = Field(examples=["Content not found"])
    errors: dict[str, list[str]] | None = Field(
        default=None, examples=[{"status": ["Input should be 'pending'"]}]
    )
    request_id: str


def ok(data: T) -> Ok[T]:
    return Ok[T](data=data, request_id=current_request_id())


class AppError(Exception):
    """A failure with a status the client should see (404, 409, 422, 429, ...)."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        errors: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.errors = errors
        self.headers = headers


def not_found(what: str) -> AppError:
    return AppError(404, f"{what} not found")


def conflict(message: str, *, errors: dict[str, list[str]] | None = None) -> AppError:
    return AppError(409, message, errors=errors)


def invalid(field: str, message: str) -> AppError:
    return AppError(422, f"Invalid input: {field}: {message}", errors={field: [message]})


def problem_response(
    status_code: int,
    message: str,
    errors: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(error=message, errors=errors, request_id=current_request_id())
    return JSONResponse(body.model_dump(), status_code=status_code, headers=headers)


def _field_errors(exc: RequestValidationError) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for err in exc.errors():
        location = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        errors.setdefault(".".join(location) or "body", []).append(str(err.get("msg", "invalid")))
    return errors


_STATUS_MESSAGES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Permission denied",
    404: "Not found",
    405: "Method not allowed",
    413: "Request body too large",
    429: "Too many requests",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return problem_response(exc.status_code, exc.message, exc.errors, exc.headers)

    @app.exception_handler(EventTooLargeError)
    async def _event_too_large(_: Request, exc: EventTooLargeError) -> JSONResponse:
        # What the request asked for would be an event no broker takes (a huge article to publish): the
        # request is too large for the system, whatever its own byte count.
        return problem_response(413, f"Too large to process: {exc}")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        summary = "; ".join(f"{k}: {v[0]}" for k, v in errors.items())
        return problem_response(422, f"Invalid input: {summary}", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else None
        message = detail or _STATUS_MESSAGES.get(exc.status_code, "Request failed")
        return problem_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", error=repr(exc))
        return problem_response(500, "Server error occurred")


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestContextMiddleware:
    """Pure ASGI middleware (streaming-safe): request id in, request id out, latency measured."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode(errors="ignore")
        request_id = incoming if _SANE_REQUEST_ID.match(incoming) else str(uuid.uuid4())
        token = _request_id.set(request_id)
        bind_context(request_id=request_id)
        started = time.perf_counter()
        status_holder = {"status": 500}
        started_holder = {"started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                started_holder["started"] = True
                status_holder["status"] = message["status"]
                headers = list(message.get("headers") or [])
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Answer here, while the request id is still bound: Starlette's outermost error
            # middleware would answer after this middleware reset it (500s without a request id).
            if started_holder["started"]:
                raise
            log.exception("unhandled error", error=repr(exc))
            await problem_response(500, "Server error occurred")(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            metrics.HTTP_LATENCY.labels(
                self.service, scope.get("method", ""), path, status_holder["status"]
            ).observe(time.perf_counter() - started)
            _request_id.reset(token)


def install(app: FastAPI, service: str) -> None:
    """Envelope errors, request ids and metrics on a FastAPI app."""
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, service=service)


def metrics_response() -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
