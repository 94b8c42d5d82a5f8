"""The webhook receiver of a running `python -m sync`, through real Postgres and the real broker."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

import asyncpg
import httpx
import orjson

from sync.testing import (
    OPERATOR_TOKEN,
    RegisteredSite,
    post_changes,
    publish_site,
    signed_headers,
    wait_for_site,
    webhook_body,
)

WEBHOOK = "/v1/sync/wordpress/webhook"


def new_post_id() -> int:
    return 1 + secrets.randbelow(10**9)


async def send(http: httpx.AsyncClient, secret: str, body: bytes, **header_options: Any) -> httpx.Response:
    return await http.post(WEBHOOK, content=body, headers=signed_headers(secret, body, **header_options))


async def deliver_marker(http: httpx.AsyncClient, site: RegisteredSite) -> int:
    """A valid webhook sent after the ones under test: once its event is on the broker, so would theirs be."""
    marker = new_post_id()
    response = await send(http, site.secret, webhook_body(site.site_key, marker, "pending"))
    assert response.status_code == 200, response.text
    return marker


async def changes_up_to_marker(
    kafka_bootstrap: str, site: RegisteredSite, marker: int
) -> list[dict[str, Any]]:
    changes = await post_changes(
        kafka_bootstrap, site.site_id, until=lambda got: any(p["post_id"] == str(marker) for p in got)
    )
    assert any(p["post_id"] == str(marker) for p in changes), "the marker's event arrived"
    return [p for p in changes if p["post_id"] != str(marker)]


async def test_a_signed_webhook_emits_one_wordpress_post_changed(
    http: httpx.AsyncClient, registered_site: RegisteredSite, kafka_bootstrap: str
) -> None:
    site, post_id = registered_site, new_post_id()

    response = await send(http, site.secret, webhook_body(site.site_key, post_id, "draft"))

    assert response.status_code == 200
    assert response.json()["data"] == {"duplicate": False, "emitted": True}
    assert response.headers["x-request-id"]
    [change] = await post_changes(kafka_bootstrap, site.site_id, until=lambda got: len(got) >= 1)
    assert change == {
        "site_id": site.site_id,
        "post_id": str(post_id),
        "wp_status": "draft",
        "modified_gmt": "2026-01-02T03:04:05Z",
        "link": f"http://wp.test/?p={post_id}",
        "title": "A post",
        "publication_key": f"wi-7-{post_id}-1",
        "source": "webhook",
        "observed_at": change["observed_at"],
    }


async def test_a_replayed_webhook_id_answers_duplicate_and_emits_nothing(
    http: httpx.AsyncClient, registered_site: RegisteredSite, kafka_bootstrap: str
) -> None:
    site, post_id = registered_site, new_post_id()
    body = webhook_body(site.site_key, post_id, "draft")
    headers = signed_headers(site.secret, body)

    first = await http.post(WEBHOOK, content=body, headers=headers)
    replay = await http.post(WEBHOOK, content=body, headers=headers)

    assert first.json()["data"] == {"duplicate": False, "emitted": True}
    assert replay.status_code == 200
    assert replay.json()["data"] == {"duplicate": True, "emitted": False}
    changes = await changes_up_to_marker(kafka_bootstrap, site, await deliver_marker(http, site))
    assert [c["post_id"] for c in changes] == [str(post_id)]


async def test_the_same_change_under_new_webhook_ids_emits_once(
    http: httpx.AsyncClient, registered_site: RegisteredSite, kafka_bootstrap: str
) -> None:
    site, post_id = registered_site, new_post_id()
    body = webhook_body(site.site_key, post_id, "trash")

    answers = [(await send(http, site.secret, body)).json()["data"] for _ in range(3)]

    assert answers == [
        {"duplicate": False, "emitted": True},
        {"duplicate": False, "emitted": False},
        {"duplicate": False, "emitted": False},
    ]
    changes = await changes_up_to_marker(kafka_bootstrap, site, await deliver_marker(http, site))
    assert [(c["post_id"], c["wp_status"]) for c in changes] == [(str(post_id), "trash")]


async def test_a_title_edited_in_the_second_of_the_previous_change_is_news_once(
    http: httpx.AsyncClient, registered_site: RegisteredSite, kafka_bootstrap: str
) -> None:
    site, post_id = registered_site, new_post_id()
    published = webhook_body(site.site_key, post_id, "publish", title="Lisbon")
    retitled = webhook_body(site.site_key, post_id, "publish", title="Lisbon & the sea")  # same second

    emitted = [
        (await send(http, site.secret, b)).json()["data"]["emitted"] for b in (published, retitled, retitled)
    ]

    assert emitted == [True, True, False]
    changes = await changes_up_to_marker(kafka_bootstrap, site, await deliver_marker(http, site))
    assert [c["title"] for c in changes] == ["Lisbon", "Lisbon & the sea"]


async def test_a_late_delivery_of_an_older_change_emits_nothing_and_deleted_is_final(
    http: httpx.AsyncClient, registered_site: RegisteredSite, kafka_bootstrap: str
) -> None:
    site, post_id = registered_site, new_post_id()
    newer = webhook_body(site.site_key, post_id, "draft", modified_gmt="2026-01-02T10:00:00")
    older = webhook_body(site.site_key, post_id, "publish", modified_gmt="2026-01-02T09:00:00")
    deleted = webhook_body(site.site_key, post_id, "deleted", modified_gmt="2026-01-02T11:00:00")
    after_delete = webhook_body(site.site_key, post_id, "publish", modified_gmt="2026-01-02T12:00:00")

    emitted = [
        (await send(http, site.secret, b)).json()["data"]["emitted"]
        for b in (newer, older, deleted, after_delete)
    ]

    assert emitted == [True, False, True, False]
    changes = await changes_up_to_marker(kafka_bootstrap, site, await deliver_marker(http, site))
    assert [c["wp_status"] for c in changes] == ["draft", "deleted"]


async def test_forged_stale_foreign_and_malformed_webhooks_are_refused_and_emit_nothing(
    http: httpx.AsyncClient,
    registered_site: RegisteredSite,
    kafka_bootstrap: str,
    sync_db: asyncpg.Connection,
) -> None:
    site, post_id = registered_site, new_post_id()
    body = webhook_body(site.site_key, post_id, "draft")
    other_secret = f"secret-of-another-site-{uuid.uuid4().hex}"

    attempts = {
        "bad signature": await send(http, "not-the-secret", body),
        # Each timestamp is read when its request is built: one second past the ±300 s window on either side.
        "stale timestamp": await send(http, site.secret, body, timestamp=int(time.time()) - 301),
        "future timestamp": await send(http, site.secret, body, timestamp=int(time.time()) + 302),
        "another site's secret": await send(http, other_secret, body),
        "unknown site": await send(http, site.secret, webhook_body(f"nobody-{uuid.uuid4().hex}", post_id)),
        "unsigned": await http.post(WEBHOOK, content=body, headers={"content-type": "application/json"}),
        "no site key": await send(http, site.secret, orjson.dumps({"post_id": post_id, "status": "draft"})),
        "malformed JSON": await send(http, site.secret, b'{"site_key": "' + site.site_key.encode() + b'", '),
        "oversized body": await send(
            http, site.secret, webhook_body(site.site_key, post_id, title="x" * 70_000)
        ),
        "wrong shape": await send(http, site.secret, webhook_body(site.site_key, post_id, status="bogus")),
    }

    statuses = {name: response.status_code for name, response in attempts.items()}
    assert statuses == {
        "bad signature": 401,
        "stale timestamp": 401,
        "future timestamp": 401,
        "another site's secret": 401,
        "unknown site": 401,
        "unsigned": 401,
        "no site key": 401,
        "malformed JSON": 400,
        "oversized body": 413,
        "wrong shape": 422,
    }
    for name, response in attempts.items():
        assert response.json()["success"] is False, name
        assert response.json()["request_id"] == response.headers["x-request-id"], name
    # An unknown site key reads exactly like a bad signature: keys cannot be probed.
    assert attempts["unknown site"].json()["error"] == attempts["bad signature"].json()["error"]
    assert "status" in attempts["wrong shape"].json()["errors"]
    changes = await changes_up_to_marker(kafka_bootstrap, site, await deliver_marker(http, site))
    assert changes == []
    assert await sync_db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE post_id = $1", post_id) == 0


async def test_a_timestamp_of_non_ascii_digits_is_refused_like_any_bad_timestamp(
    http: httpx.AsyncClient, registered_site: RegisteredSite
) -> None:
    site = registered_site
    body = webhook_body(site.site_key, new_post_id(), "draft")
    headers = {name.encode(): value.encode() for name, value in signed_headers(site.secret, body).items()}
    # The byte 0xB2 arrives as "²" (headers are Latin-1), which str.isdigit() calls a digit.
    headers[b"webhook-timestamp"] = b"\xb2"

    response = await http.post(WEBHOOK, content=body, headers=headers)

    assert response.status_code == 401, response.text
    assert response.json()["success"] is False
    assert response.json()["error"] == (await send(http, "not-the-secret", body)).json()["error"]


async def test_a_site_key_with_a_nul_is_refused_like_an_unknown_site(
    http: httpx.AsyncClient, registered_site: RegisteredSite
) -> None:
    site = registered_site
    body = webhook_body(site.site_key + "\u0000", new_post_id(), "draft")

    response = await send(http, site.secret, body)

    assert response.status_code == 401, response.text
    assert response.json()["error"] == (await send(http, "not-the-secret", body)).json()["error"]


async def test_a_signed_body_postgres_could_not_store_is_422_on_the_field(
    http: httpx.AsyncClient, registered_site: RegisteredSite, sync_db: asyncpg.Connection
) -> None:
    site, post_id = registered_site, new_post_id()
    unstorable = {
        # Valid ISO dates whose UTC instant is before year 1 or after 9999.
        "modified_gmt": ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"],
        # Postgres text carries no NUL.
        "title": ["a\u0000b"],
        "link": ["http://wp.test/?p=1\u0000"],
        "publication_key": ["wi-7-1-\u0000"],
    }
    for field, values in unstorable.items():
        for value in values:
            response = await send(http, site.secret, webhook_body(site.site_key, post_id, **{field: value}))
            assert response.status_code == 422, (field, value, response.text)
            assert list(response.json()["errors"]) == [field]
    assert await sync_db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE post_id = $1", post_id) == 0


async def test_a_refused_webhook_id_does_not_block_the_genuine_webhook_with_that_id(
    http: httpx.AsyncClient, registered_site: RegisteredSite
) -> None:
    site = registered_site
    body = webhook_body(site.site_key, new_post_id(), "draft")
    webhook_id = str(uuid.uuid4())

    forged = await send(http, "forger", body, webhook_id=webhook_id)
    genuine = await send(http, site.secret, body, webhook_id=webhook_id)

    assert forged.status_code == 401
    assert genuine.json()["data"] == {"duplicate": False, "emitted": True}


async def test_a_rotated_secret_is_used_at_once_the_newest_revision_wins_and_a_deleted_site_is_refused(
    http: httpx.AsyncClient,
    registered_site: RegisteredSite,
    kafka_bootstrap: str,
    sync_db: asyncpg.Connection,
) -> None:
    site = registered_site
    await deliver_marker_with(http, site.site_key, site.secret)  # the service now holds the site in memory
    rotated = f"rotated-{uuid.uuid4().hex}"
    await publish_site(
        kafka_bootstrap, site_id=site.site_id, site_key=site.site_key, secret=rotated, revision=3
    )
    await publish_site(
        kafka_bootstrap, site_id=site.site_id, site_key=site.site_key, secret="stale", revision=2
    )
    await wait_for_site(sync_db, site.site_id, revision=3)
    await deliver_marker_with(http, site.site_key, rotated)  # revision 2 arrived after 3 and changed nothing

    assert (await send(http, site.secret, webhook_body(site.site_key, new_post_id()))).status_code == 401
    assert (await send(http, "stale", webhook_body(site.site_key, new_post_id()))).status_code == 401
    assert (await send(http, rotated, webhook_body(site.site_key, new_post_id()))).status_code == 200

    await publish_site(
        kafka_bootstrap,
        site_id=site.site_id,
        site_key=site.site_key,
        secret=rotated,
        revision=4,
        deleted=True,
    )
    await wait_for_site(sync_db, site.site_id, revision=4)

    assert (await send(http, rotated, webhook_body(site.site_key, new_post_id()))).status_code == 401


async def deliver_marker_with(http: httpx.AsyncClient, site_key: str, secret: str) -> None:
    response = await send(http, secret, webhook_body(site_key, new_post_id(), "pending"))
    assert response.status_code == 200, response.text


async def test_on_demand_reconciliation_needs_the_operator_token(http: httpx.AsyncClient) -> None:
    anonymous = await http.post("/v1/sync/reconcile/1")
    wrong = await http.post("/v1/sync/reconcile/1", headers={"authorization": "Bearer guess"})
    unknown_site = await http.post(
        "/v1/sync/reconcile/987654321", headers={"authorization": f"Bearer {OPERATOR_TOKEN}"}
    )

    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert unknown_site.status_code == 404


async def test_on_demand_reconciliation_of_an_id_beyond_bigint_is_422_on_the_field(
    http: httpx.AsyncClient,
) -> None:
    operator = {"authorization": f"Bearer {OPERATOR_TOKEN}"}
    for site_id in (str(2**63), "9" * 30):
        response = await http.post(f"/v1/sync/reconcile/{site_id}", headers=operator)
        assert response.status_code == 422, (site_id, response.text)
        assert list(response.json()["errors"]) == ["site_id"]
    assert (await http.post(f"/v1/sync/reconcile/{2**63}")).status_code == 401


async def test_on_demand_reconciliation_of_an_unknown_id_beyond_int4_is_404(http: httpx.AsyncClient) -> None:
    # Site ids are bigint; the advisory lock a pass takes has int4 keys.
    response = await http.post(
        f"/v1/sync/reconcile/{2**40}", headers={"authorization": f"Bearer {OPERATOR_TOKEN}"}
    )

    assert response.status_code == 404, response.text


async def test_ops_routes_answer(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).status_code == 200
    assert (await http.get("/readyz")).json()["ready"] is True
    assert "wi_sync_webhooks_total" in (await http.get("/metrics")).text
