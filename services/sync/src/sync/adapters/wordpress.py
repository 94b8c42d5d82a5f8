"""The WordPress REST API as the reconciler reads it (application password, `context=edit`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

import httpx

from sync.domain.changes import LISTED_STATUSES, PostState, parse_wp_datetime
from sync.domain.site_time import site_zone
from writer_images.retry import parse_retry_after

PUBLICATION_KEY_META = "_writer_images_publication_key"
_FIELDS = "id,status,modified_gmt,link,title,meta"
# `status=any` leaves out trash (WP_Query excludes statuses hidden from search); name them all instead.
_STATUSES = ",".join(LISTED_STATUSES)


class WordPressError(Exception):
    """The site did not answer usefully; `retry_after_s` when it asked us to wait."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _wp_time(value: datetime) -> str:
    # With an explicit offset WordPress converts to the site's timezone before comparing with post_modified
    # (a local time); a bare time would be read as local. Local times repeat when clocks go back: see
    # `sync.domain.site_time`.
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def post_state(item: dict[str, Any]) -> PostState:
    title = item.get("title")
    meta = item.get("meta")
    key = meta.get(PUBLICATION_KEY_META) if isinstance(meta, dict) else None
    return PostState(
        post_id=int(item["id"]),
        wp_status=str(item["status"]),
        modified_gmt=parse_wp_datetime(item.get("modified_gmt")),
        link=item.get("link"),
        title=(title.get("raw") or title.get("rendered")) if isinstance(title, dict) else title,
        publication_key=key or None,
    )


class WordPressClient:
    def __init__(self, base_url: str, username: str, app_password: str, *, timeout_s: float) -> None:
        self._index = f"{base_url.rstrip('/')}/wp-json/"
        self._http = httpx.AsyncClient(
            base_url=f"{base_url.rstrip('/')}/wp-json/wp/v2",
            auth=httpx.BasicAuth(username, app_password),
            timeout=timeout_s,
            follow_redirects=False,
            headers={"User-Agent": "WriterImagesSync/1.0"},
        )

    async def __aenter__(self) -> WordPressClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    async def check_credentials(self) -> None:
        """WordPress answers anonymous reads even when the application password is wrong (and then refuses
        the statuses only editors see with a puzzling 400): ask who we are first."""
        response = await self._get("/users/me", {"context": "edit", "_fields": "id"})
        self._raise_for_status(response)

    async def time_zone(self) -> tzinfo | None:
        """The zone WordPress reads local times in (REST index: `timezone_string`, else `gmt_offset`); None
        when the site does not say (an index hidden by a security plugin, an unknown zone name)."""
        response = await self._get(self._index, {"_fields": "timezone_string,gmt_offset"})
        if not response.is_success:
            return None
        try:
            body = response.json()
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        return site_zone(body.get("timezone_string"), body.get("gmt_offset"))

    async def changed_posts(
        self, modified_after: datetime | None, *, page: int, per_page: int
    ) -> list[PostState]:
        """One page of posts in every status, oldest modification first."""
        params: dict[str, str | int] = {
            "status": _STATUSES,
            "orderby": "modified",
            "order": "asc",
            "per_page": per_page,
            "page": page,
            "context": "edit",
            "_fields": _FIELDS,
        }
        if modified_after is not None:
            params["modified_after"] = _wp_time(modified_after)
        response = await self._get("/posts", params)
        if response.status_code == 400 and _error_code(response) == "rest_post_invalid_page_number":
            return []  # the previous page was exactly full and the last one
        return [post_state(item) for item in self._json_list(response)]

    async def posts_by_id(self, post_ids: Sequence[int]) -> list[PostState]:
        """The listed posts that still exist (any status but deleted); at most 100 ids."""
        params: dict[str, str | int] = {
            "include": ",".join(str(i) for i in post_ids),
            "status": _STATUSES,
            "per_page": 100,
            "context": "edit",
            "_fields": _FIELDS,
        }
        return [post_state(item) for item in self._json_list(await self._get("/posts", params))]

    async def post(self, post_id: int) -> PostState | None:
        """The post, or None when WordPress no longer has it (404 or 410)."""
        response = await self._get(f"/posts/{post_id}", {"context": "edit", "_fields": _FIELDS})
        if response.status_code in (404, 410):
            return None
        self._raise_for_status(response)
        return post_state(response.json())

    async def _get(self, path: str, params: dict[str, str | int]) -> httpx.Response:
        try:
            return await self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise WordPressError(f"WordPress unreachable: {type(exc).__name__}: {exc}") from exc

    def _json_list(self, response: httpx.Response) -> list[dict[str, Any]]:
        self._raise_for_status(response)
        try:
            body = response.json()
        except ValueError as exc:
            raise WordPressError("WordPress answered with something that is not JSON") from exc
        if not isinstance(body, list):
            raise WordPressError("WordPress answered with something that is not a list of posts")
        return body

    @staticmethod
    def _raise_for_status(response: httpx.Response) -> None:
        if response.is_success:
            return
        code = _error_code(response) or ""
        if response.status_code in (401, 403):
            raise WordPressError(
                f"WordPress refused the application password ({response.status_code} {code}): check the "
                "site's username and application password, and that the Authorization header reaches PHP"
            )
        raise WordPressError(
            f"WordPress answered {response.status_code} {code}".strip(),
            retry_after_s=parse_retry_after(response.headers.get("retry-after")),
        )


def _error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None
