"""WordPress REST client: application-password auth, precise diagnoses, retries, guarded redirects.

One `httpx.AsyncClient` per site (pooled connections, bounded to the site's concurrency). Requests
that are safe to repeat (reads, updates of a known id) are retried in place with the shared
`RetryPolicy` on network errors, timeouts, 429 (honouring Retry-After) and 5xx. Creates (a media
upload, a new post) are never retried in place: a create that timed out may have happened, so
the caller looks for it first (by slug or publication key) on its next attempt.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import httpx

from publisher.domain.rules import Failure
from writer_images.retry import RetryPolicy, parse_retry_after
from writer_images.urlguard import UnsafeUrlError, check_url

MAX_REDIRECTS = 3
PUBLICATION_KEY_META = "_writer_images_publication_key"
ALL_POST_STATUSES = "publish,future,draft,pending,private,trash"

_STRIPPED_HEADER_HINT = (
    "WordPress treated the request as anonymous: check the username and application "
    "password; if they are right, the web server strips the Authorization header before PHP sees it "
    '(Apache: add `SetEnvIf Authorization "(.*)" HTTP_AUTHORIZATION=$1` to .htaccess; nginx/FastCGI: pass '
    "HTTP_AUTHORIZATION)"
)


class WordPressError(Exception):
    """A WordPress call failed; `code` is stable for machines, the message is for the operator."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.status = status

    @property
    def failure(self) -> Failure:
        return Failure(self.code, self.message)


@dataclass(frozen=True)
class SiteConnection:
    site_id: int
    base_url: str
    username: str
    application_password: str


@dataclass(frozen=True)
class Media:
    id: int
    source_url: str
    alt_text: str


@dataclass(frozen=True)
class Post:
    id: int
    status: str
    link: str
    featured_media: int
    modified_gmt: datetime | None = None  # WordPress's post_modified_gmt (UTC)


@dataclass(frozen=True)
class CredentialCheck:
    ok: bool
    code: str
    message: str
    user: str | None = None


@dataclass(frozen=True)
class ClientConfig:
    connect_timeout_s: float = 5.0
    timeout_s: float = 30.0
    media_timeout_s: float = 120.0
    max_connections: int = 4
    # What the host feels: at most this many requests in flight per site, whatever the number of jobs.
    max_concurrent_requests: int = 2
    retry: RetryPolicy = RetryPolicy(max_attempts=3, base_s=0.25, max_s=5.0)  # noqa: RUF009 - frozen value
    allow_private_urls: bool = False


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _wp_code(body: Any) -> str:
    return str(body.get("code", "")) if isinstance(body, dict) else ""


def _wp_message(body: Any, response: httpx.Response) -> str:
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return f"HTTP {response.status_code}"


