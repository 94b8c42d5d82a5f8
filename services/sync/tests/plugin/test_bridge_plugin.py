"""The Writer Images bridge plugin inside a real WordPress: signed webhooks and the publication-key lookup."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from writer_images.testing.wordpress import WordPressSite
from writer_images.testing.wordpress_fixtures import WordPressFactory

pytestmark = [pytest.mark.wordpress, pytest.mark.slow]

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "wordpress-plugin" / "writer-images-bridge"
SECRET = "test-secret-for-the-bridge"
META_KEY = "_writer_images_publication_key"


@dataclass(frozen=True)
class Webhook:
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


class WebhookReceiver:
    """A tiny HTTP server that records every webhook and answers with `status` (settable by tests)."""

    def __init__(self) -> None:
        self.received: list[Webhook] = []
        self.status = 204
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._changed:
                    receiver.received.append(Webhook({k.lower(): v for k, v in self.headers.items()}, body))
                    receiver._changed.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhooks/wordpress"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> Webhook:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for webhook in reversed(self.received):
                    if match(webhook.payload):
                        return webhook
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching webhook in {timeout} s; got {self.payloads()}")
                self._changed.wait(left)

    def for_post(self, post_id: int) -> list[dict[str, Any]]:
        return [payload for payload in self.payloads() if payload["post_id"] == post_id]

    def payloads(self) -> list[dict[str, Any]]:
        return [webhook.payload for webhook in self.received]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def signature_is_valid(webhook: Webhook, secret: str) -> bool:
    """The receiver's check: v1,base64(HMAC-SHA256(secret, "{webhook-id}.{webhook-timestamp}.{raw body}"))."""
    signed = (
        f"{webhook.headers['webhook-id']}.{webhook.headers['webhook-timestamp']}.".encode() + webhook.body
    )
    expected = "v1," + base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, webhook.headers["webhook-signature"])


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def site(wordpress_factory: WordPressFactory, receiver: WebhookReceiver) -> Iterator[WordPressSite]:
    site = wordpress_factory.start(
        bridge_plugin=PLUGIN_DIR, webhook_url=receiver.url, bridge_secret=SECRET, site_key="site-42"
    )
    yield site
    wordpress_factory.stop(site)


@pytest.fixture
def editor(site: WordPressSite) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.rest_url, auth=site.editor_auth, timeout=30) as client:
        yield client


def create_post(editor: httpx.Client, publication_key: str, status: str = "publish") -> int:
    created = editor.post(
        "/wp/v2/posts", json={"title": "A post", "status": status, "meta": {META_KEY: publication_key}}
    )
    assert created.status_code == 201, created.text
    post_id: int = created.json()["id"]
    return post_id


def new_key() -> str:
    return f"content-{uuid.uuid4()}"


def test_creating_a_post_sends_one_signed_webhook_with_its_publication_key(
    site: WordPressSite, editor: httpx.Client, receiver: WebhookReceiver
) -> None:
    key = new_key()

    post_id = create_post(editor, key)

    webhook = receiver.wait_for(lambda p: p["post_id"] == post_id and p["status"] == "publish")
    assert signature_is_valid(webhook, SECRET)
    assert not signature_is_valid(webhook, "another secret")
    assert uuid.UUID(webhook.headers["webhook-id"])
    assert abs(int(webhook.headers["webhook-timestamp"]) - time.time()) < 60
    assert webhook.headers["content-type"] == "application/json"
    post = editor.get(f"/wp/v2/posts/{post_id}").json()
    assert webhook.payload == {
        "site_key": "site-42",
        "post_id": post_id,
        "status": "publish",
        "modified_gmt": post["modified_gmt"],
        "link": post["link"],
        "title": "A post",
        "publication_key": key,
        "event": "wp_after_insert_post",
    }
    # transition_post_status and wp_after_insert_post both fired; the plugin sends the change once.
    assert len(receiver.for_post(post_id)) == 1


def test_every_status_change_sends_a_webhook_with_the_new_status(
    site: WordPressSite, editor: httpx.Client, receiver: WebhookReceiver
) -> None:
    key = new_key()
    post_id = create_post(editor, key)
    receiver.wait_for(lambda p: p["post_id"] == post_id and p["status"] == "publish")

    assert editor.post(f"/wp/v2/posts/{post_id}", json={"status": "draft"}).status_code == 200
    receiver.wait_for(lambda p: p["post_id"] == post_id and p["status"] == "draft")

    assert editor.delete(f"/wp/v2/posts/{post_id}").json()["status"] == "trash"
    trashed = receiver.wait_for(lambda p: p["post_id"] == post_id and p["status"] == "trash")
    assert trashed.payload["event"] == "trashed_post"
    assert trashed.payload["publication_key"] == key

    untrash_in_wp_admin(site, post_id)
    # Since WordPress 5.6 an untrashed post comes back as a draft.
    untrashed = receiver.wait_for(lambda p: p["post_id"] == post_id and p["event"] == "untrashed_post")
    assert untrashed.payload["status"] == "draft"

    assert editor.delete(f"/wp/v2/posts/{post_id}", params={"force": "true"}).json()["deleted"] is True
    deleted = receiver.wait_for(lambda p: p["post_id"] == post_id and p["status"] == "deleted")
    assert deleted.payload["event"] == "deleted_post"
    assert deleted.payload["publication_key"] == key, "read before WordPress deleted the post's meta"
    assert signature_is_valid(deleted, SECRET)
    assert [p["status"] for p in receiver.for_post(post_id)] == [
        "publish",
        "draft",
        "trash",
        "draft",
        "deleted",
    ]


