"""Webhook signatures exactly as the bridge plugin makes them."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from sync.domain.changes import WebhookBody
from sync.domain.signature import SignatureError, SignedHeaders, check_timestamp, sign, verify

BODY = b'{"site_key":"site-1","post_id":42,"status":"draft"}'


def test_the_signature_is_base64_hmac_sha256_over_id_timestamp_and_raw_body() -> None:
    expected = base64.b64encode(hmac.new(b"s3cret", b"msg_1.1700000000." + BODY, hashlib.sha256).digest())

    assert sign("s3cret", "msg_1", "1700000000", BODY) == "v1," + expected.decode()


def test_a_body_signed_with_the_secret_verifies() -> None:
    verify("s3cret", SignedHeaders("id-1", "1700000000", sign("s3cret", "id-1", "1700000000", BODY)), BODY)


@pytest.mark.parametrize(
    ("secret", "webhook_id", "timestamp", "body"),
    [
        ("another secret", "id-1", "1700000000", BODY),
        ("s3cret", "id-2", "1700000000", BODY),
        ("s3cret", "id-1", "1700000001", BODY),
        ("s3cret", "id-1", "1700000000", BODY.replace(b"draft", b"publish")),
    ],
    ids=["wrong secret", "other id", "other timestamp", "tampered body"],
)
def test_anything_changed_after_signing_fails_verification(
    secret: str, webhook_id: str, timestamp: str, body: bytes
) -> None:
    signature = sign("s3cret", "id-1", "1700000000", BODY)

    with pytest.raises(SignatureError):
        verify(secret, SignedHeaders(webhook_id, timestamp, signature), body)


def test_one_matching_signature_among_several_is_enough_for_secret_rotation() -> None:
    offered = f"v1,bm90LWl0 {sign('new', 'id-1', '1', BODY)}"

    verify("new", SignedHeaders("id-1", "1", offered), BODY)


def test_a_signature_without_its_version_prefix_is_refused() -> None:
    bare = sign("s3cret", "id-1", "1", BODY).removeprefix("v1,")

    with pytest.raises(SignatureError):
        verify("s3cret", SignedHeaders("id-1", "1", bare), BODY)


@pytest.mark.parametrize("offset", [-301, 301])
def test_timestamps_more_than_five_minutes_away_are_refused(offset: int) -> None:
    with pytest.raises(SignatureError):
        check_timestamp(str(1_700_000_000 + offset), now=1_700_000_000, tolerance_s=300)


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_timestamps_within_five_minutes_are_accepted(offset: int) -> None:
    check_timestamp(str(1_700_000_000 + offset), now=1_700_000_000, tolerance_s=300)


@pytest.mark.parametrize(
    "timestamp",
    ["", "-5", "1.5", "abc", " 1700000000", "9" * 40, "\u00b2", "\u0661\u0667" + "\u0660" * 8],
    # Superscript two (the header byte 0xB2 read as Latin-1) and Arabic-Indic digits are digits to
    # str.isdigit(); only ASCII digits are Unix seconds.
    ids=["empty", "negative", "fraction", "letters", "padded", "too long", "superscript", "arabic-indic"],
)
def test_a_timestamp_that_is_not_unix_seconds_is_refused(timestamp: str) -> None:
    with pytest.raises(SignatureError):
        check_timestamp(timestamp, now=1_700_000_000, tolerance_s=300)


def test_the_plugins_modified_gmt_without_offset_is_read_as_utc() -> None:
    body = WebhookBody.model_validate(
        {"site_key": "k", "post_id": 1, "status": "draft", "modified_gmt": "2026-01-02T03:04:05"}
    )

    assert body.modified_gmt == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_a_status_wordpress_does_not_have_is_invalid() -> None:
    with pytest.raises(ValueError, match="status"):
        WebhookBody.model_validate({"site_key": "k", "post_id": 1, "status": "bogus"})
