from __future__ import annotations

import httpx
from fastapi import FastAPI
from pydantic import BaseModel, Field

from writer_images.events import EventTooLargeError
from writer_images.http import AppError, Ok, install, ok


class Thing(BaseModel):
    name: str = Field(min_length=1)
    count: int


def _app() -> FastAPI:
    app = FastAPI()
    install(app, "test")

    @app.post("/things")
    async def create(thing: Thing) -> Ok[Thing]:
        return ok(thing)

    @app.get("/things/{thing_id}")
    async def get(thing_id: int) -> Ok[Thing]:
        raise AppError(404, "Thing not found")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    @app.post("/huge")
    async def huge() -> None:
        raise EventTooLargeError("content.publish.requested", 3_000_000)

    return app


async def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=_app(), raise_app_exceptions=False), base_url="http://t"
    )


async def test_success_is_wrapped_with_the_request_id_also_in_the_header() -> None:
    async with await _client() as client:
        response = await client.post(
            "/things", json={"name": "a", "count": 1}, headers={"X-Request-ID": "req-123"}
        )
    assert response.status_code == 200
    assert response.json() == {"success": True, "data": {"name": "a", "count": 1}, "request_id": "req-123"}
    assert response.headers["X-Request-ID"] == "req-123"


async def test_validation_errors_are_422_with_errors_per_field() -> None:
    async with await _client() as client:
        response = await client.post("/things", json={"name": "", "count": "many"})
    body = response.json()
    assert response.status_code == 422
    assert body["success"] is False
    assert set(body["errors"]) == {"name", "count"}
    assert body["request_id"] == response.headers["X-Request-ID"]


async def test_app_errors_keep_their_status_and_message() -> None:
    async with await _client() as client:
        response = await client.get("/things/7")
    assert response.status_code == 404
    assert response.json()["error"] == "Thing not found"


async def test_unknown_routes_and_bad_path_params_use_the_envelope() -> None:
    async with await _client() as client:
        missing = await client.get("/nowhere")
        bad = await client.get("/things/not-a-number")
    assert (missing.status_code, missing.json()["success"]) == (404, False)
    assert (bad.status_code, list(bad.json()["errors"])) == (422, ["thing_id"])


async def test_a_request_that_would_make_an_event_too_large_for_the_broker_is_413() -> None:
    async with await _client() as client:
        response = await client.post("/huge")
    assert response.status_code == 413
    assert response.json()["error"].startswith("Too large to process: content.publish.requested would be")


async def test_unexpected_errors_are_500_without_internals() -> None:
    async with await _client() as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert "secret internals" not in response.text
    assert response.json()["error"] == "Server error occurred"


async def test_insane_request_ids_are_replaced() -> None:
    async with await _client() as client:
        response = await client.post(
            "/things", json={"name": "a", "count": 1}, headers={"X-Request-ID": "x" * 500}
        )
    assert len(response.headers["X-Request-ID"]) == 36


async def test_unexpected_errors_carry_the_request_id_in_body_and_header() -> None:
    async with await _client() as client:
        response = await client.get("/boom", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.json()["request_id"] == "req-500"
    assert response.headers["X-Request-ID"] == "req-500"