def test_editing_a_published_post_sends_one_webhook_and_none_for_its_revision(
    editor: httpx.Client, receiver: WebhookReceiver
) -> None:
    post_id = create_post(editor, new_key())
    receiver.wait_for(lambda p: p["post_id"] == post_id)
    before = len(receiver.received)

    edited = editor.post(f"/wp/v2/posts/{post_id}", json={"title": "Edited", "content": "New words"})

    assert edited.status_code == 200
    assert len(editor.get(f"/wp/v2/posts/{post_id}/revisions").json()) >= 1
    webhook = receiver.wait_for(lambda p: p["post_id"] == post_id and p["title"] == "Edited")
    assert webhook.payload["status"] == "publish"
    assert len(receiver.received) == before + 1


def test_the_lookup_route_finds_posts_by_publication_key_in_any_status(
    editor: httpx.Client, receiver: WebhookReceiver
) -> None:
    published_key, trashed_key, draft_key = new_key(), new_key(), new_key()
    published = create_post(editor, published_key)
    trashed = create_post(editor, trashed_key)
    draft = create_post(editor, draft_key, status="draft")
    editor.delete(f"/wp/v2/posts/{trashed}")

    def lookup(key: str) -> list[dict[str, Any]]:
        found = editor.get("/writer-images/v1/posts", params={"publication_key": key})
        assert found.status_code == 200, found.text
        result: list[dict[str, Any]] = found.json()
        return result

    [found] = lookup(published_key)
    post = editor.get(f"/wp/v2/posts/{published}").json()
    assert found == {
        "id": published,
        "status": "publish",
        "link": post["link"],
        "modified_gmt": post["modified_gmt"],
    }
    assert [(p["id"], p["status"]) for p in lookup(trashed_key)] == [(trashed, "trash")]
    assert [(p["id"], p["status"]) for p in lookup(draft_key)] == [(draft, "draft")]
    assert lookup(new_key()) == []
    assert editor.get("/writer-images/v1/posts").status_code == 400


def test_the_lookup_and_health_routes_need_an_authenticated_editor(
    site: WordPressSite, editor: httpx.Client
) -> None:
    assert (
        httpx.get(f"{site.rest_url}/writer-images/v1/posts", params={"publication_key": "x"}).status_code
        == 401
    )
    assert httpx.get(f"{site.rest_url}/writer-images/v1/health").status_code == 401

    health = editor.get("/writer-images/v1/health")

    assert health.status_code == 200
    assert health.json()["plugin"] == "writer-images-bridge"
    assert health.json()["version"] == "1.0.0"
    assert health.json()["webhook_configured"] is True


def test_the_publication_key_is_neither_readable_nor_writable_anonymously(
    site: WordPressSite, editor: httpx.Client
) -> None:
    key = new_key()
    post_id = create_post(editor, key)
    anonymous = httpx.Client(base_url=site.rest_url)

    public_view = anonymous.get(f"/wp/v2/posts/{post_id}")
    anonymous_write = anonymous.post(f"/wp/v2/posts/{post_id}", json={"meta": {META_KEY: "hijacked"}})

    assert public_view.status_code == 200
    assert META_KEY not in public_view.json()["meta"]
    assert META_KEY not in public_view.text
    assert anonymous_write.status_code == 401
    editor_view = editor.get(f"/wp/v2/posts/{post_id}", params={"context": "edit"}).json()
    assert editor_view["meta"][META_KEY] == key


def test_a_failed_delivery_does_not_break_the_editor_and_is_retried_with_the_same_id(
    site: WordPressSite, editor: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.status = 503
    try:
        first = create_post(editor, new_key())  # the receiver answers 503: WordPress still creates the post
        refused = receiver.wait_for(lambda p: p["post_id"] == first)
        assert editor.get("/writer-images/v1/health").json()["queued_webhooks"] == 1
    finally:
        receiver.status = 204

    second = create_post(editor, new_key())  # the next change flushes the queue first

    receiver.wait_for(lambda p: p["post_id"] == second)
    deliveries_of_first = [
        w for w in receiver.received if w.headers["webhook-id"] == refused.headers["webhook-id"]
    ]
    assert len(deliveries_of_first) == 2
    assert deliveries_of_first[1].body == refused.body
    assert signature_is_valid(deliveries_of_first[1], SECRET)
    assert editor.get("/writer-images/v1/health").json()["queued_webhooks"] == 0


def untrash_in_wp_admin(site: WordPressSite, post_id: int) -> None:
    """Restore a post the way a person does (REST has no untrash): log in, follow the Trash list's link."""
    with httpx.Client(
        base_url=site.base_url, cookies={"wordpress_test_cookie": "WP Cookie check"}
    ) as browser:
        login = browser.post(
            "/wp-login.php",
            data={"log": site.admin_user, "pwd": site.admin_password, "testcookie": "1"},
        )
        assert login.status_code == 302, "logged in"
        trash = browser.get("/wp-admin/edit.php", params={"post_status": "trash", "post_type": "post"})
        links = re.findall(rf'href="([^"]*post={post_id}&amp;action=untrash[^"]*)"', trash.text)
        assert links, "the Trash list offers Restore"
        restored = browser.get(html.unescape(links[0]))
        assert restored.status_code == 302