def classify(response: httpx.Response, *, what: str, username: str) -> WordPressError | None:
    """None for a 2xx; otherwise the precise, actionable failure the answer means."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    body = _json_or_none(response)
    code, message = _wp_code(body), _wp_message(body, response)
    if status == 401:
        if code in ("incorrect_password", "invalid_username", "invalid_email"):
            return WordPressError(
                "bad_credentials",
                f"WordPress refused the credentials of {username!r} ({code}): create a new application "
                "password (Users → Profile → Application Passwords) and save it on the site",
                retryable=False,
                status=status,
            )
        # Any other 401 (rest_not_logged_in, rest_cannot_create, ...) means WordPress treated us as anonymous.
        return WordPressError(
            "not_authenticated",
            f"{what}: 401 {code or ''}: {_STRIPPED_HEADER_HINT}",
            retryable=False,
            status=status,
        )
    if status == 403:
        return WordPressError(
            "forbidden",
            f"{what}: the user {username!r} may not do this ({code or 'HTTP 403'}: {message}); give it the "
            "Editor role, or check that no security plugin blocks the REST API",
            retryable=False,
            status=status,
        )
    if status == 404 and code == "rest_no_route":
        return WordPressError(
            "rest_unavailable",
            f"{what}: the REST route does not exist: the REST API is disabled (a security plugin?) or "
            "permalinks are 'Plain'",
            retryable=False,
            status=status,
        )
    if status in (404, 410):
        if body is None:
            return WordPressError(
                "not_wordpress",
                f"{what}: {status} without a WordPress JSON answer: is this the WordPress address, and is "
                "the REST API (/wp-json/) reachable?",
                retryable=False,
                status=status,
            )
        return WordPressError(
            "not_found", f"{what}: {code or status}: {message}", retryable=False, status=status
        )
    if status == 413:
        return WordPressError(
            "media_too_large",
            f"{what}: the web server refused the request body as too large (413): raise its upload limit "
            "(nginx client_max_body_size, PHP upload_max_filesize/post_max_size) or publish a smaller image",
            retryable=False,
            status=status,
        )
    if status == 429:
        return WordPressError(
            "rate_limited",
            f"{what}: the site asks us to slow down (429)",
            retryable=True,
            retry_after_s=parse_retry_after(response.headers.get("retry-after")),
            status=status,
        )
    if status >= 500:
        return WordPressError(
            "server_error",
            f"{what}: the site answered {status} {code or ''} {message}".strip(),
            retryable=True,
            retry_after_s=parse_retry_after(response.headers.get("retry-after")),
            status=status,
        )
    return WordPressError(
        "unexpected_response",
        f"{what}: {status} {code or ''} {message}".strip(),
        retryable=False,
        status=status,
    )


class WordPressClient:
    """The REST calls the publisher makes against one site."""

    def __init__(self, site: SiteConnection, config: ClientConfig, http: httpx.AsyncClient) -> None:
        self.site = site
        self._config = config
        self._http = http
        self._api = site.base_url.rstrip("/") + "/wp-json"
        self.has_bridge_plugin: bool | None = None
        self._in_flight = asyncio.Semaphore(config.max_concurrent_requests)

    # --- diagnosis ---------------------------------------------------------------------------

    async def check_credentials(self) -> CredentialCheck:
        """`GET /wp/v2/users/me`: tells bad password, stripped header, REST off, not WordPress, unreachable."""
        try:
            response = await self._request(
                "GET", "/wp/v2/users/me", what="credential check", idempotent=False
            )
        except WordPressError as error:
            return CredentialCheck(False, error.code, error.message)
        body = _json_or_none(response)
        if not isinstance(body, dict) or "id" not in body:
            return CredentialCheck(
                False,
                "not_wordpress",
                f"{self.site.base_url} answered /wp-json/wp/v2/users/me without WordPress JSON: is this the "
                "WordPress address?",
            )
        return CredentialCheck(
            True, "ok", f"authenticated as {body.get('name') or body.get('slug')}", body.get("slug")
        )

    # --- media -------------------------------------------------------------------------------

    async def find_media_by_slug(self, slug: str) -> Media | None:
        response = await self._request(
            "GET", "/wp/v2/media", what="media lookup", params={"slug": slug, "context": "edit"}
        )
        found = self._json_list(response, "media lookup")
        return self._media(found[0]) if found else None

    async def upload_media(
        self, data: bytes, *, filename: str, content_type: str, alt_text: str, caption: str | None
    ) -> Media:
        """Upload (never retried in place) with alt text and caption in the same request, then verify."""
        fields = {"alt_text": alt_text, **({"caption": caption} if caption else {})}
        response = await self._request(
            "POST",
            "/wp/v2/media",
            what=f"upload of {filename} ({len(data):,} bytes)",
            idempotent=False,
            params=fields,
            content=data,
            headers={
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Content-Type": content_type,
            },
            timeout=self._config.media_timeout_s,
        )
        media = self._media(self._json_object(response, "media upload"))
        if media.alt_text != alt_text:
            # Older WordPress ignores fields on the upload itself: set them on the item, then check again.
            response = await self._request(
                "POST", f"/wp/v2/media/{media.id}", what="alt text update", json=fields
            )
            media = self._media(self._json_object(response, "alt text update"))
            if media.alt_text != alt_text:
                raise WordPressError(
                    "media_rejected", f"media {media.id}: WordPress did not keep the alt text", retryable=True
                )
        return media

    # --- posts -------------------------------------------------------------------------------

    async def find_posts_by_key(self, publication_key: str) -> list[Post] | None:
        """Posts carrying the publication key (trash included); None when the bridge plugin is missing."""
        try:
            response = await self._request(
                "GET",
                "/writer-images/v1/posts",
                what="publication key lookup",
                params={"publication_key": publication_key},
            )
        except WordPressError as error:
            if error.code == "rest_unavailable":
                self.has_bridge_plugin = False
                return None
            raise
        self.has_bridge_plugin = True
        return [
            Post(int(p["id"]), str(p["status"]), str(p.get("link") or ""), 0)
            for p in self._json_list(response, "publication key lookup")
        ]

    async def find_posts_by_slug(self, slug: str) -> list[Post]:
        """The fallback lookup: our own slug, in every status (a trashed post's slug gets `__trashed`)."""
        found: list[Post] = []
        for candidate in (slug, f"{slug}__trashed"):
            response = await self._request(
                "GET",
                "/wp/v2/posts",
                what="post lookup by slug",
                params={"slug": candidate, "status": ALL_POST_STATUSES, "context": "edit"},
            )
            found += [self._post(p) for p in self._json_list(response, "post lookup by slug")]
        return found

    async def get_post(self, post_id: int) -> Post | None:
        try:
            response = await self._request(
                "GET", f"/wp/v2/posts/{post_id}", what=f"post {post_id}", params={"context": "edit"}
            )
        except WordPressError as error:
            if error.code == "not_found":
                return None
            raise
        return self._post(self._json_object(response, f"post {post_id}"))

    async def create_post(self, fields: dict[str, Any]) -> Post:
        response = await self._request(
            "POST", "/wp/v2/posts", what="post create", idempotent=False, json=fields
        )
        return self._post(self._json_object(response, "post create"))

    async def update_post(self, post_id: int, fields: dict[str, Any]) -> Post:
        response = await self._request(
            "POST", f"/wp/v2/posts/{post_id}", what=f"post {post_id} update", json=fields
        )
        return self._post(self._json_object(response, f"post {post_id} update"))

    async def count(self, path: str, params: dict[str, str]) -> int:
        """`X-WP-Total` of a collection (operators and tests count posts and media with it)."""
        response = await self._request("GET", path, what=f"count {path}", params={**params, "per_page": "1"})
        return int(response.headers.get("x-wp-total", "0"))

    # --- plumbing ----------------------------------------------------------------------------

    async def _request(
        self, method: str, path: str, *, what: str, idempotent: bool = True, **kwargs: Any
    ) -> httpx.Response:
        policy = self._config.retry
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._send(method, self._api + path, what=what, **kwargs)
                error = classify(response, what=what, username=self.site.username)
                if error is None:
                    return response
            except httpx.TimeoutException as exc:
                error = WordPressError(
                    "timeout",
                    f"{what}: {self.site.base_url} did not answer in time ({type(exc).__name__})",
                    retryable=True,
                )
            except httpx.TransportError as exc:
                error = WordPressError(
                    "unreachable",
                    f"{what}: cannot reach {self.site.base_url} ({type(exc).__name__}: {exc})",
                    retryable=True,
                )
            if not (error.retryable and idempotent) or policy.exhausted(attempt):
                raise error
            await asyncio.sleep(policy.delay(attempt, error.retry_after_s))

    async def _send(self, method: str, url: str, *, what: str, **kwargs: Any) -> httpx.Response:
        """Send without following redirects blindly: each hop is checked by the URL guard, and only reads
        follow (a redirected write would arrive as a GET without its body)."""
        timeout = kwargs.pop("timeout", None)
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout, connect=self._config.connect_timeout_s)
        for _ in range(MAX_REDIRECTS + 1):
            async with self._in_flight:
                response = await self._http.request(method, url, **kwargs)
            if not response.is_redirect:
                return response
            target = urljoin(url, response.headers.get("location", ""))
            try:
                await check_url(target, allow_private=self._config.allow_private_urls)
            except UnsafeUrlError as exc:
                raise WordPressError(
                    "unsafe_url",
                    f"{what}: the site redirects to {target}, which is not allowed: {exc}",
                    retryable=False,
                ) from exc
            if method not in ("GET", "HEAD"):
                raise WordPressError(
                    "redirected",
                    f"{what}: {url} redirects to {target}; set the site's address to the final URL "
                    "(e.g. https:// or www.)",
                    retryable=False,
                )
            url, kwargs = target, {k: v for k, v in kwargs.items() if k != "params"}
        raise WordPressError("redirected", f"{what}: more than {MAX_REDIRECTS} redirects", retryable=False)

    def _json_object(self, response: httpx.Response, what: str) -> dict[str, Any]:
        body = _json_or_none(response)
        if not isinstance(body, dict):
            raise WordPressError(
                "not_wordpress", f"{what}: {response.status_code} without WordPress JSON", retryable=False
            )
        return body

    def _json_list(self, response: httpx.Response, what: str) -> list[dict[str, Any]]:
        body = _json_or_none(response)
        if not isinstance(body, list):
            raise WordPressError(
                "not_wordpress",
                f"{what}: {response.status_code} without a WordPress JSON list",
                retryable=False,
            )
        return body

    @staticmethod
    def _media(body: dict[str, Any]) -> Media:
        return Media(int(body["id"]), str(body.get("source_url") or ""), str(body.get("alt_text") or ""))

    @staticmethod
    def _post(body: dict[str, Any]) -> Post:
        return Post(
            int(body["id"]),
            str(body["status"]),
            str(body.get("link") or ""),
            int(body.get("featured_media") or 0),
            _gmt(body.get("modified_gmt")),
        )


