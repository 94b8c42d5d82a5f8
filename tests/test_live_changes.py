"""The grouped view's change stream over real HTTP: a page hears its own account's changes, and only those."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import httpx

from writer_images.testing.stack import Api, Stack, create_owner

CHANGES = "/v1/writer/images/changes"


@contextlib.asynccontextmanager
async def _new_account(stack: Stack) -> AsyncIterator[Api]:
    """An owner of an account of its own, logged in (no other test touches its data)."""
    account = f"live-{uuid.uuid4().hex[:8]}"
    email, password = f"owner@{account}.test", "live-password-123"
    await asyncio.to_thread(create_owner, stack, email, password, account)
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as client:
        login = await client.post("/v1/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        client.headers["Authorization"] = f"Bearer {login.json()['data']['access_token']}"
        yield Api(client)


async def _listen(api: Api, heard: list[str], ready: asyncio.Event) -> None:
    async with api.client.stream("GET", CHANGES, timeout=60) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                heard.append(line.split(":", 1)[1].strip())
                if heard[-1] == "ready":
                    ready.set()


async def _until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_page_hears_its_accounts_changes_and_not_another_accounts(stack: Stack) -> None:
    async with _new_account(stack) as mine, _new_account(stack) as theirs:
        my_content = await mine.call("POST", "/v1/writer/contents/", json={"title": "Mine"})
        their_content = await theirs.call("POST", "/v1/writer/contents/", json={"title": "Theirs"})
        heard: list[str] = []
        ready = asyncio.Event()
        listener = asyncio.create_task(_listen(mine, heard, ready))
        try:
            await asyncio.wait_for(ready.wait(), 10)

            await theirs.call(
                "PATCH", f"/v1/writer/contents/{their_content['id']}/", json={"title": "Renamed"}
            )
            await asyncio.sleep(1.5)
            assert heard == ["ready"], "another account's change reached this account's stream"

            await mine.call("PATCH", f"/v1/writer/contents/{my_content['id']}/", json={"title": "Renamed"})
            await _until(lambda: "changed" in heard, timeout_s=10)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener


async def test_the_change_stream_needs_a_login(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api, timeout=10) as anonymous:
        response = await anonymous.get(CHANGES)

    assert response.status_code == 401 and response.json()["success"] is False
