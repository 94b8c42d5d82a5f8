"""The Writer Images page in a real browser (Debian's Chromium) against the whole running product."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
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


async def _signed_in(
    browser: Browser, stack: Stack, prepare: Callable[[Page], Awaitable[None]] | None = None
) -> Page:
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    if prepare is not None:  # e.g. routes that must be in place before the page's first requests
        await prepare(page)
    await _sign_in(page, stack)
    return page


async def _sign_in(page: Page, stack: Stack) -> None:
    await page.goto(f"{stack.api}/")
    await page.fill("input[name=email]", DEMO_EMAIL)
    await page.fill("input[name=password]", DEMO_PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("#app")).to_be_visible()


async def _searched(
    browser: Browser,
    stack: Stack,
    search: str,
    rows: int,
    prepare: Callable[[Page], Awaitable[None]] | None = None,
) -> Page:
    """A signed-in page whose grid shows the `rows` contents that match `search`."""
    page = await _signed_in(browser, stack, prepare)
    await page.fill("#search", search)
    await expect(page.locator("#rows tr")).to_have_count(rows, timeout=10_000)
    return page


def _posts_to(page: Page, part: str) -> list[str]:
    """The URLs of the POST requests the page sends from now on to a path containing `part`."""
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" and part in r.url else None)
    return sent


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
    page = await _searched(browser, stack, prefix, rows=1)
    await page.get_by_role("button", name="Update Status").click()
    await page.locator("#status-modal [data-status=failed]").click()
    await expect(page.locator(".toast.success")).to_contain_text("updated 3 image(s) status to failed")
    await expect(page.locator("#rows tr").first.locator(".badge.failed")).to_have_count(1)


async def test_a_scheduled_publication_shows_in_the_publishing_queue_and_on_its_day_of_the_calendar(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    title = f"Scheduled {uuid.uuid4().hex[:6]}"
    # Its site answers nothing: the publisher's attempt fails, and the schedule stays on the calendar either way.
    content = await _publishable(owner_api, title)
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
    page = await _searched(browser, stack, prefix, rows=1)
    await expect(page.locator("#live")).to_be_visible()

    await owner_api.call(
        "PATCH", f"/v1/writer/contents/{content['id']}/", json={"title": f"{prefix} renamed"}
    )

    await expect(page.locator("#rows tr").first).to_contain_text(f"{prefix} renamed", timeout=10_000)


async def _publishable(api: Api, title: str) -> dict[str, Any]:
    """A `published` content on a site nothing listens on, its images marked generated: the seed's rule shows
    its Publish to WordPress button (the publisher's attempts fail; these tests only look at the page)."""
    site = await api.call(
        "POST",
        "/v1/sites/",
        expect=201,
        json={"name": title, "base_url": "http://127.0.0.1:9", "username": "u", "application_password": "p"},
    )
    content = await api.call(
        "POST",
        "/v1/writer/contents/",
        expect=201,
        json={"title": title, "html": "<p>x</p>", "status": "published", "site_id": site["id"]},
    )
    await api.call(
        "POST", "/v1/writer/images/bulk_update/", json={"content_id": content["id"], "status": "generated"}
    )
    return content


async def test_a_burst_of_401s_refreshes_the_session_once_and_keeps_the_user_signed_in(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    # The refresh token rotates and a rotated one presented again revokes the session: two requests that
    # both find the access token expired must share one refresh.
    page = await _signed_in(browser, stack)
    await expect(page.locator("#live")).to_be_visible()
    seen: set[str] = set()
    expired = False
    refreshes = 0

    async def route(route: Any) -> None:
        nonlocal refreshes
        auth = route.request.headers.get("authorization")
        if route.request.url.endswith("/v1/auth/refresh"):
            refreshes += 1
        elif auth and expired and auth in seen and not refreshes:
            # Until the page refreshes (a new access token issued in the same second as the old one can be
            # byte-identical, so "a token seen before" alone would refuse the retries too).
            await route.fulfill(
                status=401, json={"success": False, "error": "Token expired", "request_id": "t"}
            )
            return
        elif auth and not expired:
            seen.add(auth)
        await route.continue_()

    await page.route("**/v1/**", route)
    await page.click("#toggle-settings")  # any request: the page's token is seen
    await page.click("#toggle-settings")
    await page.click("#toggle-publishing")  # the queue and the calendar, loaded at once
    await expect(page.locator("#queue-rows tr").first).to_be_visible()
    await page.click("#toggle-publishing")
    expired = True

    def reloaded(part: str) -> Any:
        # 304 when nothing changed since the first load (the browser revalidates its cached copy)
        return page.expect_response(lambda r: part in r.url and r.status in (200, 304), timeout=10_000)

    async with reloaded("status=requested"), reloaded("scheduled_from="):  # each retried after the refresh
        await page.click("#toggle-publishing")

    assert refreshes == 1
    await expect(page.locator("#login")).to_be_hidden()
    await expect(page.locator(".toast.error")).to_have_count(0)
    await page.fill("#search", "after the refresh")  # the refreshed session goes on working
    await expect(page.locator("#page-info")).to_contain_text("Page 1 of 1", timeout=10_000)


async def test_a_double_click_on_publish_to_wordpress_sends_one_request(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    title = f"Double publish {uuid.uuid4().hex[:6]}"
    await _publishable(owner_api, title)
    page = await _searched(browser, stack, title, rows=1)
    sent = _posts_to(page, "/publisher/publish/")

    await page.locator("#rows tr").first.get_by_role("button", name="Publish to WordPress").dblclick()

    await page.wait_for_timeout(1500)
    assert len(sent) == 1, sent
    await expect(page.locator(".toast.error")).to_have_count(0)


async def test_a_double_click_on_bulk_publish_sends_one_request(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    title = f"Double bulk {uuid.uuid4().hex[:6]}"
    await _publishable(owner_api, title)
    page = await _searched(browser, stack, title, rows=1)
    await page.locator("#rows tr").first.get_by_role("checkbox").check()
    sent = _posts_to(page, "/publish/batch/")

    await page.locator("#bulk-publish").dblclick()

    await expect(page.locator(".toast.success")).to_contain_text("Publishing 1 item(s)")
    await page.wait_for_timeout(1000)
    assert len(sent) == 1, sent
    await expect(page.locator(".toast.warning")).to_have_count(0)


async def test_a_double_click_on_next_stops_at_the_last_page(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    prefix = f"Pager test {uuid.uuid4().hex[:6]}"
    await _seed(owner_api, prefix, 12)
    page = await _signed_in(browser, stack)
    await page.fill("#search", prefix)
    await expect(page.locator("#page-info")).to_have_text("Page 1 of 2 · 12 items", timeout=10_000)

    await page.dblclick("#next")

    await expect(page.locator("#page-info")).to_have_text("Page 2 of 2 · 12 items")
    await expect(page.locator("#rows tr")).to_have_count(2)
    await expect(page.locator("#empty")).to_be_hidden()


async def test_select_all_shows_whether_this_pages_rows_are_selected(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    prefix = f"Select test {uuid.uuid4().hex[:6]}"
    await _seed(owner_api, prefix, 12)
    page = await _signed_in(browser, stack)
    await page.fill("#search", prefix)
    await expect(page.locator("#page-info")).to_have_text("Page 1 of 2 · 12 items", timeout=10_000)
    await page.check("#select-all")
    await expect(page.locator("#rows input[type=checkbox]:checked")).to_have_count(10)

    await page.click("#next")
    await expect(page.locator("#page-info")).to_have_text("Page 2 of 2 · 12 items")
    await expect(page.locator("#select-all")).not_to_be_checked()
    await page.click("#select-all")  # one click selects this page's rows
    await expect(page.locator("#rows input[type=checkbox]:checked")).to_have_count(2)

    await page.click("#prev")
    await expect(page.locator("#page-info")).to_have_text("Page 1 of 2 · 12 items")
    await expect(page.locator("#select-all")).to_be_checked()


async def test_a_click_is_not_lost_when_the_grid_reloads_under_it(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    prefix = f"Click test {uuid.uuid4().hex[:6]}"
    first, second = await _seed(owner_api, prefix, 2)
    page = await _searched(browser, stack, prefix, rows=2)
    await expect(page.locator("#live")).to_be_visible()
    button = page.locator("#rows tr").first.get_by_role("button", name="Update Status")
    await button.focus()
    box = await button.bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await page.mouse.down()

    # another user renames the other row meanwhile: the grid reloads between the press and the release
    await owner_api.call(
        "PATCH", f"/v1/writer/contents/{second['id']}/", json={"title": f"{prefix} 01 renamed"}
    )
    await expect(page.locator("#rows tr").nth(1)).to_contain_text("renamed", timeout=10_000)
    await page.mouse.up()

    await expect(page.locator("#status-modal")).to_be_visible()
    await expect(page.locator("#status-record")).to_have_text(first["title"])


async def test_the_image_preview_opens_with_the_mouse_and_from_the_keyboard(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    prefix = f"Preview test {uuid.uuid4().hex[:6]}"
    [content] = await _seed(owner_api, prefix, 1)
    featured = next(i for i in content["images"] if i["image_type"] == "featured")
    await owner_api.call(
        "POST",
        "/v1/writer/images/generate_images/",
        expect=202,
        json={"ids": [featured["id"]], "content_id": content["id"]},
    )
    page = await _signed_in(browser, stack)
    await page.fill("#search", prefix)
    # this content's row: until the search reloads the grid, other rows (and their pictures) are shown
    thumb = page.locator("#rows tr", has_text=prefix).locator("img.thumb").first
    await expect(thumb).to_be_visible(timeout=30_000)

    await thumb.click()
    await expect(page.locator("#image-modal")).to_be_visible()
    await expect(page.locator("#image-modal-img")).to_have_attribute("alt", featured["prompt"])
    await page.click("#image-close")
    await expect(page.locator("#image-modal")).to_be_hidden()

    await thumb.focus()
    await expect(thumb).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#image-modal")).to_be_visible()


def _failure(status: int, error: str) -> dict[str, Any]:
    return {"status": status, "json": {"success": False, "error": error, "request_id": "t"}}


async def _refresh_token(page: Page) -> Any:
    return await page.evaluate("localStorage.getItem('wi.refresh')")


@pytest.mark.parametrize("fault", ["server error", "network error"])
async def test_a_refresh_failing_for_a_while_at_page_load_keeps_the_session(
    browser: Browser, stack: Stack, owner_api: Api, fault: str
) -> None:
    page = await _signed_in(browser, stack)
    token = await _refresh_token(page)

    async def refresh(route: Any) -> None:
        if fault == "network error":
            await route.abort()
        else:
            await route.fulfill(**_failure(503, "Service unavailable"))

    await page.route("**/v1/auth/refresh", refresh)
    await page.reload()

    await expect(page.locator(".toast.error").first).to_be_visible(timeout=10_000)
    await expect(page.locator("#app")).to_be_visible()
    await expect(page.locator("#login")).to_be_hidden()
    assert await _refresh_token(page) == token
    await page.unroute("**/v1/auth/refresh")
    await page.fill("#search", "after the outage")  # the next action renews the session
    await expect(page.locator("#page-info")).to_contain_text("Page 1 of 1", timeout=10_000)
    await expect(page.locator("#login")).to_be_hidden()


async def test_a_refresh_failing_with_a_server_error_mid_session_shows_an_error_and_keeps_the_session(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    page = await _signed_in(browser, stack)
    await expect(page.locator("#live")).to_be_visible()
    token = await _refresh_token(page)

    async def route(route: Any) -> None:
        if route.request.url.endswith("/v1/auth/refresh"):
            await route.fulfill(**_failure(500, "Server error occurred"))
        elif "/content_images/" in route.request.url:
            await route.fulfill(**_failure(401, "Token expired"))
        else:
            await route.continue_()

    await page.route("**/v1/**", route)
    await page.fill("#search", "during the outage")

    await expect(page.locator(".toast.error")).to_contain_text("Server error occurred", timeout=10_000)
    await expect(page.locator("#login")).to_be_hidden()
    assert await _refresh_token(page) == token
    await page.unroute("**/v1/**", route)
    await page.fill("#search", "after the outage")
    await expect(page.locator("#page-info")).to_contain_text("Page 1 of 1", timeout=10_000)


async def test_live_updates_whose_session_cannot_be_renewed_show_the_login_screen(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    signed_in = asyncio.Event()

    async def changes(route: Any) -> None:
        await signed_in.wait()  # the access token expires once the page shows
        await route.fulfill(**_failure(401, "Token expired"))

    async def refresh(route: Any) -> None:
        await route.fulfill(**_failure(401, "Refresh token expired"))

    async def prepare(page: Page) -> None:
        await page.route("**/v1/writer/images/changes", changes)
        await page.route("**/v1/auth/refresh", refresh)

    page = await _signed_in(browser, stack, prepare)
    signed_in.set()

    await expect(page.locator("#login")).to_be_visible(timeout=10_000)
    await expect(page.locator("#login-error")).to_have_text("Session expired")
    await expect(page.locator("#app")).to_be_hidden()


async def test_an_error_in_the_ai_function_logs_shows_a_toast(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    page = await _signed_in(browser, stack)

    async def route(route: Any) -> None:
        if "/ai_logs/" in route.request.url:
            await route.fulfill(**_failure(500, "Server error occurred"))
        else:
            await route.continue_()

    await page.route("**/v1/**", route)
    await page.click("#toggle-logs")

    await expect(page.locator(".toast.error")).to_contain_text("Server error occurred")


async def test_generation_progress_polls_on_through_errors_after_live_progress_is_lost(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    prefix = f"Poll test {uuid.uuid4().hex[:6]}"
    await _seed(owner_api, prefix, 1)
    page = await _searched(browser, stack, prefix, rows=1)
    polls = 0

    async def route(route: Any) -> None:
        nonlocal polls
        url = route.request.url
        if "/v1/tasks/" in url and url.endswith("/events"):
            await route.fulfill(**_failure(503, "Progress unavailable"))
        elif "/v1/tasks/" in url:
            polls += 1
            if polls <= 2:  # the first polls fail: polling goes on
                await route.fulfill(**_failure(500, "Server error occurred"))
            else:
                await route.continue_()
        else:
            await route.continue_()

    await page.route("**/v1/**", route)
    await page.locator("#rows tr").first.get_by_role("button", name="Generate Images").click()
    await expect(page.locator("#queue-list li")).to_have_count(3)
    await page.click("#queue-start")

    await expect(page.locator(".toast.error")).to_contain_text("Server error occurred", timeout=10_000)
    await expect(page.locator("#queue-list li.generated")).to_have_count(3, timeout=30_000)


async def test_a_double_click_on_a_status_sends_one_update(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    prefix = f"Double status {uuid.uuid4().hex[:6]}"
    await _seed(owner_api, prefix, 1)
    page = await _searched(browser, stack, prefix, rows=1)
    sent = _posts_to(page, "/bulk_update/")
    await page.get_by_role("button", name="Update Status").click()

    await page.locator("#status-modal [data-status=failed]").dblclick()

    await expect(page.locator(".toast.success")).to_contain_text("updated 3 image(s) status to failed")
    await page.wait_for_timeout(1500)
    assert len(sent) == 1, sent
    await expect(page.locator(".toast.success")).to_have_count(1)


async def test_a_refused_all_or_nothing_bulk_publish_keeps_the_selection(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    title = f"Refused bulk {uuid.uuid4().hex[:6]}"
    await use_local_provider(
        owner_api, in_article_slots=2
    )  # its image slots stay pending: the server refuses
    site = await owner_api.call(
        "POST",
        "/v1/sites/",
        expect=201,
        json={"name": title, "base_url": "http://127.0.0.1:9", "username": "u", "application_password": "p"},
    )
    await owner_api.call(
        "POST",
        "/v1/writer/contents/",
        expect=201,
        json={"title": title, "html": "<p>x</p>", "status": "published", "site_id": site["id"]},
    )
    page = await _searched(browser, stack, title, rows=1)
    checkbox = page.locator("#rows tr").first.get_by_role("checkbox")
    await checkbox.check()
    await page.check("#bulk-atomic")

    await page.click("#bulk-publish")

    await expect(page.locator(".toast.error")).to_contain_text("Nothing was published")
    await page.wait_for_timeout(1500)  # the grid reloads meanwhile
    await expect(checkbox).to_be_checked()
    await expect(page.locator("#bulk-publish")).to_have_text("Publish Ready to WordPress (1)")


async def test_a_post_url_that_is_not_http_is_never_rendered_as_a_link(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    prefix = f"Link test {uuid.uuid4().hex[:6]}"
    await _seed(owner_api, prefix, 1)
    page = await _signed_in(browser, stack)

    async def route(route: Any) -> None:
        if "/content_images/" not in route.request.url:
            await route.continue_()
            return
        response = await route.fetch()
        if response.status != 200:
            await route.fulfill(response=response)
            return
        body = await response.json()
        for row in body["data"]["results"]:
            row.update(
                external_id="77", external_url=" JavaScript:alert(document.domain)", sync_status="published"
            )
        await route.fulfill(response=response, json=body)

    await page.route("**/v1/**", route)
    await page.fill("#search", prefix)

    await expect(page.locator("#rows tr")).to_have_count(1, timeout=10_000)
    await expect(page.locator("#rows tr").first.locator(".badge.published")).to_have_count(1)
    await expect(page.locator("#rows a")).to_have_count(0)


async def test_the_settings_panel_shows_the_accounts_settings_and_saves_a_change(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    url = "/v1/system/integrations/image_generation/"
    before = (await owner_api.call("GET", url))["config"]
    other_format = "webp" if before["image_format"] != "webp" else "png"
    page = await _signed_in(browser, stack)
    try:
        await page.click("#toggle-settings")
        form = page.locator("#settings-form")
        await expect(form.locator("[name=model]")).to_have_value(before["model"])
        await expect(form.locator("[name=image_format]")).to_have_value(before["image_format"])
        await expect(form.locator("[name=max_in_article_images]")).to_have_value(
            str(before["max_in_article_images"])
        )
        await form.locator("[name=image_format]").select_option(other_format)
        await form.get_by_role("button", name="Save").click()
        await expect(page.locator(".toast.success")).to_contain_text("Settings saved")
        assert (await owner_api.call("GET", url))["config"] == {**before, "image_format": other_format}
    finally:
        await owner_api.call("PUT", url, json=before)  # the other tests' generations keep their format
        await page.close()


# A tab in the background whose user allows notifications when asked: what the page shows there is recorded.
_BACKGROUND_TAB_WITH_NOTIFICATIONS = """
window.__notifications = [];
class RecordedNotification {
  constructor(title, options) { window.__notifications.push(`${title}: ${options.body}`); }
}
RecordedNotification.permission = "default";
RecordedNotification.requestPermission = async () => (RecordedNotification.permission = "granted");
window.Notification = RecordedNotification;
Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
"""


async def test_a_publication_that_ends_is_told_without_a_reload_and_notified_in_the_background(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    title = f"Pushed result {uuid.uuid4().hex[:6]}"
    await _publishable(owner_api, title)  # its site answers nothing: the publisher's attempt fails

    async def background_tab(page: Page) -> None:
        await page.add_init_script(_BACKGROUND_TAB_WITH_NOTIFICATIONS)

    page = await _searched(browser, stack, title, rows=1, prepare=background_tab)
    await page.click("#toggle-publishing")
    await page.click("#notify-me")
    await expect(page.locator("#notify-me")).to_be_hidden()  # allowed: nothing more to ask
    await page.locator("#rows tr").first.get_by_role("checkbox").check()

    await page.click("#bulk-publish")

    # The queue shows it in flight, then the publisher's failure arrives on its own: no click, no reload.
    await expect(page.locator("#queue-rows")).to_contain_text(title, timeout=10_000)
    told = page.locator(".toast.error", has_text=f"Publishing “{title}” failed: ")
    await expect(told).to_have_count(1, timeout=60_000)
    notifications = await page.evaluate("window.__notifications")
    assert [n for n in notifications if n.startswith(f"Writer Images: Publishing “{title}” failed: ")], (
        notifications
    )


# The first token the publishing feed sends is replaced by one the server refuses (as an expired one is).
_FIRST_FEED_TOKEN_REFUSED = """
window.__feedTokens = [];
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  const token = JSON.parse(data).access_token;
  if (token) window.__feedTokens.push(token);
  return send.call(this, window.__feedTokens.length === 1 ? JSON.stringify({ access_token: "refused" }) : data);
};
"""


async def test_a_publishing_feed_refused_for_its_token_renews_the_session_once_and_carries_on(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    title = f"Feed renewed {uuid.uuid4().hex[:6]}"
    await _publishable(owner_api, title)

    async def refuse_first_token(page: Page) -> None:
        await page.add_init_script(_FIRST_FEED_TOKEN_REFUSED)
        sent["refreshes"] = _posts_to(page, "/v1/auth/refresh")

    sent: dict[str, list[str]] = {}
    page = await _searched(browser, stack, title, rows=1, prepare=refuse_first_token)
    await page.wait_for_function("window.__feedTokens.length >= 2")
    await page.locator("#rows tr").first.get_by_role("checkbox").check()

    await page.click("#bulk-publish")

    await expect(page.locator(".toast.error", has_text=f"Publishing “{title}” failed")).to_have_count(
        1, timeout=60_000
    )
    assert len(await page.evaluate("window.__feedTokens")) == 2, "one reconnect"
    assert len(sent["refreshes"]) == 1, sent  # the token was renewed once (in the same second, to the same)
    await expect(page.locator("#app")).to_be_visible()


async def test_a_failed_publication_is_retried_from_the_publishing_queue_with_one_request(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    title = f"Retried {uuid.uuid4().hex[:6]}"
    content = await _publishable(owner_api, title)  # its site answers nothing: the publisher's attempt fails
    requested = await owner_api.call(
        "POST", "/v1/publisher/publish/", expect=202, json={"content_id": content["id"]}
    )

    async def failed() -> bool:
        publication = await owner_api.call(
            "GET", f"/v1/publisher/publications/{requested['publication_id']}/"
        )
        return bool(publication["status"] == "failed")

    await owner_api.eventually(failed, timeout_s=60)
    page = await _signed_in(browser, stack)
    await page.click("#toggle-publishing")
    await page.select_option("#queue-status", "failed")
    row = page.locator(f'#queue-rows tr[data-publication="{requested["publication_id"]}"]')
    sent = _posts_to(page, "/publisher/publish/")

    await row.get_by_role("button", name="Retry").dblclick()

    await expect(page.locator(".toast.success")).to_contain_text(f"Retrying “{title}”")
    await page.select_option("#queue-status", "requested")
    await expect(page.locator("#queue-rows")).to_contain_text(title)
    assert len(sent) == 1, sent


async def test_two_tabs_of_one_session_renew_it_in_turn_and_both_stay_signed_in(
    browser: Browser, stack: Stack, owner_api: Api
) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    refreshes: list[int] = []
    context.on(
        "response", lambda r: refreshes.append(r.status) if r.url.endswith("/v1/auth/refresh") else None
    )
    first = await context.new_page()
    await _sign_in(first, stack)
    second = await context.new_page()
    await second.goto(f"{stack.api}/")  # renews the session with the stored token: the first tab's is spent
    await expect(second.locator("#app")).to_be_visible()

    for tab in (first, second):  # each finds its access token refused once, and renews the session
        title = f"Renewed {uuid.uuid4().hex[:6]}"
        await owner_api.call(
            "POST",
            "/v1/writer/contents/",
            expect=201,
            json={"title": title, "html": "<p>x</p>", "status": "draft"},
        )
        await tab.route(
            lambda url: "/content_images/" in url,
            lambda route: route.fulfill(status=401, json={"success": False, "error": "Token expired"}),
            times=1,
        )
        await tab.fill("#search", title)
        await expect(tab.locator("#rows tr")).to_have_count(1, timeout=10_000)

    assert refreshes == [200, 200, 200], "the second tab's load, then one renewal in each tab"
    for tab in (first, second):
        await expect(tab.locator("#login")).to_be_hidden()
    await context.close()