def _gmt(value: object) -> datetime | None:
    """A `*_gmt` field of the REST API ("2024-05-01T10:00:00": UTC, written without an offset)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        return None


def _fingerprint(site: SiteConnection) -> tuple[str, str, str]:
    return (site.base_url, site.username, site.application_password)


class WordPressClients:
    """One pooled client per site, rebuilt when the site's connection changes; checked by the URL guard."""

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        self._clients: dict[int, tuple[tuple[str, str, str], WordPressClient, httpx.AsyncClient]] = {}
        self._lock = asyncio.Lock()

    async def for_site(self, site: SiteConnection) -> WordPressClient:
        async with self._lock:
            known = self._clients.get(site.site_id)
            if known is not None and known[0] == _fingerprint(site):
                return known[1]
            try:
                await check_url(site.base_url, allow_private=self._config.allow_private_urls)
            except UnsafeUrlError as exc:
                raise WordPressError("unsafe_url", f"{site.base_url}: {exc}", retryable=False) from exc
            if known is not None:
                await known[2].aclose()
            http = httpx.AsyncClient(
                auth=(site.username, site.application_password),
                follow_redirects=False,
                timeout=httpx.Timeout(self._config.timeout_s, connect=self._config.connect_timeout_s),
                limits=httpx.Limits(
                    max_connections=self._config.max_connections,
                    max_keepalive_connections=self._config.max_connections,
                ),
                headers={"User-Agent": "writer-images-publisher/1"},
            )
            client = WordPressClient(site, self._config, http)
            self._clients[site.site_id] = (_fingerprint(site), client, http)
            return client

    async def aclose(self) -> None:
        for _, _, http in self._clients.values():
            await http.aclose()
        self._clients.clear()
