"""The Writer Images bridge plugin inside a real WordPress: signed webhooks and the publication-key lookup."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import subprocess
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

from writer_images.testing.stack import configure_bridge
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
        self.delay_s = 0.0  # a remote receiver's round trip
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._changed:
                    receiver.received.append(Webhook({k.lower(): v for k, v in self.headers.items()}, body))
                    receiver._changed.notify_all()
                time.sleep(receiver.delay_s)
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

    def ids(self) -> list[str]:
        return [webhook.headers["webhook-id"] for webhook in self.received]

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
    assert health.json()["version"] == "1.1.0"
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


# ---------------------------------------------------------------- a receiver that does not accept webhooks
# A site of its own, so that its queue and its pause never leak into the tests above.


@pytest.fixture(scope="module")
def troubled_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def troubled_site(
    wordpress_factory: WordPressFactory, troubled_receiver: WebhookReceiver
) -> Iterator[WordPressSite]:
    site = wordpress_factory.start(
        bridge_plugin=PLUGIN_DIR, webhook_url=troubled_receiver.url, bridge_secret=SECRET, site_key="site-43"
    )
    yield site
    wordpress_factory.stop(site)


@pytest.fixture
def troubled_editor(
    troubled_site: WordPressSite, troubled_receiver: WebhookReceiver
) -> Iterator[httpx.Client]:
    """An editor of `troubled_site`, which starts each test with an empty queue, no pause and an accepting
    receiver."""
    troubled_receiver.status, troubled_receiver.delay_s = 204, 0.0
    run_retry_cron(troubled_site)
    run_php(troubled_site, "delete_option('writer_images_bridge_pause');")
    with httpx.Client(base_url=troubled_site.rest_url, auth=troubled_site.editor_auth, timeout=60) as client:
        assert health(client)["queued_webhooks"] == 0
        yield client


def health(editor: httpx.Client) -> dict[str, Any]:
    answer: dict[str, Any] = editor.get("/writer-images/v1/health").json()
    return answer


def run_retry_cron(site: WordPressSite) -> None:
    """Run the plugin's WP-Cron event now, as `wp cron event run` would (test sites have no cron)."""
    run_php(site, "do_action('writer_images_bridge_retry');")


