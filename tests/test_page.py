"""The Writer Images page in a real browser (Debian's Chromium) against the whole running product."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from writer_images.testing.stack import DEMO_EMAIL, DEMO_PASSWORD, Api, Stack, use_local_provider

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("WI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), f"Chromium missing at {CHROMIUM}: run `make system-deps`"
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def _signed_in(browser: Browser, stack: Stack) -> Page:
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await page.goto(f"{stack.api}/")
    await page.fill("input[name=email]", DEMO_EMAIL)
    await page.fill("input[name=password]", DEMO_PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("#app")).to_be_visible()
    return page


async def _seed(api: Api, prefix: str, count: int) -> list[dict[str, Any]]:
    """`count` contents, each with one featured and two in-article image slots."""
    await use_local_provider(api, in_article_slots=2)
    html = "<p>Intro</p><h2>One</h2><p>…</p><h2>Two</h2>"
    return [
        await api.call(
            "POST",
            "/v1/writer/contents/",
            expect=201,
            json={"title": f"{prefix} {i:02d}", "html": html, "status": "draft"},
        )
        for i in range(count)
    ]


async def test_search_paginates_on_the_server_and_generation_shows_live_progress(
    browser: Browser, stack: Stack, owner_api: Api, tmp_path: Path
) -> None:
    prefix = f"Page test {uuid.uuid4().hex[:6]}"
    await _seed(owner_api, prefix, 12)
    page = await _signed_in(browser, stack)

    await page.fill("#search", prefix)
    await expect(page.locator("#page-info")).to_have_text("Page 1 of 2 · 12 items", timeout=10_000)
    await expect(page.locator("#rows tr")).to_have_count(10)
    await page.click("#next")
    await expect(page.locator("#rows tr")).to_have_count(2)
    await page.select_option("#ordering", "-content_title")
    await expect(page.locator("#rows tr").first).to_contain_text(f"{prefix} 11")

    first_row = page.locator("#rows tr").first
    await first_row.get_by_role("button", name="Generate Images").click()
    await expect(page.locator("#queue-list li")).to_have_count(3)
    await page.click("#queue-start")
    await expect(page.locator("#queue-list li.generated")).to_have_count(3, timeout=30_000)
    await expect(page.locator(".toast.success")).to_contain_text("Generated 3 image(s)")
    await page.click("#queue-close")
    await expect(first_row.locator("img.thumb")).to_have_count(3, timeout=10_000)
    await page.screenshot(path=str(tmp_path / "images-page.png"), full_page=True)


async def test_status_update_modal_updates_every_image_of_the_content(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    prefix = f"Status test {uuid.uuid4().hex[:6]}"
    await _seed(owner_api, prefix, 1)
    page = await _signed_in(browser, stack)
    await page.fill("#search", prefix)
    await expect(page.locator("#rows tr")).to_have_count(1, timeout=10_000)
    await page.get_by_role("button", name="Update Status").click()
    await page.locator("#status-modal [data-status=failed]").click()
    await expect(page.locator(".toast.success")).to_contain_text("updated 3 image(s) status to failed")
    await expect(page.locator("#rows tr").first.locator(".badge.failed")).to_have_count(1)


async def test_a_scheduled_publication_shows_in_the_publishing_queue_and_on_its_day_of_the_calendar(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    title = f"Scheduled {uuid.uuid4().hex[:6]}"
    site = await owner_api.call(
        "POST",
        "/v1/sites/",
        expect=201,
        # Nothing listens there: the publisher's attempt fails, the schedule stays on the calendar either way.
        json={"name": title, "base_url": "http://127.0.0.1:9", "username": "u", "application_password": "p"},
    )
    content = await owner_api.call(
        "POST",
        "/v1/writer/contents/",
        expect=201,
        json={"title": title, "html": "<p>x</p>", "status": "published", "site_id": site["id"]},
    )
    next_month = (datetime.now(UTC).replace(day=1) + timedelta(days=32)).replace(day=15, hour=12, minute=0)
    await owner_api.call(
        "POST",
        "/v1/publisher/publish/",
        expect=202,
        json={
            "content_id": content["id"],
            "publish_at": next_month.isoformat(),
            "allow_missing_images": True,
        },
    )
    page = await _signed_in(browser, stack)

    await page.click("#toggle-publishing")
    await page.select_option("#queue-status", "")
    await page.click("#calendar-next")

    await expect(page.locator("#queue-rows")).to_contain_text(title)
    await expect(page.locator('#calendar .day[data-day="15"]')).to_contain_text(title)
    await expect(page.locator('#calendar .day[data-day="14"]')).not_to_contain_text(title)


async def test_the_grid_follows_a_change_made_elsewhere_without_a_reload(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    prefix = f"Live test {uuid.uuid4().hex[:6]}"
    [content] = await _seed(owner_api, prefix, 1)
    page = await _signed_in(browser, stack)
    await page.fill("#search", prefix)
    await expect(page.locator("#rows tr")).to_have_count(1, timeout=10_000)
    await expect(page.locator("#live")).to_be_visible()

    await owner_api.call(
        "PATCH", f"/v1/writer/contents/{content['id']}/", json={"title": f"{prefix} renamed"}
    )

    await expect(page.locator("#rows tr").first).to_contain_text(f"{prefix} renamed", timeout=10_000)