def run_php(site: WordPressSite, code: str) -> None:
    """PHP code run inside the site, from the command line."""
    done = subprocess.run(
        ["php", "-r", f"require 'wp-load.php'; {code}"],
        cwd=site.root_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout


@dataclass(frozen=True)
class Save:
    post_id: int
    webhooks_sent: int  # POSTs that reached the receiver while WordPress handled the save
    seconds: float


def save_post(editor: httpx.Client, receiver: WebhookReceiver) -> Save:
    before, started = len(receiver.received), time.monotonic()
    post_id = create_post(editor, new_key())
    # php -S answers once the request is over, shutdown hooks (where the plugin sends) included.
    return Save(post_id, len(receiver.received) - before, time.monotonic() - started)


def test_a_receiver_refusing_every_webhook_costs_the_editor_one_post_then_none_until_it_accepts(
    troubled_site: WordPressSite, troubled_editor: httpx.Client, troubled_receiver: WebhookReceiver
) -> None:
    # A wrong secret or site key, or this server's clock more than 5 minutes off: every webhook gets 401.
    troubled_receiver.status, troubled_receiver.delay_s = 401, 1.0
    start = len(troubled_receiver.received)

    saves = [save_post(troubled_editor, troubled_receiver) for _ in range(8)]

    assert [save.webhooks_sent for save in saves] == [1, 0, 0, 0, 0, 0, 0, 0], (
        "after a refusal editor requests send nothing and leave the queue to WP-Cron"
    )
    assert sum(save.seconds for save in saves[1:]) < 7 * troubled_receiver.delay_s, "saving stays fast"
    assert health(troubled_editor)["queued_webhooks"] == 8, "nothing is lost: a secret can be fixed"
    assert health(troubled_editor)["paused_until"] is not None

    run_retry_cron(troubled_site)  # WP-Cron keeps asking, one webhook per run while refused

    refused = troubled_receiver.ids()[start:]
    assert len(refused) == 2
    assert refused[1] == refused[0], "the oldest, with its webhook id"

    troubled_receiver.status, troubled_receiver.delay_s = 204, 0.0  # the secret was fixed
    run_retry_cron(troubled_site)

    assert health(troubled_editor)["queued_webhooks"] == 0
    assert health(troubled_editor)["paused_until"] is None
    delivered = [webhook.payload["post_id"] for webhook in troubled_receiver.received[start + 2 :]]
    assert delivered == [save.post_id for save in saves], "in the order of the changes"
    assert all(signature_is_valid(webhook, SECRET) for webhook in troubled_receiver.received[start:])
    assert save_post(troubled_editor, troubled_receiver).webhooks_sent == 1, "editor requests send again"


def test_a_webhook_the_receiver_refuses_as_malformed_is_dropped_at_once_and_logged(
    troubled_site: WordPressSite, troubled_editor: httpx.Client, troubled_receiver: WebhookReceiver
) -> None:
    troubled_receiver.status = 422

    refused = save_post(troubled_editor, troubled_receiver)

    assert refused.webhooks_sent == 1
    assert health(troubled_editor)["queued_webhooks"] == 0, "a 422 is permanent: not queued for a retry"
    assert health(troubled_editor)["paused_until"] is None
    [refused_id] = troubled_receiver.ids()[-1:]
    log = troubled_site.debug_log.read_text()
    assert f"dropping webhook {refused_id}" in log and "HTTP 422" in log
    assert SECRET not in log

    troubled_receiver.status = 204
    accepted = save_post(troubled_editor, troubled_receiver)
    run_retry_cron(troubled_site)

    assert accepted.webhooks_sent == 1
    assert troubled_receiver.ids().count(refused_id) == 1, "never sent again"


def test_an_editor_save_sends_a_few_queued_webhooks_and_leaves_the_rest_to_wp_cron(
    troubled_site: WordPressSite, troubled_editor: httpx.Client, troubled_receiver: WebhookReceiver
) -> None:
    troubled_receiver.status = 503  # down: each save tries the oldest webhook once, then queues its own
    backlog = [save_post(troubled_editor, troubled_receiver) for _ in range(12)]
    assert {save.webhooks_sent for save in backlog} == {1}
    assert health(troubled_editor)["queued_webhooks"] == 12
    troubled_receiver.status = 204
    sent_before = len(troubled_receiver.received)

    save = save_post(troubled_editor, troubled_receiver)

    # Oldest first (order per post), at most 5 queued webhooks besides the request's own change.
    assert save.webhooks_sent == 6
    assert health(troubled_editor)["queued_webhooks"] == 13 - 6
    run_retry_cron(troubled_site)
    assert health(troubled_editor)["queued_webhooks"] == 0
    delivered = [webhook.payload["post_id"] for webhook in troubled_receiver.received[sent_before:]]
    assert delivered == [s.post_id for s in [*backlog, save]]


def test_a_new_secret_ends_the_pause_after_a_refusal(
    troubled_site: WordPressSite, troubled_editor: httpx.Client, troubled_receiver: WebhookReceiver
) -> None:
    troubled_receiver.status = 401
    save_post(troubled_editor, troubled_receiver)
    assert health(troubled_editor)["refused_with"] == 401
    troubled_receiver.status = 204
    wp_config = troubled_site.root_dir / "wp-config.php"

    configure_bridge(wp_config, webhook_url=troubled_receiver.url, secret="corrected", site_key="site-43")
    try:
        deadline = time.monotonic() + 10  # php -S's opcache looks at wp-config.php again every 2 s
        while health(troubled_editor)["paused_until"] is not None:
            assert time.monotonic() < deadline, "the new secret ended the pause"
            time.sleep(0.1)
        save = save_post(troubled_editor, troubled_receiver)
    finally:
        configure_bridge(wp_config, webhook_url=troubled_receiver.url, secret=SECRET, site_key="site-43")

    assert save.webhooks_sent == 2, "the queued webhook, then the save's own"
    assert all(signature_is_valid(webhook, "corrected") for webhook in troubled_receiver.received[-2:])
